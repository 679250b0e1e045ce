package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/metrics/metricstest"
	"github.com/customstream/customstream/internal/store"
)

func scrape(t *testing.T, src Source) *metricstest.Exposition {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, Write(context.Background(), &buf, src))
	x, err := metricstest.Parse(&buf)
	require.NoError(t, err, "%s", buf.String())
	return x
}

func newRedis(t *testing.T) *redis.Client {
	t.Helper()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func TestWriteJobsDiskAndBuildInfo(t *testing.T) {
	jobs := []store.Job{
		{Type: "image:hash", State: store.JobSucceeded}, {Type: "image:hash", State: store.JobSucceeded},
		{Type: "image:mirror", State: store.JobRunning}, {Type: "image:odd\"type", State: store.JobFailed},
	}
	x := scrape(t, Source{Version: "1.2.3", DataDir: t.TempDir(), JobTypes: []string{"image:hash", "image:mirror"},
		Jobs: func() ([]store.Job, error) { return jobs, nil }})

	tests := []struct {
		sample string
		want   float64
	}{
		{`customstream_jobs{type="image:hash",state="succeeded"}`, 2},
		{`customstream_jobs{type="image:hash",state="queued"}`, 0},
		{`customstream_jobs{type="image:mirror",state="running"}`, 1},
		{`customstream_jobs{type="image:mirror",state="failed"}`, 0},
		{`customstream_jobs{type="image:odd\"type",state="failed"}`, 1},
		{`customstream_build_info{version="1.2.3",goversion="` + runtime.Version() + `"}`, 1},
	}
	for _, tt := range tests {
		got, ok := x.Value(tt.sample)
		if assert.True(t, ok, "%s missing", tt.sample) {
			assert.Equal(t, tt.want, got, tt.sample)
		}
	}
	assert.Equal(t, "gauge", x.Types["customstream_jobs"])
	assert.Equal(t, "histogram", x.Types["customstream_publish_duration_seconds"])
	free, ok := x.Value("customstream_data_dir_free_bytes")
	require.True(t, ok)
	total, ok := x.Value("customstream_data_dir_total_bytes")
	require.True(t, ok)
	assert.Positive(t, free)
	assert.GreaterOrEqual(t, total, free)
}

func TestWriteLeavesOutWhatFails(t *testing.T) {
	rdb := newRedis(t)
	require.NoError(t, rdb.Close()) // every Redis command now fails
	var logged bytes.Buffer
	x := scrape(t, Source{Version: "v", DataDir: "/nonexistent/customstream", Redis: rdb,
		Jobs: func() ([]store.Job, error) { return nil, errors.New("database closed") },
		Log:  slog.New(slog.NewTextHandler(&logged, nil))})
	for _, name := range []string{"customstream_jobs", "customstream_mirror_downloaded_bytes_total", "customstream_data_dir_free_bytes"} {
		assert.NotContains(t, x.Types, name, "%s is written though its source failed", name)
	}
	assert.Contains(t, x.Types, "customstream_uploaded_bytes_total", "what did not fail is still written")
	assert.Contains(t, logged.String(), "database closed")
	assert.Contains(t, logged.String(), "unable to read the shared counters")
}

func TestCountersOnlyGrow(t *testing.T) {
	var c Counter
	c.Add(5)
	c.Add(-3)
	c.Add(0)
	assert.EqualValues(t, 5, c.Value())
}

// Two processes (a worker and the web) add to one Shared key through Redis;
// the scrape sees both, and a failed flush is sent again, not lost.
func TestSharedCounterAcrossProcesses(t *testing.T) {
	rdb := newRedis(t)
	ctx := context.Background()
	worker := &Shared{Key: "test:shared"}
	web := &Shared{Key: "test:shared"}

	worker.Add(1000)
	worker.Add(-1)
	total, err := web.Total(ctx, rdb)
	require.NoError(t, err)
	assert.Zero(t, total, "nothing is in Redis before the worker flushes")

	require.NoError(t, worker.Flush(ctx, rdb))
	web.Add(24)
	total, err = web.Total(ctx, rdb)
	require.NoError(t, err)
	assert.EqualValues(t, 1024, total)

	broken := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer broken.Close()
	worker.Add(10)
	require.Error(t, worker.Flush(ctx, broken))
	require.NoError(t, worker.Flush(ctx, rdb))
	total, err = web.Total(ctx, rdb)
	require.NoError(t, err)
	assert.EqualValues(t, 1034, total, "the count of a failed flush goes with the next one")
}

func TestFlushEverySendsTheRestWhenStopped(t *testing.T) {
	rdb := newRedis(t)
	before, err := DownloadedBytes.Total(context.Background(), rdb)
	require.NoError(t, err)
	stop := FlushEvery(rdb, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	DownloadedBytes.Add(4096)
	stop()
	n, err := rdb.Get(context.Background(), DownloadedBytes.Key).Int64()
	require.NoError(t, err)
	assert.EqualValues(t, before+4096, n, "the last flush sent what was counted before the stop")
}

func TestHistogramAndCountersInTheScrape(t *testing.T) {
	rdb := newRedis(t)
	before := scrape(t, Source{Redis: rdb})
	value := func(x *metricstest.Exposition, key string) float64 {
		v, ok := x.Value(key)
		require.True(t, ok, "%s missing", key)
		return v
	}

	PublishSeconds.Observe(0.03)
	PublishSeconds.Observe(7)
	UploadedBytes.Add(100)
	ServedBytes.Add(200)
	DownloadedBytes.Add(300)
	failed := errors.New("upstream said 500")
	CountUpstreamFetch(&failed)
	canceled := context.Canceled
	CountUpstreamFetch(&canceled)
	var ok error
	CountUpstreamFetch(&ok)
	after := scrape(t, Source{Redis: rdb})

	deltas := []struct {
		sample string
		want   float64
	}{
		{`customstream_publish_duration_seconds_bucket{le="0.01"}`, 0},
		{`customstream_publish_duration_seconds_bucket{le="0.05"}`, 1},
		{`customstream_publish_duration_seconds_bucket{le="5"}`, 1},
		{`customstream_publish_duration_seconds_bucket{le="10"}`, 2},
		{`customstream_publish_duration_seconds_bucket{le="+Inf"}`, 2},
		{`customstream_publish_duration_seconds_count`, 2},
		{`customstream_uploaded_bytes_total`, 100},
		{`customstream_served_bytes_total`, 200},
		{`customstream_mirror_downloaded_bytes_total`, 300},
		{`customstream_upstream_fetches_total`, 3},
		{`customstream_upstream_fetch_errors_total`, 1},
	}
	for _, d := range deltas {
		assert.Equal(t, d.want, value(after, d.sample)-value(before, d.sample), d.sample)
	}
	assert.InDelta(t, 7.03, value(after, "customstream_publish_duration_seconds_sum")-value(before, "customstream_publish_duration_seconds_sum"), 1e-9)
	assert.Equal(t, 7.0, value(after, "customstream_publish_last_duration_seconds"))
}

func TestFormatAndEscaping(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{{0, "0"}, {1 << 40, "1099511627776"}, {0.25, "0.25"}, {1e300, "1e+300"}}
	for _, tt := range tests {
		assert.Equal(t, tt.want, formatFloat(tt.in))
	}
	assert.Equal(t, `a\\b\"c\nd`, escapeLabel("a\\b\"c\nd"))
	assert.Equal(t, `a\\b"c\nd`, escapeHelp("a\\b\"c\nd"))
}

func TestParseRefusesBadExpositions(t *testing.T) {
	for name, text := range map[string]string{
		"no type":      "x 1\n",
		"typed twice":  "# TYPE x gauge\n# TYPE x gauge\nx 1\n",
		"bad value":    "# TYPE x gauge\nx one\n",
		"sample twice": "# TYPE x gauge\nx 1\nx 2\n",
		"bad label":    "# TYPE x gauge\nx{a=b} 1\n",
	} {
		_, err := metricstest.Parse(strings.NewReader(text))
		assert.Error(t, err, name)
	}
}

func TestDiskOf(t *testing.T) {
	d, err := DiskOf(t.TempDir())
	require.NoError(t, err)
	assert.Positive(t, d.Total)
	assert.LessOrEqual(t, d.Free, d.Total)
	_, err = DiskOf("/nonexistent/customstream")
	assert.Error(t, err)
}
