package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/mirror"
	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/jobs"
)

// runTask runs the task with id on queue through h, as a worker or the web
// process's result consumer would.
func (e *testEnv) runTask(t *testing.T, queue, id string, h asynq.Handler) {
	t.Helper()
	info, err := e.Inspector.GetTaskInfo(queue, id)
	require.NoError(t, err)
	require.NoError(t, h.ProcessTask(context.Background(), asynq.NewTask(info.Type, info.Payload)))
}

// publishedProducts returns the product ids the published index lists.
func (e *testEnv) publishedProducts(t *testing.T) map[string]bool {
	t.Helper()
	_, body := e.get(t, "/"+publish.IndexPath)
	var index simplestreams.Index
	require.NoError(t, json.Unmarshal([]byte(body), &index))
	out := map[string]bool{}
	for _, entry := range index.Index {
		for _, id := range entry.Products {
			out[id] = true
		}
	}
	return out
}

type scrubAnswer struct {
	Job     apiJob `json:"job"`
	Started bool   `json:"started"`
	Message string `json:"message"`
}

func (e *testEnv) scrubAPI(t *testing.T) (int, scrubAnswer) {
	t.Helper()
	resp, body := e.do(t, withToken(httptest.NewRequest(http.MethodPost, "/api/scrub", nil)))
	var ans scrubAnswer
	require.NoError(t, json.Unmarshal([]byte(body), &ans), body)
	return resp.StatusCode, ans
}

