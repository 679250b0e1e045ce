package web

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/metrics"
	"github.com/customstream/customstream/internal/metrics/metricstest"
)

// scrapeMetrics GETs /metrics without a session or token and parses the
// answer as a Prometheus scraper would.
func (e *testEnv) scrapeMetrics(t *testing.T) *metricstest.Exposition {
	t.Helper()
	resp, body := e.get(t, "/metrics", "Cookie", "none=1")
	require.Equal(t, 200, resp.StatusCode, body)
	assert.Equal(t, metrics.ContentType, resp.Header.Get("Content-Type"))
	x, err := metricstest.Parse(strings.NewReader(body))
	require.NoError(t, err, body)
	return x
}

func sample(t *testing.T, x *metricstest.Exposition, key string) float64 {
	t.Helper()
	v, ok := x.Value(key)
	require.True(t, ok, "%s is not in the scrape", key)
	return v
}

// TestMetricsCountRealActions uploads, hashes and serves an image through
// the app and checks the scrape moved by exactly what was done.
func TestMetricsCountRealActions(t *testing.T) {
	e := newTestEnv(t, 1<<20, func(d *Deps) { d.Version = "9.9.9" })
	before := e.scrapeMetrics(t)

	files := bootFileParts()
	var uploaded int
	for _, f := range files {
		uploaded += len(f.value)
	}
	resp, body := e.upload(t, "/api/images/upload", bootFields(), files)
	require.Equal(t, 202, resp.StatusCode, body)
	var ans uploadAnswer
	require.NoError(t, json.Unmarshal([]byte(body), &ans))
	mid := e.scrapeMetrics(t)
	assert.Equal(t, 1.0, sample(t, mid, `customstream_jobs{type="image:hash",state="queued"}`), "the upload's job is queued")
	e.finishJob(t, ans.Job.ID)

	img, err := e.Store.GetImage(ans.Image.ID)
	require.NoError(t, err)
	require.Equal(t, "ready", img.Status)
	item := img.Items[2]
	resp, body = e.get(t, "/"+item.Path)
	require.Equal(t, 200, resp.StatusCode)
	require.Len(t, body, int(item.Size))
	resp, _ = e.get(t, "/"+item.Path, "Range", "bytes=3-7")
	require.Equal(t, 206, resp.StatusCode)

	after := e.scrapeMetrics(t)
	delta := func(key string) float64 { return sample(t, after, key) - sample(t, before, key) }
	assert.Equal(t, float64(uploaded), delta("customstream_uploaded_bytes_total"), "the bytes of the uploaded files")
	assert.Equal(t, float64(item.Size+5), delta("customstream_served_bytes_total"), "the whole file, then a 5-byte range")
	assert.GreaterOrEqual(t, delta("customstream_publish_duration_seconds_count"), 1.0, "the ready image was published")
	assert.Equal(t, delta("customstream_publish_duration_seconds_count"), delta(`customstream_publish_duration_seconds_bucket{le="+Inf"}`))
	assert.Equal(t, 1.0, sample(t, after, `customstream_jobs{type="image:hash",state="succeeded"}`))
	assert.Equal(t, 0.0, sample(t, after, `customstream_jobs{type="image:hash",state="queued"}`))
	assert.Equal(t, 0.0, sample(t, after, `customstream_jobs{type="image:mirror",state="running"}`), "every type is shown, at 0 without jobs")
	assert.Positive(t, sample(t, after, "customstream_data_dir_total_bytes"))
	assert.Contains(t, after.Samples, `customstream_build_info{version="9.9.9",goversion="`+runtime.Version()+`"}`)
}

// TestMetricsReadWorkersCountsFromRedis: bytes a worker process downloaded
// reach the web process's scrape through Redis.
func TestMetricsReadWorkersCountsFromRedis(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { rdb.Close() })
	e := newTestEnv(t, 1024, func(d *Deps) { d.Counters = rdb })
	before := sample(t, e.scrapeMetrics(t), "customstream_mirror_downloaded_bytes_total")
	// What a worker's metrics.Flush does.
	require.NoError(t, rdb.IncrBy(context.Background(), metrics.DownloadedBytes.Key, 12345).Err())
	after := sample(t, e.scrapeMetrics(t), "customstream_mirror_downloaded_bytes_total")
	assert.Equal(t, 12345.0, after-before)
}

func TestHealthzChecks(t *testing.T) {
	tests := []struct {
		name     string
		deps     func(d *Deps)
		breakDB  bool
		wantCode int
		want     map[string]string // check name to a part of its answer
	}{
		{"all ok", nil, false, 200, map[string]string{"database": "ok", "redis": "ok", "disk": "ok"}},
		{"disk below the minimum", func(d *Deps) { d.Config.MinFreeBytes = 1 << 62 }, false, 503,
			map[string]string{"database": "ok", "redis": "ok", "disk": "below the"}},
		{"disk below a percentage", func(d *Deps) { d.Config.MinFreePercent = 99.9999 }, false, 503,
			map[string]string{"disk": "CUSTOMSTREAM_MIN_FREE"}},
		{"redis away", func(d *Deps) { d.Redis = func(context.Context) error { return errors.New("connection refused") } }, false, 503,
			map[string]string{"redis": "connection refused", "disk": "ok"}},
		{"database closed", nil, true, 503, map[string]string{"database": "database not open", "redis": "ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []func(*Deps)
			if tt.deps != nil {
				opts = append(opts, tt.deps)
			}
			e := newTestEnv(t, 1024, opts...)
			if tt.breakDB {
				require.NoError(t, e.Store.Close())
			}
			resp, body := e.get(t, "/healthz", "Cookie", "none=1")
			require.Equal(t, tt.wantCode, resp.StatusCode, body)
			assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
			var ans struct {
				Status string            `json:"status"`
				Checks map[string]string `json:"checks"`
				Disk   struct {
					Free    int64 `json:"free_bytes"`
					Total   int64 `json:"total_bytes"`
					MinFree int64 `json:"min_free_bytes"`
				} `json:"disk"`
			}
			require.NoError(t, json.Unmarshal([]byte(body), &ans), body)
			assert.Equal(t, map[int]string{200: "ok", 503: "failing"}[tt.wantCode], ans.Status)
			for check, want := range tt.want {
				assert.Contains(t, ans.Checks[check], want, check)
			}
			assert.Positive(t, ans.Disk.Total)
			assert.LessOrEqual(t, ans.Disk.Free, ans.Disk.Total)
		})
	}
}
