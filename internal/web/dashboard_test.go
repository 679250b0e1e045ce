package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/units"
	"github.com/customstream/customstream/jobs"
)

func TestDashboard(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	resp, body := e.get(t, "/")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, want := range []string{
		"<html", "Dashboard", "No worker is running", "Nothing is published yet", "No sync rules", "Get started",
		"http://example.com/streams/v1/index.sjson", "http://example.com/keyring.gpg", "0 Ready", `hx-trigger="every 30s"`,
		"No scrub yet", "Next in 7 days.", `name="csrf_token" value="` + e.csrf + `"`,
	} {
		assert.Contains(t, body, want)
	}
	assert.NotContains(t, body, "almost full")

	e.readyBootImage(t)
	resp, body = e.upload(t, "/api/images/upload", []part{{"os", "ubuntu"}, {"release", "jammy"}, {"arch", "amd64"}, {"version", "22.04"}}, bootFileParts())
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	var ans uploadAnswer
	require.NoError(t, json.Unmarshal([]byte(body), &ans))
	_, err := e.Store.FinishJob(ans.Job.ID, store.JobFailed, "sha256 mismatch on root-image.gz", func(img *store.Image) error {
		img.Status = store.StatusFailed
		return nil
	})
	require.NoError(t, err)
	rule := &store.SyncRule{ID: "r1", URL: "http://mirror.example/streams/v1/index.json", CreatedAt: time.Now(),
		LastRun: time.Now().Add(-3 * time.Hour), LastError: "fetch index: connection refused"}
	require.NoError(t, e.Store.PutSyncRule(rule))

	// A worker serving the hash queue: the warning goes.
	srv := asynq.NewServer(asynq.RedisClientOpt{Addr: e.Redis.Options().Addr}, asynq.Config{Queues: jobs.WorkerQueues(), Concurrency: 3, LogLevel: asynq.FatalLevel})
	require.NoError(t, srv.Start(asynq.NewServeMux()))
	t.Cleanup(srv.Shutdown)
	require.Eventually(t, func() bool {
		_, body := e.get(t, "/", "HX-Request", "true")
		return !strings.Contains(body, "No worker is running")
	}, 10*time.Second, 100*time.Millisecond, "the dashboard sees the worker's heartbeat")

	imgs, err := e.Store.ListImages()
	require.NoError(t, err)
	var stored int64
	for _, img := range imgs {
		if img.Status == store.StatusReady {
			stored = img.Size()
		}
	}
	resp, body = e.get(t, "/", "HX-Request", "true")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.NotContains(t, body, "<html", "htmx gets the region alone")
	for _, want := range []string{
		"1 Ready", "1 Failed", `2 <span class="fs-6 fw-normal text-secondary">versions`, "1 product, 1 version published", "1 worker (3 at a time)",
		"sha256 mismatch on root-image.gz", "1 failed in the last 7 days", "3 hours ago",
		"fetch index: connection refused", "2 uploaded · 0 mirrored",
		"images take " + units.Bytes(stored) + " in 4 files",
	} {
		assert.Contains(t, body, want)
	}

	// The dashboard's scrub button is a plain form: it lands on the Jobs page.
	req := httptest.NewRequest(http.MethodPost, "/jobs/scrub", strings.NewReader(url.Values{"csrf_token": {e.csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cookie", e.cookie)
	resp, body = doRaw(t, e.app, req)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	assert.Equal(t, "/jobs", resp.Header.Get("Location"))
	_, body = e.get(t, "/", "HX-Request", "true")
	assert.Contains(t, body, "Scrub queued: re-reading every file.")
	assert.Contains(t, body, "1 <span class=\"fs-6 fw-normal text-secondary\">active")
}

func TestDashboardWarnsOfAFullDisk(t *testing.T) {
	e := newTestEnv(t, 1<<20, func(d *Deps) { d.Config.MinFreeBytes = 1 << 62 })
	_, body := e.get(t, "/")
	assert.Contains(t, body, "The data directory is almost full")
	assert.Contains(t, body, "CUSTOMSTREAM_MIN_FREE")
	resp, _ := e.get(t, "/healthz")
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the dashboard and /healthz agree")
}

func TestOriginText(t *testing.T) {
	tests := map[string]string{
		store.OriginUpload:       "uploaded",
		"http://mirror.example/": "mirrored from http://mirror.example/",
		images.ImportOrigin("0123456789ABCDEF0123456789ABCDEF01234567"): "imported from an archive signed by 89ABCDEF01234567",
		images.ImportOrigin("ABCD"):                                     "imported from an archive signed by ABCD",
	}
	for in, want := range tests {
		assert.Equal(t, want, originText(in), in)
	}
}

func TestWbrEscapes(t *testing.T) {
	assert.Equal(t, `a:<wbr>b &lt;script&gt;:<wbr>&#34;x&#34;`, string(wbr(`a:b <script>:"x"`)))
}
