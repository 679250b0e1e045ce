package main

// Integration tests: the real binary's processes, a real redis-server (or
// the embedded one), HTTP uploads, and the stream read back as MAAS would.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/simplestreams"
)

const (
	testToken = "integration-test-token-0123456789"
	// jobTimeout bounds the wait for a hash job; asynq polls about once a second.
	jobTimeout = 60 * time.Second
)

// TestSeparateWebAndWorkerWithRealRedis runs web and worker as two processes
// sharing the data directory, with a real redis-server between them.
func TestSeparateWebAndWorkerWithRealRedis(t *testing.T) {
	integration(t)
	t.Parallel()
	redis := startRedis(t)
	dataDir := t.TempDir()
	web := startServer(t, "web", dataDir, testToken, redis.URL())
	startServer(t, "worker", dataDir, testToken, redis.URL())
	checkUploadAndStream(t, web.Base(), testToken)
}

// TestAllInOneWithEmbeddedRedis runs the same flow against `customstream all`
// with REDIS_URL empty.
func TestAllInOneWithEmbeddedRedis(t *testing.T) {
	integration(t)
	t.Parallel()
	all := startServer(t, "all", t.TempDir(), testToken, "")
	checkUploadAndStream(t, all.Base(), testToken)
}

// TestKillDuringUploadLeavesStreamUnchanged kills the server (SIGKILL) while
// a large upload is being staged; after a restart the published stream must
// be exactly what it was and the partial upload gone.
func TestKillDuringUploadLeavesStreamUnchanged(t *testing.T) {
	integration(t)
	t.Parallel()
	client := newClient(t)
	dataDir := t.TempDir()
	srv := startServer(t, "all", dataDir, testToken, "")
	base := srv.Base()

	first := bootImage(1, 64<<10)
	first.upload(t, client, base, testToken)
	job := waitJob(t, client, base, testToken, first.jobID, jobTimeout)
	require.Equal(t, "succeeded", job.State, "job error: %s", job.Error)
	waitPublished(t, client, base, first.productID)
	before := streamDocs(t, client, base)
	checker := startStreamChecker(t, base)

	// A second image whose rootfs stops after 8 MiB, as a slow client would.
	stall := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(stall) }) }
	defer release()
	second := newTestImage(
		[][2]string{{"os", "ubuntu"}, {"release", "jammy"}, {"arch", "amd64"}, {"version", "22.04"}},
		map[string][]byte{"kernel": randomBytes(20, 4096), "initrd": randomBytes(21, 4096)})
	form := append(second.form(), formField{name: "rootfs",
		file: io.MultiReader(bytes.NewReader(randomBytes(22, 8<<20)), stallReader{stall})})
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := postUpload(client, base, testToken, form)
		done <- result{resp, err}
	}()

	uploads := filepath.Join(dataDir, "staging", "uploads")
	deadline := time.Now().Add(30 * time.Second)
	for !hasStagedRootfs(t, uploads) {
		select {
		case r := <-done:
			if r.err == nil {
				body, _ := io.ReadAll(r.resp.Body)
				r.resp.Body.Close()
				t.Fatalf("the stalled upload was answered: %s %s", r.resp.Status, body)
			}
			t.Fatalf("the stalled upload ended before the rootfs was staged: %v", r.err)
		default:
		}
		require.True(t, time.Now().Before(deadline), "no rootfs file with data appeared in %s", uploads)
		time.Sleep(20 * time.Millisecond)
	}
	srv.proc.kill9(t)
	// The client gives up too: Go's transport returns only once it stops
	// reading the request body.
	release()
	select {
	case r := <-done:
		if r.err == nil {
			r.resp.Body.Close()
			t.Fatalf("the upload to a killed server was answered %s", r.resp.Status)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the upload did not end within 30 s of the server's death")
	}

	srv.start(t) // same address, same data directory, a new embedded Redis
	checker.finish(t)
	after := streamDocs(t, client, base)
	require.Equal(t, sortedKeys(before), sortedKeys(after), "the stream documents changed")
	for path, data := range before {
		assert.Equal(t, string(data), string(after[path]), "%s changed across the crash and restart", path)
	}
	report := validateStream(t, base)
	assert.Len(t, report.Items, 4, "the stream should hold the first image's items only")

	entries, err := os.ReadDir(uploads)
	require.NoError(t, err)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	assert.Empty(t, left, "upload leftovers in %s after restart", uploads)

	list := listImages(t, client, base, testToken)
	require.Len(t, list, 1, "the interrupted upload must not be recorded")
	assert.Equal(t, first.id, list[0].ID)
	assert.Equal(t, "ready", list[0].Status, "error: %s", list[0].Error)
}

