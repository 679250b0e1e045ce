package progress

import (
	"context"
	"testing"

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
	assert.Equal(t, Progress{Done: 5, Total: 10}, p)
	assert.Greater(t, m.TTL(key("j1")).Seconds(), 0.0, "progress must expire")

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
