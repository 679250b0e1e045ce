package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/auth"
	"github.com/customstream/customstream/internal/catalog"
	"github.com/customstream/customstream/internal/check"
	"github.com/customstream/customstream/internal/config"
	"github.com/customstream/customstream/internal/gpgvtest"
	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/signing"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/testenv"
	"github.com/customstream/customstream/internal/upstream"
	"github.com/customstream/customstream/jobs"
)

const (
	testToken    = "test-token-0123456789"
	testPassword = "correct horse battery"
)

type testEnv struct {
	*testenv.Env
	app     *fiber.App
	hash    *jobs.HashHandler
	results *jobs.ResultHandler
	// admin checks the portal password.
	admin *auth.Admin
	// cookie and csrf are an admin session's, which do sends with every
	// request that has no Cookie header of its own.
	cookie, csrf string
}

// newTestEnv returns a server on a fresh data directory; opts change its
// dependencies before it is built.
func newTestEnv(t *testing.T, maxUpload int64, opts ...func(*Deps)) *testEnv {
	t.Helper()
	e := testenv.New(t)
	cfg, err := config.Load(func(string) string { return "" })
	require.NoError(t, err)
	cfg.DataDir = e.Dir
	cfg.MaxUploadSize = maxUpload
	// /healthz must not fail for a nearly full test machine's disk; tests
	// of the disk check set their own threshold.
	cfg.MinFreeBytes = 1 << 20
	catalogs := catalog.New(e.Store, upstream.New(upstream.Options{}), e.Log)
	signer, err := signing.Open(e.Dir, e.Log)
	require.NoError(t, err)
	e.Publisher.SignWith(signer.Sign, signer.Keyring())
	admin, err := auth.LoadAdmin(e.Dir, testPassword, e.Log)
	require.NoError(t, err)
	deps := Deps{Config: cfg, Store: e.Store, Blobs: e.Blobs, Images: e.Images, Catalog: catalogs, Publisher: e.Publisher,
		Queue: e.Queue, Progress: e.Progress, Signer: signer, Redis: func(ctx context.Context) error { return e.Redis.Ping(ctx).Err() },
		Inspector: e.Inspector, Admin: admin, APIToken: testToken, Version: "test", Log: e.Log}
	for _, o := range opts {
		o(&deps)
	}
	app := New(deps)
	id, sess, err := (&auth.Sessions{Store: e.Store, Admin: deps.Admin}).Open(auth.AdminUser, "192.0.2.1")
	require.NoError(t, err)
	return &testEnv{Env: e, app: app, admin: deps.Admin,
		hash:    &jobs.HashHandler{Blobs: e.Blobs, Progress: e.Progress, Results: e.Queue, Log: e.Log},
		results: &jobs.ResultHandler{Images: e.Images, Queue: e.Queue, Log: e.Log},
		cookie:  sessionCookie + "=" + id, csrf: sess.CSRF}
}

type part struct{ name, value string }

// form builds a multipart body: fields then files, in the order given.
func form(t *testing.T, fields []part, files []part) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, f := range fields {
		require.NoError(t, w.WriteField(f.name, f.value))
	}
	for _, f := range files {
		fw, err := w.CreateFormFile(f.name, f.name+".bin")
		require.NoError(t, err)
		_, err = fw.Write([]byte(f.value))
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	return &buf, w.FormDataContentType()
}

func bootFields() []part {
	return []part{{"os", "ubuntu"}, {"release", "noble"}, {"arch", "amd64"}, {"version", "24.04"}}
}

func bootFileParts() []part {
	return []part{{"kernel", "kernel-bytes"}, {"initrd", "initrd-bytes"}, {"rootfs", "squashfs-bytes"}}
}

// do sends req as the logged-in admin (unless it carries its own Cookie
// header) and returns the answer and its body.
func (e *testEnv) do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	if req.Header.Get("Cookie") == "" {
		req.Header.Set("Cookie", e.cookie)
		if req.Header.Get(csrfHeader) == "" {
			req.Header.Set(csrfHeader, e.csrf)
		}
	}
	return doRaw(t, e.app, req)
}

