package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/jobs"
)

func TestJobsPageAndCancel(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	resp, body := e.get(t, "/jobs")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "No jobs yet", "an empty state that says what to do")
	assert.Contains(t, body, "Finished jobs stay 30 days")

	resp, body = e.upload(t, "/api/images/upload", bootFields(), bootFileParts())
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	var ans uploadAnswer
	require.NoError(t, json.Unmarshal([]byte(body), &ans))
	jobID := ans.Job.ID

	_, body = e.get(t, "/jobs")
	assert.Contains(t, body, ans.Image.ProductID+" "+ans.Image.VersionName, "the job says what it works on")
	assert.Contains(t, body, "queued")
	assert.Contains(t, body, `hx-trigger="every 2s"`, "live while a job is active")

	require.NoError(t, e.Progress.Set(t.Context(), jobID, 25<<20, 100<<20))
	resp, body = e.get(t, "/jobs/rows", "HX-Request", "true")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.NotContains(t, body, "<html")
	assert.Contains(t, body, "running")
	assert.Contains(t, body, "25% · 25.0 MiB of 100.0 MiB")
	assert.Contains(t, body, "/jobs/"+jobID+"/cancel")

	resp, body = e.postForm(t, "/jobs/"+jobID+"/cancel", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, body, "Canceled")
	assert.Contains(t, body, "canceled")
	assert.NotContains(t, body, `hx-trigger="every 2s"`, "nothing left to follow")
	img, err := e.Store.GetImage(ans.Image.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusFailed, img.Status)
	assert.Equal(t, images.CanceledReason, img.Error)
	assert.Empty(t, e.stagingFiles(t), "the canceled upload's files are removed")
	assert.True(t, e.Progress.Canceled(t.Context(), jobID), "a worker that has the task stops without retrying")
	_, err = e.Inspector.GetTaskInfo(jobs.QueueHash, jobID)
	assert.Error(t, err, "the queued task is gone")

	tests := []struct {
		name, method, path string
		status             int
		want               string
	}{
		{"cancel twice", http.MethodPost, "/api/jobs/" + jobID + "/cancel", http.StatusConflict, "finished already"},
		{"retry an upload", http.MethodPost, "/api/jobs/" + jobID + "/retry", http.StatusConflict, "upload it again"},
		{"unknown job", http.MethodPost, "/api/jobs/nope/cancel", http.StatusNotFound, "no job with id nope"},
		{"delete", http.MethodDelete, "/api/jobs/" + jobID, http.StatusOK, "Removed"},
		{"gone", http.MethodGet, "/api/jobs/" + jobID, http.StatusNotFound, "no job"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do(t, withToken(httptest.NewRequest(tt.method, tt.path, nil)))
			assert.Equal(t, tt.status, resp.StatusCode, body)
			assert.Contains(t, body, tt.want)
		})
	}
}

func TestRetryFailedMirror(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	tree, srv := newUpstream(t)
	bootID := bootProducts(tree)[0]
	resp, body := e.postJSON(t, "/api/images/mirror", `{"url": "`+srv.URL+`/streams/v1/index.json", "product_ids": ["`+bootID+`"], "bootloaders": false}`)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	var ans struct {
		Jobs []jobs.Started `json:"jobs"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &ans))
	require.Len(t, ans.Jobs, 1)
	jobID := ans.Jobs[0].ID
	require.NoError(t, e.Images.RecordResult(jobID, images.JobResult{Error: "upstream said 503"}))

	resp, body = e.get(t, "/jobs?show=failed")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "upstream said 503")
	assert.Contains(t, body, "/jobs/"+jobID+"/retry")

	resp, body = e.postForm(t, "/jobs/"+jobID+"/retry", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, body, "Retrying")
	imgs, err := e.Store.ListImages()
	require.NoError(t, err)
	require.Len(t, imgs, 1)
	assert.Equal(t, store.StatusDownloading, imgs[0].Status)
	assert.NotEqual(t, jobID, imgs[0].JobID, "a new job")
	info, err := e.Inspector.GetTaskInfo(jobs.QueueMirror, imgs[0].JobID)
	require.NoError(t, err, "the new job is queued")
	assert.Equal(t, jobs.TypeMirrorImage, info.Type)

	resp, body = e.postForm(t, "/jobs/"+jobID+"/retry", nil)
	assert.Equal(t, http.StatusConflict, resp.StatusCode, "the old job cannot start twice")
	assert.True(t, strings.Contains(body, "moved on") || strings.Contains(body, "only a failed"), body)
}
