// Package testenv builds, for tests, the parts the web process and a worker
// share: a store, a blob store, a publisher and the images service in a
// temporary data directory, with asynq and progress on a miniredis server.
package testenv

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/blobs"
	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/progress"
	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/store"
)

// Env is one test's data directory and services.
type Env struct {
	Dir       string
	Store     *store.Store
	Blobs     *blobs.Store
	Publisher *publish.Publisher
	Images    *images.Service
	Redis     *redis.Client
	Queue     *asynq.Client
	Inspector *asynq.Inspector
	Progress  *progress.Tracker
	Log       *slog.Logger
}

// New returns an Env whose resources are released when the test ends.
func New(t testing.TB) *Env {
	t.Helper()
	dir := t.TempDir()
	m := miniredis.RunT(t)
	opt := asynq.RedisClientOpt{Addr: m.Addr()}
	e := &Env{Dir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var err error
	e.Store, err = store.Open(filepath.Join(dir, "customstream.db"), time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { e.Store.Close() })
	e.Blobs, err = blobs.Open(dir)
	require.NoError(t, err)
	e.Publisher, err = publish.New(dir, e.Blobs, e.Log)
	require.NoError(t, err)
	e.Images = images.NewService(e.Store, e.Blobs, e.Publisher, e.Log)
	require.NoError(t, e.Images.Republish())
	e.Queue = asynq.NewClient(opt)
	t.Cleanup(func() { e.Queue.Close() })
	e.Inspector = asynq.NewInspector(opt)
	t.Cleanup(func() { e.Inspector.Close() })
	e.Redis = redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { e.Redis.Close() })
	e.Progress = progress.New(e.Redis)
	return e
}