// doRaw sends req exactly as it is.
func doRaw(t *testing.T, app *fiber.App, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := app.Test(req, -1)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func (e *testEnv) upload(t *testing.T, path string, fields, files []part, headers ...string) (*http.Response, string) {
	t.Helper()
	body, ct := form(t, fields, files)
	req := httptest.NewRequest(http.MethodPost, path, body)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+testToken)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return e.do(t, req)
}

func (e *testEnv) get(t *testing.T, path string, headers ...string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return e.do(t, req)
}

func (e *testEnv) stagingFiles(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(e.Dir, "staging", images.UploadsStaging))
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	return names
}

// finishJob runs the hash task and its result as worker and web would.
func (e *testEnv) finishJob(t *testing.T, jobID string) {
	t.Helper()
	info, err := e.Inspector.GetTaskInfo(jobs.QueueHash, jobID)
	require.NoError(t, err)
	require.NoError(t, e.hash.ProcessTask(context.Background(), asynq.NewTask(info.Type, info.Payload)))
	res, err := e.Inspector.GetTaskInfo(jobs.QueueResults, "result:"+jobID)
	require.NoError(t, err)
	require.NoError(t, e.results.ProcessTask(context.Background(), asynq.NewTask(res.Type, res.Payload)))
}

// readyBootImage uploads a boot image through the API and runs its job.
func (e *testEnv) readyBootImage(t *testing.T) {
	t.Helper()
	resp, body := e.upload(t, "/api/images/upload", bootFields(), bootFileParts())
	require.Equal(t, 202, resp.StatusCode, body)
	var ans uploadAnswer
	require.NoError(t, json.Unmarshal([]byte(body), &ans))
	e.finishJob(t, ans.Job.ID)
}

type uploadAnswer struct {
	Image struct {
		ID, ProductID, VersionName, Status string
	} `json:"image"`
	Job struct {
		ID string `json:"id"`
	} `json:"job"`
}

func TestUploadAPIToStream(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	resp, body := e.upload(t, "/api/images/upload", bootFields(), bootFileParts())
	require.Equal(t, fiber.StatusAccepted, resp.StatusCode, body)
	var ans struct {
		Image map[string]string `json:"image"`
		Job   map[string]string `json:"job"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &ans))
	assert.Equal(t, "hashing", ans.Image["status"])
	assert.Equal(t, "com.customstream.stable:v3:boot:ubuntu:noble:amd64:generic:generic", ans.Image["product_id"])
	assert.Regexp(t, `^\d{8}\.\d{2}$`, ans.Image["version_name"])
	require.NotEmpty(t, ans.Job["id"])

	resp, body = e.get(t, "/api/jobs/"+ans.Job["id"], "Authorization", "Bearer "+testToken)
	require.Equal(t, 200, resp.StatusCode)
	assert.Contains(t, body, `"state":"queued"`)

	e.finishJob(t, ans.Job["id"])

	resp, body = e.get(t, "/api/jobs/"+ans.Job["id"], "Authorization", "Bearer "+testToken)
	require.Equal(t, 200, resp.StatusCode)
	assert.Contains(t, body, `"state":"succeeded"`)

	resp, body = e.get(t, "/api/images/list", "Authorization", "Bearer "+testToken)
	require.Equal(t, 200, resp.StatusCode)
	var list struct {
		Images []apiImage `json:"images"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Len(t, list.Images, 1)
	img := list.Images[0]
	assert.Equal(t, "ready", img.Status)
	require.Len(t, img.Items, 4)

	// The stream validates and serves each file.
	srv := httptest.NewServer(adaptFiber(e.app))
	defer srv.Close()
	rep, err := simplestreams.Validate(simplestreams.HTTPSource(srv.URL, srv.Client()), publish.IndexPath)
	require.NoError(t, err)
	for _, p := range rep.Problems {
		t.Log(p.String())
	}
	require.True(t, rep.OK())
	require.Len(t, rep.Items, 4)
	for _, it := range img.Items {
		resp, body := e.get(t, "/"+it.Path)
		require.Equal(t, 200, resp.StatusCode, it.Path)
		assert.Equal(t, it.Size, int64(len(body)))
		assert.Equal(t, `"`+it.SHA256+`"`, resp.Header.Get("ETag"))
		assert.Empty(t, resp.Header.Get("Content-Encoding"))
	}
	resp, body = e.get(t, "/"+img.Items[2].Path, "Range", "bytes=3-7")
	assert.Equal(t, fiber.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, "ashfs", body)

	assert.Empty(t, e.stagingFiles(t), "staging is emptied once the image is recorded")

	resp, body = e.do(t, withToken(httptest.NewRequest(http.MethodDelete, "/api/images/"+img.ID, nil)))
	require.Equal(t, 200, resp.StatusCode, body)
	resp, _ = e.get(t, "/"+img.Items[0].Path)
	assert.Equal(t, 404, resp.StatusCode, "a deleted version leaves the stream")
	resp, _ = e.do(t, withToken(httptest.NewRequest(http.MethodDelete, "/api/images/"+img.ID, nil)))
	assert.Equal(t, 404, resp.StatusCode)
}

func withToken(r *http.Request) *http.Request {
	r.Header.Set("Authorization", "Bearer "+testToken)
	return r
}

// adaptFiber serves the Fiber app through net/http for clients that need a
// real URL (the validator's HTTPSource).
func adaptFiber(app *fiber.App) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := app.Test(r, -1)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
}