// TestRedisLostJobsAreRequeued loses a queued task (redis-server restarted
// without persistence) while no worker runs; the web process's requeue loop
// (every 30 s) must enqueue it again, so a worker started later completes it.
func TestRedisLostJobsAreRequeued(t *testing.T) {
	integration(t)
	t.Parallel()
	client := newClient(t)
	redis := startRedis(t)
	dataDir := t.TempDir()
	web := startServer(t, "web", dataDir, testToken, redis.URL())
	base := web.Base()
	checker := startStreamChecker(t, base)

	img := singleImage(30, 256<<10)
	img.upload(t, client, base, testToken)
	var job apiJob
	getJSON(t, client, base+"/api/jobs/"+img.jobID, testToken, &job)
	require.Equal(t, "queued", job.State, "no worker runs yet: the job must wait")

	redis.proc.stop(t)
	redis.start(t) // same port, empty: the queued task is gone
	startServer(t, "worker", dataDir, testToken, redis.URL())

	job = waitJob(t, client, base, testToken, img.jobID, jobTimeout)
	require.Equal(t, "succeeded", job.State, "job error: %s", job.Error)
	waitPublished(t, client, base, img.productID)
	checker.finish(t)
	list := listImages(t, client, base, testToken)
	require.Len(t, list, 1)
	assert.Equal(t, "ready", list[0].Status, "error: %s", list[0].Error)
	assert.Len(t, list[0].Items, 2)
	report := validateStream(t, base)
	assert.Len(t, report.Items, 2)
}

// TestChunkedUploadKeepsConnectionUsable sends a chunked upload, as any
// client streaming a file of unknown length does, then a second request on
// the same keep-alive connection, which must be answered normally.
func TestChunkedUploadKeepsConnectionUsable(t *testing.T) {
	integration(t)
	t.Parallel()
	srv := startServer(t, "all", t.TempDir(), testToken, "")
	img := bootImage(300, 32<<10)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	require.NoError(t, writeForm(mw, img.form()))

	conn, err := net.Dial("tcp", srv.addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	fmt.Fprintf(conn, "POST /api/images/upload HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", srv.addr, testToken, mw.FormDataContentType(), body.Len())
	_, err = conn.Write(body.Bytes())
	require.NoError(t, err)
	_, err = io.WriteString(conn, "\r\n0\r\n\r\n")
	require.NoError(t, err)
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	require.NoError(t, err)
	answer, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "upload: %s", answer)

	fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", srv.addr)
	resp, err = http.ReadResponse(r, nil)
	require.NoError(t, err, "no answer to a request after the upload on the same connection")
	answer, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "GET /healthz after a chunked upload on the same connection: %s", answer)
}

