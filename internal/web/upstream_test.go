package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/mirror"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/upstream/upstreamtest"
	"github.com/customstream/customstream/jobs"
)

func (e *testEnv) postJSON(t *testing.T, path, body string) (*http.Response, string) {
	t.Helper()
	req := withToken(httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
	req.Header.Set("Content-Type", "application/json")
	return e.do(t, req)
}

func newUpstream(t *testing.T) (*upstreamtest.Tree, *upstreamtest.Server) {
	t.Helper()
	tree, err := upstreamtest.Generate(t.TempDir(), upstreamtest.DefaultOptions())
	require.NoError(t, err)
	return tree, upstreamtest.NewServer(t, tree.Dir)
}

type fetchAnswer struct {
	URL      string               `json:"url"`
	Signed   bool                 `json:"signed"`
	Products []apiUpstreamProduct `json:"products"`
}

func TestFetchUpstreamAPI(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	tree, srv := newUpstream(t)
	indexURL := srv.URL + "/streams/v1/index.json"

	resp, body := e.postJSON(t, "/api/upstream/fetch", `{"url": "`+indexURL+`", "filters": ["arch=amd64", "release~jammy"]}`)
	require.Equal(t, 200, resp.StatusCode, body)
	var ans fetchAnswer
	require.NoError(t, json.Unmarshal([]byte(body), &ans))
	assert.False(t, ans.Signed)
	var want []string
	for _, doc := range tree.Products {
		for id, p := range doc.Products {
			if p.Fields["arch"] == "amd64" && strings.Contains(p.Fields["release"], "jammy") {
				want = append(want, id)
			}
		}
	}
	var got []string
	for _, p := range ans.Products {
		got = append(got, p.ProductID)
		assert.Equal(t, "not mirrored", p.State)
		assert.Positive(t, p.Size)
	}
	assert.ElementsMatch(t, want, got)
	require.NotEmpty(t, got)

	tests := []struct {
		name, body string
		status     int
		want       string
	}{
		{"bad filter", `{"url": "` + indexURL + `", "filters": ["arch"]}`, 400, "filter"},
		{"bad url", `{"url": "ftp://x/"}`, 400, "only http and https"},
		{"not json", `{"url": `, 400, "not the JSON"},
		{"unknown host", `{"url": "http://127.0.0.1:1/"}`, 502, "127.0.0.1:1"},
		{"too large", `{"url": "` + strings.Repeat("x", 2<<20) + `"}`, 413, "larger than 1 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.postJSON(t, "/api/upstream/fetch", tt.body)
			assert.Equal(t, tt.status, resp.StatusCode, body)
			assert.Contains(t, body, tt.want)
		})
	}
	srv.Fail("streams/v1/index.json", 404)
	resp, body = e.postJSON(t, "/api/upstream/fetch", `{"url": "`+indexURL+`", "refresh": true}`)
	assert.Equal(t, 502, resp.StatusCode)
	assert.Contains(t, body, "404")
}