func TestUploadSingleFileImage(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	fields := []part{{"os", "centos"}, {"release", "centos70"}, {"arch", "amd64"}, {"version", "7.0"}, {"rootfs_type", "root-tgz"}}
	resp, body := e.upload(t, "/api/images/upload", fields, []part{{"rootfs", "tarball"}, {"manifest", "pkg 1.0"}})
	require.Equal(t, fiber.StatusAccepted, resp.StatusCode, body)
	var ans uploadAnswer
	require.NoError(t, json.Unmarshal([]byte(body), &ans))
	e.finishJob(t, ans.Job.ID)
	_, index := e.get(t, "/streams/v1/index.json")
	assert.Contains(t, index, images.ContentSingle)
	assert.NotContains(t, index, images.ContentBoot)
	_, doc := e.get(t, "/"+e.productDoc(t, images.ContentSingle))
	assert.Contains(t, doc, `"root-tgz"`)
	assert.Contains(t, doc, "uploads/single/centos/centos70/amd64/generic/stable/")
}

func TestUploadRefusals(t *testing.T) {
	tests := []struct {
		name   string
		fields []part
		files  []part
		status int
		want   string
	}{
		{"missing os", bootFields()[1:], bootFileParts(), 400, "os: is required"},
		{"unsafe release", []part{{"os", "ubuntu"}, {"release", "../../etc"}, {"arch", "amd64"}, {"version", "1"}}, bootFileParts(), 400, "release:"},
		{"encoded slash", []part{{"os", "ubuntu%2f.."}, {"release", "noble"}, {"arch", "amd64"}, {"version", "1"}}, bootFileParts(), 400, "os:"},
		{"unknown arch", []part{{"os", "ubuntu"}, {"release", "noble"}, {"arch", "vax"}, {"version", "1"}}, bootFileParts(), 400, "arch:"},
		{"unknown field", append(bootFields(), part{"realease", "noble"}), bootFileParts(), 400, "realease: unknown field"},
		{"duplicate field", append(bootFields(), part{"os", "centos"}), bootFileParts(), 400, "os: given twice"},
		{"kernel missing", bootFields(), bootFileParts()[1:], 400, "kernel: is required"},
		{"no rootfs", bootFields(), bootFileParts()[:2], 400, "rootfs:"},
		{"kernel with root-tgz", []part{{"os", "centos"}, {"release", "c7"}, {"arch", "amd64"}, {"version", "7"}, {"rootfs_type", "root-tgz"}}, bootFileParts(), 400, "kernel: is not used"},
		{"bad rootfs type", append(bootFields(), part{"rootfs_type", "iso9660"}), bootFileParts(), 400, "rootfs_type:"},
		{"bad eol", append(bootFields(), part{"support_eol", "soon"}), bootFileParts(), 400, "support_eol:"},
		{"too large", bootFields(), []part{{"kernel", "k"}, {"initrd", "i"}, {"rootfs", strings.Repeat("x", 2048)}}, 400, "rootfs: larger than the 1.0 KiB limit"},
		{"empty file", bootFields(), []part{{"kernel", ""}, {"initrd", "i"}, {"rootfs", "r"}}, 400, "kernel: the file is empty"},
		{"field too long", append(bootFields(), part{"release_title", strings.Repeat("t", 5000)}), bootFileParts(), 400, "release_title: longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, 1024)
			resp, body := e.upload(t, "/api/images/upload", tt.fields, tt.files)
			assert.Equal(t, tt.status, resp.StatusCode, body)
			var ans map[string]any
			require.NoError(t, json.Unmarshal([]byte(body), &ans), body)
			assert.Contains(t, ans["error"], tt.want)
			assert.Empty(t, e.stagingFiles(t), "nothing stays in staging")
			imgs, err := e.Store.ListImages()
			require.NoError(t, err)
			assert.Empty(t, imgs, "nothing is recorded")
		})
	}
}

