package progress

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSetGetClear(t *testing.T) {
	m := miniredis.RunT(t)
	tr := New(redis.NewClient(&redis.Options{Addr: m.Addr()}))
	ctx := context.Background()

	_, ok, err := tr.Get(ctx, "j1")
	require.NoError(t, err)
	assert.False(t, ok)

	require.NoError(t, tr.Set(ctx, "j1", 5, 10))
	p, ok, err := tr.Get(ctx, "j1")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, int64(5), p.Done)
	assert.Equal(t, int64(10), p.Total)
	assert.WithinDuration(t, time.Now(), p.Started, time.Minute)
	assert.Greater(t, m.TTL(key("j1")).Seconds(), 0.0, "progress must expire")
	first := p.Started
	require.NoError(t, tr.Set(ctx, "j1", 7, 10))
	p, _, err = tr.Get(ctx, "j1")
	require.NoError(t, err)
	assert.Equal(t, first, p.Started, "the start stays")
	assert.Equal(t, int64(7), p.Done)

	require.NoError(t, tr.Clear(ctx, "j1"))
	_, ok, err = tr.Get(ctx, "j1")
	require.NoError(t, err)
	assert.False(t, ok)
}

func TestReporterThrottlesButWritesFinal(t *testing.T) {
	m := miniredis.RunT(t)
	tr := New(redis.NewClient(&redis.Options{Addr: m.Addr()}))
	ctx := context.Background()
	r := tr.Reporter(ctx, "j2", 100)
	r.Report(10)
	r.Report(20) // within the interval: skipped
	p, _, err := tr.Get(ctx, "j2")
	require.NoError(t, err)
	assert.Equal(t, int64(10), p.Done)
	r.Report(100)
	p, _, err = tr.Get(ctx, "j2")
	require.NoError(t, err)
	assert.Equal(t, int64(100), p.Done)
}

func TestRate(t *testing.T) {
	start := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		p    Progress
		rate float64
		eta  time.Duration
	}{
		{"half way in 10 s", Progress{Done: 50 << 20, Total: 100 << 20, Started: start, Updated: start.Add(10 * time.Second)}, 5 << 20, 10 * time.Second},
		{"just started", Progress{Done: 1, Total: 100, Started: start, Updated: start}, 0, 0},
		{"done", Progress{Done: 100, Total: 100, Started: start, Updated: start.Add(4 * time.Second)}, 25, 0},
		{"nothing yet", Progress{Total: 100, Started: start, Updated: start.Add(time.Minute)}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rate, eta := tt.p.Rate()
			assert.InDelta(t, tt.rate, rate, 0.001)
			assert.Equal(t, tt.eta, eta)
		})
	}
}

func TestCancelFlag(t *testing.T) {
	m := miniredis.RunT(t)
	tr := New(redis.NewClient(&redis.Options{Addr: m.Addr()}))
	ctx := context.Background()
	assert.False(t, tr.Canceled(ctx, "j3"))
	require.NoError(t, tr.Cancel(ctx, "j3"))
	assert.True(t, tr.Canceled(ctx, "j3"))
	assert.False(t, tr.Canceled(ctx, "j4"))
}