// checkUploadAndStream uploads a boot image and a single-file image to the
// server at base, waits for their jobs, then reads the stream as MAAS does
// and checks every file against what was uploaded.
func checkUploadAndStream(t *testing.T, base, token string) {
	t.Helper()
	client := newClient(t)
	boot := bootImage(100, 1<<20)
	single := singleImage(200, 3<<20)
	all := []*testImage{boot, single}
	for _, img := range all {
		img.upload(t, client, base, token)
	}
	for _, img := range all {
		job := waitJob(t, client, base, token, img.jobID, jobTimeout)
		require.Equal(t, "succeeded", job.State, "job %s of %s: error %q", img.jobID, img.productID, job.Error)
	}
	waitPublished(t, client, base, boot.productID, single.productID)

	// The API lists both as ready, with the sizes and sums of the uploaded files.
	byID := map[string]apiImage{}
	for _, img := range listImages(t, client, base, token) {
		byID[img.ID] = img
	}
	for _, want := range []struct {
		img   *testImage
		items int
	}{{boot, 4}, {single, 2}} {
		got, ok := byID[want.img.id]
		require.True(t, ok, "image %s (%s) is not listed", want.img.id, want.img.productID)
		assert.Equal(t, "ready", got.Status, "error: %s", got.Error)
		assert.Len(t, got.Items, want.items, "items of %s", got.ProductID)
		for _, it := range got.Items {
			if data, ok := want.img.itemData(it.Name); ok {
				assert.Equal(t, int64(len(data)), it.Size, "size of %s", it.Path)
				assert.Equal(t, sha256Hex(data), it.SHA256, "sha256 of %s", it.Path)
				want.img.paths[it.Path] = data
			}
		}
		assert.Len(t, want.img.paths, len(want.img.files), "every uploaded file of %s is an item", got.ProductID)
	}

	// The stream is valid for MAAS and lists both products.
	report := validateStream(t, base)
	for _, img := range all {
		prod, ok := findProduct(report, img.productID)
		if assert.True(t, ok, "product %s is not in the stream", img.productID) {
			assert.Equal(t, img.meta["os"], prod.Fields["os"])
			assert.Equal(t, img.meta["release"], prod.Fields["release"])
			assert.Equal(t, img.meta["arch"], prod.Fields["arch"])
			assert.Contains(t, prod.Versions, img.versionName)
		}
	}

	// Every item downloads with the size and sha256 the stream gives; the
	// uploaded ones byte for byte, the generated manifests naming them.
	uploaded := map[string][]byte{}
	for _, img := range all {
		for p, data := range img.paths {
			uploaded[p] = data
		}
	}
	require.Len(t, report.Items, 6, "4 boot items and 2 single-file items")
	listed := map[string]bool{}
	for _, it := range report.Items {
		listed[it.Path] = true
		got := download(t, client, base+"/"+it.Path)
		assert.Equal(t, it.Size, int64(len(got)), "size of %s", it.Path)
		assert.Equal(t, it.SHA256, sha256Hex(got), "sha256 of %s", it.Path)
		if want, ok := uploaded[it.Path]; ok {
			assert.True(t, bytes.Equal(want, got), "%s differs from the uploaded file", it.Path)
			continue
		}
		require.True(t, strings.HasSuffix(it.Path, ".manifest"), "unexpected item %s", it.Path)
		for _, img := range all {
			if strings.HasPrefix(it.Path, img.dir()) {
				for _, data := range img.files {
					assert.Contains(t, string(got), sha256Hex(data), "manifest %s", it.Path)
				}
			}
		}
	}
	for p := range uploaded {
		assert.True(t, listed[p], "uploaded item %s is not in the stream", p)
	}

	// A resumed download: a range, and HEAD for the length.
	rootfs := boot.files["rootfs"]
	rootfsPath := boot.pathOf(t, rootfs)
	req, err := http.NewRequest(http.MethodGet, base+"/"+rootfsPath, nil)
	require.NoError(t, err)
	req.Header.Set("Range", "bytes=10-19")
	resp, err := client.Do(req)
	require.NoError(t, err)
	part, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, fmt.Sprintf("bytes 10-19/%d", len(rootfs)), resp.Header.Get("Content-Range"))
	assert.Equal(t, rootfs[10:20], part)

	resp, err = client.Head(base + "/" + rootfsPath)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, int64(len(rootfs)), resp.ContentLength)
}

// testImage is an image to upload: its text fields, its files, and what the
// server answered.
type testImage struct {
	meta  map[string]string
	order []string          // text fields in the order they are sent
	files map[string][]byte // by file field: kernel, initrd, rootfs
	paths map[string][]byte // published item path → uploaded bytes

	id, productID, versionName, jobID string
}

func newTestImage(meta [][2]string, files map[string][]byte) *testImage {
	img := &testImage{meta: map[string]string{}, files: files, paths: map[string][]byte{}}
	for _, kv := range meta {
		img.meta[kv[0]] = kv[1]
		img.order = append(img.order, kv[0])
	}
	return img
}