func TestUploadNotMultipart(t *testing.T) {
	e := newTestEnv(t, 1024)
	req := withToken(httptest.NewRequest(http.MethodPost, "/api/images/upload", strings.NewReader(`{"os":"ubuntu"}`)))
	req.Header.Set("Content-Type", "application/json")
	resp, body := e.do(t, req)
	assert.Equal(t, 400, resp.StatusCode)
	assert.Contains(t, body, "multipart/form-data")
}

func TestUploadTruncatedBody(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	body, ct := form(t, bootFields(), bootFileParts())
	data, _ := io.ReadAll(body)
	req := withToken(httptest.NewRequest(http.MethodPost, "/api/images/upload", bytes.NewReader(data[:len(data)-60])))
	req.Header.Set("Content-Type", ct)
	resp, text := e.do(t, req)
	assert.Equal(t, 400, resp.StatusCode, text)
	assert.Contains(t, text, "interrupted")
	assert.Empty(t, e.stagingFiles(t))
}

func TestVersionConflict(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	fields := append(bootFields(), part{"version_name", "20250101.01"})
	resp, body := e.upload(t, "/api/images/upload", fields, bootFileParts())
	require.Equal(t, 202, resp.StatusCode, body)
	resp, body = e.upload(t, "/api/images/upload", fields, bootFileParts())
	assert.Equal(t, 400, resp.StatusCode)
	assert.Contains(t, body, "version_name: version 20250101.01")
	assert.Len(t, e.stagingFiles(t), 3, "only the first upload's files wait in staging")
}

func TestAPINeedsToken(t *testing.T) {
	e := newTestEnv(t, 1024)
	for _, r := range []struct{ method, path string }{
		{"GET", "/api/images/list"}, {"POST", "/api/images/upload"}, {"DELETE", "/api/images/x"},
		{"GET", "/api/jobs"}, {"GET", "/api/jobs/x"},
	} {
		for _, auth := range []string{"", "Bearer wrong-token-xxxxxxxx", testToken} {
			t.Run(r.method+r.path+"/"+auth, func(t *testing.T) {
				req := httptest.NewRequest(r.method, r.path, nil)
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				resp, body := e.do(t, req)
				assert.Equal(t, 401, resp.StatusCode)
				assert.Contains(t, body, `"error"`)
			})
		}
	}
}

func TestPublicRoutesAndHealth(t *testing.T) {
	e := newTestEnv(t, 1024)
	resp, body := e.get(t, "/streams/v1/index.json")
	require.Equal(t, 200, resp.StatusCode)
	assert.Contains(t, body, `"index:1.0"`)
	assert.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
	for _, path := range []string{"/streams/v1/missing.json", "/uploads/../customstream.db", "/uploads/%2e%2e/customstream.db", "/streams/v1/..%2fcustomstream.db"} {
		resp, _ := e.get(t, path)
		assert.Equal(t, 404, resp.StatusCode, path)
	}
	resp, body = e.get(t, "/healthz")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Contains(t, body, `"status":"ok"`)
}

func TestPortalPages(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	tests := []struct{ path, want string }{
		{"/images", "No images yet"},
		{"/images/new", `hx-encoding="multipart/form-data"`},
		{"/setup", "boot-sources create url=http://example.com/streams/v1/index.json keyring_filename=/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg"},
		{"/audit", "Nothing recorded yet"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := e.get(t, tt.path)
			require.Equal(t, 200, resp.StatusCode)
			assert.Contains(t, body, "<html")
			assert.Contains(t, body, tt.want)
			assert.Contains(t, body, "/static/vendor/htmx-2.0.11.min.js")
		})
	}
	resp, body := e.get(t, "/images", "HX-Request", "true")
	require.Equal(t, 200, resp.StatusCode)
	assert.NotContains(t, body, "<html", "htmx gets the fragment")
	assert.Contains(t, body, `id="image-rows"`)
	resp, _ = e.get(t, "/static/vendor/bootstrap-5.3.9.min.css")
	assert.Equal(t, 200, resp.StatusCode)
}