func TestScrubTakesDamagedVersionsOutOfTheStream(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	_, body := e.get(t, "/jobs")
	assert.Contains(t, body, `hx-post="/jobs/scrub?show=all"`, "a Scrub now button")
	assert.Contains(t, body, "A scrub runs every 7 days")

	// A ready upload and a ready mirrored version.
	e.readyBootImage(t)
	tree, srv := newUpstream(t)
	bootID := bootProducts(tree)[0]
	resp, body := e.postJSON(t, "/api/images/mirror", `{"url": "`+srv.URL+`/streams/v1/index.json", "product_ids": ["`+bootID+`"], "bootloaders": false}`)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	mirrorer := &jobs.MirrorHandler{Downloader: &mirror.Downloader{Client: srv.Client(), Blobs: e.Blobs, Parallel: 2, Log: e.Log},
		Progress: e.Progress, Results: e.Queue, Log: e.Log}
	imgs, err := e.Store.ListImages()
	require.NoError(t, err)
	require.Len(t, imgs, 2)
	var uploaded, mirrored store.Image
	for _, img := range imgs {
		if img.Origin == store.OriginUpload {
			uploaded = img
		} else {
			mirrored = img
		}
	}
	e.runTask(t, jobs.QueueMirror, mirrored.JobID, mirrorer)
	e.runTask(t, jobs.QueueResults, "result:"+mirrored.JobID, e.results)
	require.Equal(t, map[string]bool{uploaded.ProductID: true, mirrored.ProductID: true}, e.publishedProducts(t))

	// One file of each goes bad on disk.
	mirrored, uploaded = e.image(t, mirrored.ID), e.image(t, uploaded.ID)
	for _, it := range []store.Item{uploaded.Items[0], mirrored.Items[len(mirrored.Items)-1]} {
		path := e.Blobs.Path(it.SHA256)
		require.NoError(t, os.Chmod(path, 0o644))
		require.NoError(t, os.WriteFile(path, make([]byte, it.Size), 0o644))
	}

	resp, body = e.postForm(t, "/jobs/scrub", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.NotContains(t, body, "<html", "HTMX gets the table alone")
	assert.Contains(t, body, "Scrub queued")
	assert.Contains(t, body, "Re-hash")
	status, again := e.scrubAPI(t)
	assert.Equal(t, http.StatusOK, status)
	assert.False(t, again.Started)
	assert.Contains(t, again.Message, "already queued")
	scrubID := again.Job.ID
	assert.Equal(t, jobs.TypeScrubBlobs, again.Job.Type)
	assert.Equal(t, uploaded.Size()+mirrored.Size(), again.Job.Progress.Total)

	e.runTask(t, jobs.QueueMaintenance, scrubID, &jobs.ScrubHandler{Blobs: e.Blobs, Progress: e.Progress, Results: e.Queue, Log: e.Log})
	e.runTask(t, jobs.QueueResults, "result:"+scrubID, e.results)

	assert.Empty(t, e.publishedProducts(t), "both damaged versions left the index at once")
	got := e.image(t, mirrored.ID)
	assert.Equal(t, store.StatusDownloading, got.Status)
	assert.Contains(t, got.Error, "damaged: sha256 mismatch on "+mirrored.Items[len(mirrored.Items)-1].Name)
	info, err := e.Inspector.GetTaskInfo(jobs.QueueMirror, got.JobID)
	require.NoError(t, err, "the mirrored version is downloaded again")
	assert.Equal(t, jobs.TypeMirrorImage, info.Type)
	got = e.image(t, uploaded.ID)
	assert.Equal(t, store.StatusDamaged, got.Status)
	assert.Equal(t, uploaded.JobID, got.JobID, "an upload cannot be downloaded: no job")

	_, body = e.get(t, "/images")
	assert.Contains(t, body, ">damaged</span>")
	assert.Contains(t, body, "damaged: sha256 mismatch on "+uploaded.Items[0].Name+": delete it or upload it again")
	_, body = e.get(t, "/jobs?show=failed")
	assert.Contains(t, body, "checked, 2 damaged")
	assert.Contains(t, body, uploaded.ProductID)
	var job apiJob
	_, body = e.get(t, "/api/jobs/"+scrubID, "Authorization", "Bearer "+testToken)
	require.NoError(t, json.Unmarshal([]byte(body), &job))
	assert.Equal(t, store.JobFailed, job.State)
	assert.Regexp(t, `^\d+ files, .+ checked, 2 damaged$`, job.Result)

	// The download brings the mirrored version back; the upload stays out.
	e.runTask(t, jobs.QueueMirror, e.image(t, mirrored.ID).JobID, mirrorer)
	e.runTask(t, jobs.QueueResults, "result:"+e.image(t, mirrored.ID).JobID, e.results)
	assert.Equal(t, map[string]bool{mirrored.ProductID: true}, e.publishedProducts(t))
	assert.Equal(t, store.StatusReady, e.image(t, mirrored.ID).Status)
}

func (e *testEnv) image(t *testing.T, id string) store.Image {
	t.Helper()
	img, err := e.Store.GetImage(id)
	require.NoError(t, err)
	return *img
}

func TestScrubAPIAndCancel(t *testing.T) {
	e := newTestEnv(t, 1<<20, func(d *Deps) { d.Config.ScrubInterval = 0 })
	_, body := e.get(t, "/jobs")
	assert.Contains(t, body, "The periodic scrub is off")

	// With nothing to check, a scrub still runs and says so.
	status, ans := e.scrubAPI(t)
	require.Equal(t, http.StatusAccepted, status)
	require.True(t, ans.Started)
	assert.Contains(t, ans.Job.Title, "Re-hash 0 files (0 B)")
	_, body = e.get(t, "/jobs")
	assert.Contains(t, body, "/jobs/"+ans.Job.ID+"/cancel", "a scrub can be canceled")

	resp, body := e.do(t, withToken(httptest.NewRequest(http.MethodPost, "/api/jobs/"+ans.Job.ID+"/cancel", nil)))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	job, err := e.Store.GetJob(ans.Job.ID)
	require.NoError(t, err)
	assert.Equal(t, store.JobCanceled, job.State)
	_, err = e.Inspector.GetTaskInfo(jobs.QueueMaintenance, ans.Job.ID)
	assert.Error(t, err, "the queued task is gone")

	status, next := e.scrubAPI(t)
	assert.Equal(t, http.StatusAccepted, status, "a canceled scrub does not block the next")
	assert.NotEqual(t, ans.Job.ID, next.Job.ID)

	// The portal form without HTMX lands back on the Jobs page.
	req := httptest.NewRequest(http.MethodPost, "/jobs/scrub", nil)
	resp, _ = e.do(t, req)
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/jobs", resp.Header.Get("Location"))
}