// bootImage is a kernel + initrd + squashfs image of noble, its rootfs size bytes.
func bootImage(seed int64, size int) *testImage {
	return newTestImage(
		[][2]string{{"os", "ubuntu"}, {"release", "noble"}, {"arch", "amd64"}, {"version", "24.04"}},
		map[string][]byte{
			"kernel": randomBytes(seed, size/4+123),
			"initrd": randomBytes(seed+1, size/2+7),
			"rootfs": randomBytes(seed+2, size+3),
		})
}

// singleImage is a root-tgz CentOS image of size bytes.
func singleImage(seed int64, size int) *testImage {
	return newTestImage(
		[][2]string{{"os", "centos"}, {"release", "centos70"}, {"arch", "amd64"}, {"version", "7.0"}, {"rootfs_type", "root-tgz"}},
		map[string][]byte{"rootfs": randomBytes(seed, size+11)})
}

// itemData returns the uploaded bytes of the item named name.
func (img *testImage) itemData(name string) ([]byte, bool) {
	field := map[string]string{"boot-kernel": "kernel", "boot-initrd": "initrd", "squashfs": "rootfs", "root-tgz": "rootfs"}[name]
	data, ok := img.files[field]
	return data, ok
}

// pathOf returns the published path of the uploaded file data.
func (img *testImage) pathOf(t *testing.T, data []byte) string {
	t.Helper()
	for p, d := range img.paths {
		if bytes.Equal(d, data) {
			return p
		}
	}
	t.Fatalf("no published item of %s holds that file", img.productID)
	return ""
}

// dir is the directory of the image's items, found from its uploaded items.
func (img *testImage) dir() string {
	for p := range img.paths {
		return p[:strings.LastIndex(p, "/")+1]
	}
	return "\x00" // matches nothing
}

// form is the upload: text fields first, then the files.
func (img *testImage) form() []formField {
	var fields []formField
	for _, name := range img.order {
		fields = append(fields, formField{name: name, value: img.meta[name]})
	}
	for _, name := range []string{"kernel", "initrd", "rootfs"} {
		if data, ok := img.files[name]; ok {
			fields = append(fields, formField{name: name, file: bytes.NewReader(data)})
		}
	}
	return fields
}

// upload sends the image and records the ids the server answers with.
func (img *testImage) upload(t *testing.T, client *http.Client, base, token string) {
	t.Helper()
	resp, err := postUpload(client, base, token, img.form())
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "upload: %s", body)
	var out struct {
		Image struct {
			ID          string `json:"id"`
			ProductID   string `json:"product_id"`
			VersionName string `json:"version_name"`
			Status      string `json:"status"`
		} `json:"image"`
		Job struct {
			ID string `json:"id"`
		} `json:"job"`
	}
	require.NoError(t, json.Unmarshal(body, &out), "upload answer: %s", body)
	require.NotEmpty(t, out.Image.ID, "upload answer: %s", body)
	require.NotEmpty(t, out.Job.ID, "upload answer: %s", body)
	assert.Equal(t, "hashing", out.Image.Status)
	img.id, img.productID, img.versionName, img.jobID = out.Image.ID, out.Image.ProductID, out.Image.VersionName, out.Job.ID
}

// formField is a text field, or a file field when file is set.
type formField struct {
	name, value string
	file        io.Reader
}

// postUpload streams a multipart upload through a pipe: nothing is buffered whole.
func postUpload(client *http.Client, base, token string, fields []formField) (*http.Response, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() { pw.CloseWithError(writeForm(mw, fields)) }()
	req, err := http.NewRequest(http.MethodPost, base+"/api/images/upload", pr)
	if err != nil {
		pr.Close()
		return nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	return client.Do(req)
}

func writeForm(mw *multipart.Writer, fields []formField) error {
	for _, f := range fields {
		if f.file == nil {
			if err := mw.WriteField(f.name, f.value); err != nil {
				return err
			}
			continue
		}
		w, err := mw.CreateFormFile(f.name, f.name+".img")
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, f.file); err != nil {
			return err
		}
	}
	return mw.Close()
}

// stallReader blocks until its channel closes, then fails: a client that
// stopped sending in the middle of a file.
type stallReader struct{ release <-chan struct{} }

func (r stallReader) Read([]byte) (int, error) {
	<-r.release
	return 0, errors.New("the test abandoned this upload")
}