func TestPortalUploadAndDelete(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	resp, body := e.upload(t, "/images/upload", append(bootFields()[:3], part{"version", "bad version"}), bootFileParts(), "HX-Request", "true")
	assert.Equal(t, 400, resp.StatusCode)
	assert.Contains(t, body, `id="err-version" hx-swap-oob="true"`)
	assert.Contains(t, body, "is not allowed")
	assert.NotContains(t, body, "<html")
	assert.Empty(t, e.stagingFiles(t), "bad metadata is refused before any file is stored")

	resp, body = e.upload(t, "/images/upload", bootFields(), bootFileParts(), "HX-Request", "true")
	require.Equal(t, 202, resp.StatusCode, body)
	redirect := resp.Header.Get("HX-Redirect")
	assert.True(t, strings.HasPrefix(redirect, "/images?uploaded="), redirect)

	_, page := e.get(t, "/images")
	assert.Contains(t, page, "hashing")
	assert.Contains(t, page, `hx-trigger="every 2s"`, "the table polls while images hash")

	imgs, err := e.Store.ListImages()
	require.NoError(t, err)
	require.Len(t, imgs, 1)
	e.finishJob(t, imgs[0].JobID)
	_, page = e.get(t, "/images")
	assert.Contains(t, page, "ready")
	assert.NotContains(t, page, `hx-trigger="every 2s"`)
	_, setup := e.get(t, "/setup")
	assert.Contains(t, setup, "os=ubuntu release=noble arches=amd64")

	resp, body = e.do(t, httptest.NewRequest(http.MethodPost, fmt.Sprintf("/images/%s/delete", imgs[0].ID), nil))
	require.Equal(t, 200, resp.StatusCode)
	assert.Contains(t, body, "No images yet")
	assert.Contains(t, body, fmt.Sprintf("Deleted version %s of %s: it is out of the stream.", imgs[0].VersionName, imgs[0].ProductID))
	resp, body = e.do(t, httptest.NewRequest(http.MethodPost, fmt.Sprintf("/images/%s/delete", imgs[0].ID), nil))
	require.Equal(t, 200, resp.StatusCode, "a second click on Delete, from a stale page")
	assert.Contains(t, body, "That image was already deleted.")
	assert.NotContains(t, body, "Deleted version")
}

func TestPortalRefusesCrossSitePosts(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	tests := []struct {
		name    string
		headers []string
		status  int
	}{
		{"other origin", []string{"Origin", "http://evil.example"}, 403},
		{"cross-site fetch", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"same origin", []string{"Origin", "http://example.com", "Sec-Fetch-Site", "same-origin"}, 202},
		{"no browser headers", nil, 202},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.upload(t, "/images/upload", append(bootFields(), part{"version_name", strings.ReplaceAll(tt.name, " ", "-")}),
				bootFileParts(), append([]string{"HX-Request", "true"}, tt.headers...)...)
			assert.Equal(t, tt.status, resp.StatusCode, body)
		})
	}
	resp, _ := e.do(t, func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/images/x/delete", nil)
		r.Header.Set("Origin", "http://evil.example")
		return r
	}())
	assert.Equal(t, 403, resp.StatusCode)
}