func TestMirrorAPI(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	tree, srv := newUpstream(t)
	indexURL := srv.URL + "/streams/v1/index.json"
	bootID := bootProducts(tree)[0]

	resp, body := e.postJSON(t, "/api/images/mirror", `{"url": "`+indexURL+`", "product_ids": ["no.such:product"]}`)
	assert.Equal(t, 400, resp.StatusCode, body)
	assert.Contains(t, body, "no.such:product")
	resp, body = e.postJSON(t, "/api/images/mirror", `{"url": "`+indexURL+`", "product_ids": [], "bootloaders": false}`)
	assert.Equal(t, 400, resp.StatusCode, body)

	resp, body = e.postJSON(t, "/api/images/mirror", `{"url": "`+indexURL+`", "product_ids": ["`+bootID+`"]}`)
	require.Equal(t, 202, resp.StatusCode, body)
	var ans struct {
		Jobs          []jobs.Started `json:"jobs"`
		Skipped       []jobs.Started `json:"skipped"`
		DownloadBytes int64          `json:"download_bytes"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &ans))
	bootloaders := len(tree.Products[upstreamtest.BootloaderContentID].Products)
	require.Len(t, ans.Jobs, 1+bootloaders, "the bootloaders come by default")
	assert.Positive(t, ans.DownloadBytes)

	h := &jobs.MirrorHandler{Downloader: &mirror.Downloader{Client: srv.Client(), Blobs: e.Blobs, Parallel: 2, Log: e.Log},
		Progress: e.Progress, Results: e.Queue, Log: e.Log}
	for _, j := range ans.Jobs {
		info, err := e.Inspector.GetTaskInfo(jobs.QueueMirror, j.ID)
		require.NoError(t, err)
		require.NoError(t, h.ProcessTask(context.Background(), asynq.NewTask(info.Type, info.Payload)))
		res, err := e.Inspector.GetTaskInfo(jobs.QueueResults, "result:"+j.ID)
		require.NoError(t, err)
		require.NoError(t, e.results.ProcessTask(context.Background(), asynq.NewTask(res.Type, res.Payload)))
	}
	imgs, err := e.Store.ListImages()
	require.NoError(t, err)
	require.Len(t, imgs, 1+bootloaders)
	for _, img := range imgs {
		assert.Equal(t, store.StatusReady, img.Status, img.Error)
	}
	_, index := e.get(t, "/streams/v1/index.json")
	assert.Contains(t, index, upstreamtest.BootContentID)
	assert.Contains(t, index, upstreamtest.BootloaderContentID)
	item := imgs[0].Items[0]
	resp, data := e.get(t, "/"+item.Path)
	require.Equal(t, 200, resp.StatusCode, item.Path)
	assert.Equal(t, item.Size, int64(len(data)))

	resp, body = e.postJSON(t, "/api/upstream/fetch", `{"url": "`+indexURL+`", "q": "`+bootID+`"}`)
	require.Equal(t, 200, resp.StatusCode)
	var fetched fetchAnswer
	require.NoError(t, json.Unmarshal([]byte(body), &fetched))
	require.Len(t, fetched.Products, 1)
	assert.True(t, fetched.Products[0].Mirrored)

	resp, body = e.postJSON(t, "/api/images/mirror", `{"url": "`+indexURL+`", "product_ids": ["`+bootID+`"], "bootloaders": false}`)
	require.Equal(t, 202, resp.StatusCode, body)
	require.NoError(t, json.Unmarshal([]byte(body), &ans))
	assert.Empty(t, ans.Jobs)
	require.Len(t, ans.Skipped, 1)
	assert.Contains(t, ans.Skipped[0].Reason, "already mirrored")
	assert.Zero(t, ans.DownloadBytes, "everything is in the blob store already")
}

func (e *testEnv) postForm(t *testing.T, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("HX-Request", "true")
	return e.do(t, req)
}

func TestUpstreamPortal(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	tree, srv := newUpstream(t)
	index := srv.URL + "/streams/v1/index.json"

	resp, body := e.get(t, "/upstream")
	require.Equal(t, 200, resp.StatusCode)
	assert.Contains(t, body, "No upstream loaded")
	assert.Contains(t, body, "https://images.maas.io/ephemeral-v3/stable/", "the default upstream is offered")

	resp, body = e.get(t, "/upstream/browse?url="+url.QueryEscape(index), "HX-Request", "true")
	require.Equal(t, 200, resp.StatusCode, body)
	assert.NotContains(t, body, "<html")
	assert.Contains(t, body, "unsigned")
	assert.Contains(t, body, `name="product_id"`)

	resp, body = e.get(t, "/upstream")
	require.Equal(t, 200, resp.StatusCode)
	assert.Contains(t, body, index, "a used upstream is offered again")

	resp, body = e.get(t, "/upstream/products?url="+url.QueryEscape(index)+"&arch=arm64&q=centos", "HX-Request", "true")
	require.Equal(t, 200, resp.StatusCode)
	assert.Contains(t, body, "centos")
	assert.NotContains(t, body, "amd64")
	resp, body = e.get(t, "/upstream/products?url="+url.QueryEscape(index)+"&filters=arch", "HX-Request", "true")
	assert.Equal(t, 400, resp.StatusCode)
	assert.Contains(t, body, `id="upstream-rows"`, "the table region stays, holding the error")
	assert.Contains(t, body, "filter")

	var centos string
	for id := range tree.Products[upstreamtest.CentosContentID].Products {
		centos = id
		break
	}
	resp, body = e.postForm(t, "/upstream/plan", url.Values{"url": {index}, "product_id": {centos}})
	require.Equal(t, 200, resp.StatusCode, body)
	assert.Contains(t, body, "1 product selected")
	assert.Contains(t, body, "to download")

	resp, body = e.postForm(t, "/upstream/mirror", url.Values{"url": {index}})
	assert.Equal(t, 400, resp.StatusCode)
	assert.Contains(t, body, "Select at least one product")
	resp, body = e.postForm(t, "/upstream/mirror", url.Values{"url": {index}, "product_id": {centos}})
	require.Equal(t, 200, resp.StatusCode, body)
	assert.Contains(t, body, "Mirroring started: 1 job")
	imgs, err := e.Store.ListImages()
	require.NoError(t, err)
	require.Len(t, imgs, 1)
	assert.Equal(t, store.StatusDownloading, imgs[0].Status)
	_, page := e.get(t, "/images")
	assert.Contains(t, page, "mirrored from "+srv.URL)
}

func TestSyncRulesPortal(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	_, srv := newUpstream(t)
	index := srv.URL + "/streams/v1/index.json"
	resp, body := e.get(t, "/upstream")
	require.Equal(t, 200, resp.StatusCode)
	assert.Contains(t, body, "No rule yet")
	assert.Contains(t, body, "mirrored every 6h.")

	resp, body = e.postForm(t, "/upstream/sync-rules", url.Values{"url": {index}})
	assert.Equal(t, 400, resp.StatusCode)
	assert.Contains(t, body, "Tick the products")
	resp, body = e.postForm(t, "/upstream/sync-rules", url.Values{"url": {index}, "filters": {"arch"}})
	assert.Equal(t, 400, resp.StatusCode)

	resp, body = e.postForm(t, "/upstream/sync-rules", url.Values{"url": {index}, "filters": {"arch=amd64 release~noble"}, "bootloaders": {"1"}})
	require.Equal(t, 200, resp.StatusCode, body)
	assert.Contains(t, body, "release~noble")
	assert.Contains(t, body, "+ bootloaders")
	rules, err := e.Store.ListSyncRules()
	require.NoError(t, err)
	require.Len(t, rules, 1)
	assert.Equal(t, []string{"arch=amd64", "release~noble"}, rules[0].Filters)
	pending, err := e.Inspector.ListPendingTasks(jobs.QueueSync)
	require.NoError(t, err)
	assert.Len(t, pending, 1, "saving a rule runs the sync")

	resp, body = e.postForm(t, "/upstream/sync", url.Values{})
	require.Equal(t, 200, resp.StatusCode, body)
	pending, err = e.Inspector.ListPendingTasks(jobs.QueueSync)
	require.NoError(t, err)
	assert.Len(t, pending, 1, "a run already waiting is enough")

	resp, body = e.postForm(t, "/upstream/sync-rules/"+rules[0].ID+"/delete", url.Values{})
	require.Equal(t, 200, resp.StatusCode)
	assert.Contains(t, body, "No rule yet")
}

// bootProducts lists the boot products of an upstream tree, sorted.
func bootProducts(tree *upstreamtest.Tree) []string {
	var ids []string
	for id := range tree.Products[upstreamtest.BootContentID].Products {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