// hasStagedRootfs reports whether dir holds a staged rootfs with data.
func hasStagedRootfs(t *testing.T, dir string) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	require.NoError(t, err)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "upload-rootfs-") {
			continue
		}
		if info, err := e.Info(); err == nil && info.Size() > 0 {
			return true
		}
	}
	return false
}

// apiJob and apiImage are the API's answers, as a client reads them.
type apiJob struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	State    string `json:"state"`
	Progress struct {
		Done  int64 `json:"done"`
		Total int64 `json:"total"`
	} `json:"progress"`
	Error  string `json:"error"`
	Result string `json:"result"`
}

type apiImage struct {
	ID          string `json:"id"`
	ProductID   string `json:"product_id"`
	VersionName string `json:"version_name"`
	Status      string `json:"status"`
	Error       string `json:"error"`
	Items       []struct {
		Name   string `json:"name"`
		FType  string `json:"ftype"`
		Path   string `json:"path"`
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"items"`
}

// waitJob polls the job until it is finished, for at most within.
func waitJob(t *testing.T, client *http.Client, base, token, id string, within time.Duration) apiJob {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var job apiJob
		getJSON(t, client, base+"/api/jobs/"+id, token, &job)
		switch job.State {
		case "succeeded", "failed", "canceled":
			return job
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is still %s after %s (progress %d/%d)", id, job.State, within, job.Progress.Done, job.Progress.Total)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func listImages(t *testing.T, client *http.Client, base, token string) []apiImage {
	t.Helper()
	var out struct {
		Images []apiImage `json:"images"`
	}
	getJSON(t, client, base+"/api/images/list", token, &out)
	return out.Images
}

func getJSON(t *testing.T, client *http.Client, url, token string, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s: %s", url, body)
	require.NoError(t, json.Unmarshal(body, v), "GET %s: %s", url, body)
}

// download GETs url and wants 200.
func download(t *testing.T, client *http.Client, url string) []byte {
	t.Helper()
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s", url)
	return data
}

// validateStream checks the stream at base over HTTP as MAAS reads it.
func validateStream(t *testing.T, base string) *simplestreams.Report {
	t.Helper()
	report, err := simplestreams.Validate(simplestreams.HTTPSource(base, newClient(t)), publish.IndexPath)
	require.NoError(t, err)
	for _, p := range report.Problems {
		t.Log("stream problem:", p)
	}
	require.True(t, report.OK(), "the stream has errors (see the problems above)")
	return report
}

// waitPublished polls the index, for at most 15 s, until it lists every
// product: the server reports a job succeeded (and its image ready) a moment
// before the publish that adds the version to the stream.
func waitPublished(t *testing.T, client *http.Client, base string, productIDs ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for first := true; ; first = false {
		listed := map[string]bool{}
		if resp, err := client.Get(base + "/" + publish.IndexPath); err == nil {
			var index simplestreams.Index
			if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&index) == nil {
				for _, e := range index.Index {
					for _, id := range e.Products {
						listed[id] = true
					}
				}
			}
			resp.Body.Close()
		}
		var missing []string
		for _, id := range productIDs {
			if !listed[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			return
		}
		if first {
			t.Logf("the job succeeded but the index does not list %v yet: waiting for the publish", missing)
		}
		require.True(t, time.Now().Before(deadline), "the index still does not list %v", missing)
		time.Sleep(50 * time.Millisecond)
	}
}

// streamDocs fetches the index, every product file it names and products.json.
func streamDocs(t *testing.T, client *http.Client, base string) map[string][]byte {
	t.Helper()
	docs := indexedDocs(t, client, base)
	docs[publish.ProductsPath] = download(t, client, base+"/"+publish.ProductsPath)
	return docs
}

func findProduct(r *simplestreams.Report, id string) (simplestreams.Product, bool) {
	for _, doc := range r.Products {
		if p, ok := doc.Products[id]; ok {
			return p, true
		}
	}
	return simplestreams.Product{}, false
}

// newClient is an HTTP client whose idle connections close with the test;
// its timeout only bounds a hung request.
func newClient(t *testing.T) *http.Client {
	c := &http.Client{Transport: &http.Transport{}, Timeout: 2 * time.Minute}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func randomBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