func TestSignedStreamAndKeyring(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	e.readyBootImage(t)

	resp, keyring := e.get(t, "/keyring.gpg")
	require.Equal(t, 200, resp.StatusCode)
	keys, err := simplestreams.ReadKeyring([]byte(keyring))
	require.NoError(t, err)
	resp, armored := e.get(t, "/keyring.asc")
	require.Equal(t, 200, resp.StatusCode)
	assert.Contains(t, armored, "BEGIN PGP PUBLIC KEY BLOCK")

	srv := httptest.NewServer(adaptFiber(e.app))
	defer srv.Close()
	rep, err := simplestreams.Validate(simplestreams.HTTPSource(srv.URL, srv.Client()), publish.SignedIndexPath)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	resp, signedIndex := e.get(t, "/"+publish.SignedIndexPath)
	require.Equal(t, 200, resp.StatusCode)
	_, fp, err := simplestreams.VerifyClearsigned([]byte(signedIndex), keys)
	require.NoError(t, err, "keyring.gpg verifies index.sjson")
	for _, entry := range rep.Index.Index {
		resp, doc := e.get(t, "/"+entry.Path)
		require.Equal(t, 200, resp.StatusCode, entry.Path)
		_, _, err := simplestreams.VerifyClearsigned([]byte(doc), keys)
		require.NoError(t, err, entry.Path)
	}

	_, setup := e.get(t, "/setup")
	assert.Contains(t, setup, "url=http://example.com/streams/v1/index.sjson keyring_data@=keyring.gpg")
	assert.Contains(t, setup, "curl -fsSo keyring.gpg http://example.com/keyring.gpg")
	assert.Contains(t, setup, fp)
}

// TestPublishedSignaturesPassGpgvAndCheck reads our own signed stream the
// way MAAS does: real gpgv with /keyring.gpg on every .sjson, and the
// check command's code over HTTP.
func TestPublishedSignaturesPassGpgvAndCheck(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	e.readyBootImage(t)
	srv := httptest.NewServer(adaptFiber(e.app))
	defer srv.Close()

	_, keyring := e.get(t, "/keyring.gpg")
	keys, err := simplestreams.ReadKeyring([]byte(keyring))
	require.NoError(t, err)
	var out bytes.Buffer
	res, err := check.Run(context.Background(), srv.URL+"/", check.Options{Keyring: keys, Download: true, Client: srv.Client(), Out: &out})
	require.NoError(t, err)
	assert.Empty(t, res.Problems, out.String())
	assert.Contains(t, out.String(), "OK")

	gpgv := gpgvtest.New(t, []byte(keyring))
	verify := func(doc []byte) (string, error) { return gpgv.Verify(t, doc) }
	signedDocs := []string{publish.SignedIndexPath, "streams/v1/products.sjson", strings.TrimSuffix(e.productDoc(t, images.ContentBoot), ".json") + ".sjson"}
	for _, rel := range signedDocs {
		_, doc := e.get(t, "/"+rel)
		o, err := verify([]byte(doc))
		require.NoError(t, err, "%s: %s", rel, o)
		assert.Contains(t, o, "Good signature", rel)
	}
	_, doc := e.get(t, "/"+publish.SignedIndexPath)
	o, err := verify([]byte(strings.Replace(doc, "index:1.0", "index:1.1", 1)))
	require.Error(t, err, "a tampered document must fail: %s", o)
	assert.Contains(t, o, "BAD signature")
}

func TestPagesKeepToTheContentSecurityPolicy(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	for _, path := range []string{"/", "/images", "/images/new", "/upstream", "/jobs", "/setup", "/tokens", "/settings", "/audit"} {
		t.Run(path, func(t *testing.T) {
			resp, body := e.get(t, path)
			require.Equal(t, 200, resp.StatusCode)
			assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")
			assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
			assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
			assert.Equal(t, "same-origin", resp.Header.Get("Referrer-Policy"))
			assert.NotRegexp(t, `<script>|<script [^>]*>[^<]`, body, "no inline script")
			assert.NotContains(t, body, " style=", "no inline style")
			assert.NotRegexp(t, ` on[a-z]+=`, body, "no inline event handler")
		})
	}
}

func TestPortalEscapesWhatUsersWrote(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	evil := `<script>alert("x")</script>`
	resp, body := e.upload(t, "/api/images/upload", append(bootFields(), part{"release_title", evil}), bootFileParts())
	require.Equal(t, 202, resp.StatusCode, body)
	for _, path := range []string{"/images", "/images/rows"} {
		_, page := e.get(t, path)
		assert.NotContains(t, page, evil, path)
		assert.Contains(t, page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", path)
	}
}

// productDoc returns the path the served index gives contentID's product file.
func (e *testEnv) productDoc(t *testing.T, contentID string) string {
	t.Helper()
	_, body := e.get(t, "/"+publish.IndexPath)
	var index simplestreams.Index
	require.NoError(t, json.Unmarshal([]byte(body), &index))
	path := index.Index[contentID].Path
	require.NotEmpty(t, path, "the index names no %s", contentID)
	return path
}
