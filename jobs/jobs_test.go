package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/testenv"
)

type env struct {
	*testenv.Env
	hash    *HashHandler
	results *ResultHandler
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := testenv.New(t)
	return &env{Env: e,
		hash:    &HashHandler{Blobs: e.Blobs, Progress: e.Progress, Results: e.Queue, Log: e.Log},
		results: &ResultHandler{Images: e.Images, Queue: e.Queue, Log: e.Log}}
}

// upload records an upload the way the web handler does and enqueues its job.
func (e *env) upload(t *testing.T, files map[string]string, meta images.Metadata) (*store.Image, *store.Job) {
	t.Helper()
	dir, err := e.Blobs.StagingDir(images.UploadsStaging)
	require.NoError(t, err)
	var staged []images.StagedFile
	for field, content := range files {
		p := filepath.Join(dir, "upload-"+field)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		rel, err := e.Blobs.StagedRel(p)
		require.NoError(t, err)
		staged = append(staged, images.StagedFile{Field: field, Path: rel, Size: int64(len(content))})
	}
	up, err := images.PrepareUpload(meta, staged)
	require.NoError(t, err)
	img, job, err := e.Images.Create(up, func(img *store.Image) (*store.Job, error) {
		return NewHashJob(images.NewID(), img)
	})
	require.NoError(t, err)
	require.NoError(t, Enqueue(context.Background(), e.Queue, *job))
	return img, job
}

// runPending runs the pending task of queue with id through h.
func (e *env) runPending(t *testing.T, queue, id string, h asynq.Handler) error {
	t.Helper()
	info, err := e.Inspector.GetTaskInfo(queue, id)
	require.NoError(t, err)
	return h.ProcessTask(context.Background(), asynq.NewTask(info.Type, info.Payload))
}

func bootFiles() map[string]string {
	return map[string]string{images.FileKernel: "kernel bytes", images.FileInitrd: "initrd bytes", images.FileRootfs: "squashfs bytes"}
}

func bootMeta() images.Metadata {
	return images.Metadata{OS: "ubuntu", Release: "noble", Arch: "amd64", Version: "24.04"}
}

func TestHashThenResultPublishes(t *testing.T) {
	e := newEnv(t)
	img, job := e.upload(t, bootFiles(), bootMeta())

	info, err := e.Inspector.GetTaskInfo(QueueHash, job.ID)
	require.NoError(t, err)
	assert.Equal(t, TypeHashImage, info.Type)
	assert.Equal(t, 3, info.MaxRetry)

	require.NoError(t, e.runPending(t, QueueHash, job.ID, e.hash))
	result, err := e.Inspector.GetTaskInfo(QueueResults, resultTaskID(job.ID))
	require.NoError(t, err)
	var p ResultPayload
	require.NoError(t, json.Unmarshal(result.Payload, &p))
	assert.Empty(t, p.Error)
	require.Len(t, p.Items, 4)
	names := []string{}
	for _, it := range p.Items {
		names = append(names, it.Name)
		size, ok := e.Blobs.Has(it.SHA256)
		assert.True(t, ok, it.Name)
		assert.Equal(t, it.Size, size)
	}
	assert.ElementsMatch(t, []string{"boot-kernel", "boot-initrd", "squashfs", "manifest"}, names)

	manifest := p.Items[3]
	data, err := os.ReadFile(e.Blobs.Path(manifest.SHA256))
	require.NoError(t, err)
	assert.Contains(t, string(data), img.ProductID)
	assert.Contains(t, string(data), p.Items[0].SHA256, "the generated manifest lists the files")

	require.NoError(t, e.runPending(t, QueueResults, resultTaskID(job.ID), e.results))
	got, err := e.Store.GetImage(img.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusReady, got.Status)
	_, ok := e.Publisher.Lookup(got.Items[0].Path)
	assert.True(t, ok)
	j, err := e.Store.GetJob(job.ID)
	require.NoError(t, err)
	assert.Equal(t, store.JobSucceeded, j.State)
}

func TestHashRetryIsIdempotent(t *testing.T) {
	e := newEnv(t)
	_, job := e.upload(t, bootFiles(), bootMeta())
	require.NoError(t, e.runPending(t, QueueHash, job.ID, e.hash))
	first, err := e.Inspector.GetTaskInfo(QueueResults, resultTaskID(job.ID))
	require.NoError(t, err)
	// A retried task (the worker died before acknowledging) reports again:
	// the waiting result is kept and nothing breaks.
	require.NoError(t, e.runPending(t, QueueHash, job.ID, e.hash))
	again, err := e.Inspector.GetTaskInfo(QueueResults, resultTaskID(job.ID))
	require.NoError(t, err)
	assert.Equal(t, first.Payload, again.Payload)
}

func TestHashMissingStagedFileFailsForGood(t *testing.T) {
	e := newEnv(t)
	img, job := e.upload(t, bootFiles(), bootMeta())
	for _, it := range img.Items {
		if it.Staged != "" {
			p, err := e.Blobs.StagedPath(it.Staged)
			require.NoError(t, err)
			require.NoError(t, os.Remove(p))
		}
	}
	err := e.runPending(t, QueueHash, job.ID, e.hash)
	require.Error(t, err)
	assert.ErrorIs(t, err, asynq.SkipRetry)

	require.NoError(t, e.runPending(t, QueueResults, resultTaskID(job.ID), e.results))
	got, err := e.Store.GetImage(img.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusFailed, got.Status)
	assert.Contains(t, got.Error, "gone from staging")
	assert.False(t, strings.HasSuffix(got.Error, "permanent"))
}

func TestHashRefusesPathsOutsideStaging(t *testing.T) {
	e := newEnv(t)
	p := HashImagePayload{JobID: "j1", ImageID: "i1", Items: []HashItem{{Name: "squashfs", Staged: "/etc/passwd"}}}
	task, err := NewHashImageTask(p)
	require.NoError(t, err)
	err = e.hash.ProcessTask(context.Background(), task)
	require.ErrorIs(t, err, asynq.SkipRetry)
	assert.Contains(t, err.Error(), "is not a staging file")
}

func TestBadPayloadsSkipRetry(t *testing.T) {
	e := newEnv(t)
	for name, h := range map[string]asynq.Handler{"hash": e.hash, "result": e.results} {
		t.Run(name, func(t *testing.T) {
			err := h.ProcessTask(context.Background(), asynq.NewTask("x", []byte("{not json")))
			assert.ErrorIs(t, err, asynq.SkipRetry)
		})
	}
}

func TestRequeueRestoresLostTasks(t *testing.T) {
	e := newEnv(t)
	_, job := e.upload(t, bootFiles(), bootMeta())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	unfinished, err := e.Store.UnfinishedJobs()
	require.NoError(t, err)

	fail := func(jobID, reason string) error { return e.Images.RecordResult(jobID, images.JobResult{Error: reason}) }
	n, err := Requeue(context.Background(), e.Inspector, e.Queue, unfinished, fail, log)
	require.NoError(t, err)
	assert.Equal(t, 0, n, "a task Redis still holds is left alone")

	require.NoError(t, e.Inspector.DeleteTask(QueueHash, job.ID))
	n, err = Requeue(context.Background(), e.Inspector, e.Queue, unfinished, fail, log)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, err = e.Inspector.GetTaskInfo(QueueHash, job.ID)
	require.NoError(t, err)
}

func TestRequeueFailsArchivedJobs(t *testing.T) {
	e := newEnv(t)
	img, job := e.upload(t, bootFiles(), bootMeta())
	require.NoError(t, e.Inspector.ArchiveTask(QueueHash, job.ID))
	unfinished, err := e.Store.UnfinishedJobs()
	require.NoError(t, err)
	fail := func(jobID, reason string) error { return e.Images.RecordResult(jobID, images.JobResult{Error: reason}) }
	n, err := Requeue(context.Background(), e.Inspector, e.Queue, unfinished, fail, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	assert.Equal(t, 0, n)
	got, err := e.Store.GetImage(img.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusFailed, got.Status)
	assert.Contains(t, got.Error, "stopped after its retries")
	j, err := e.Store.GetJob(job.ID)
	require.NoError(t, err)
	assert.Equal(t, store.JobFailed, j.State)
}

// TestCanceledJobIsNotWorkedOn: a worker that picks up (or fails) a job an
// admin canceled stops without a retry and without reporting a result.
func TestCanceledJobIsNotWorkedOn(t *testing.T) {
	e := newEnv(t)
	_, job := e.upload(t, bootFiles(), bootMeta())
	require.NoError(t, e.Progress.Cancel(context.Background(), job.ID))
	err := e.runPending(t, QueueHash, job.ID, e.hash)
	require.ErrorIs(t, err, asynq.SkipRetry)
	assert.Contains(t, err.Error(), "canceled by an admin")
	_, err = e.Inspector.GetTaskInfo(QueueResults, resultTaskID(job.ID))
	assert.Error(t, err, "no result: the web process recorded the cancel itself")

	err = failJob(context.Background(), e.Queue, e.Progress, job.ID, TypeHashImage, errors.New("stopped mid-file"))
	require.ErrorIs(t, err, asynq.SkipRetry, "a canceled job that fails is not retried")
}

// TestShutdownIsNotAFailure: a task whose context a stopping worker
// canceled is left to asynq to run again, even past its retries, and no
// failure is reported.
func TestShutdownIsNotAFailure(t *testing.T) {
	e := newEnv(t)
	_, job := e.upload(t, bootFiles(), bootMeta())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := failJob(ctx, e.Queue, e.Progress, job.ID, TypeHashImage, ctx.Err())
	require.Error(t, err)
	assert.NotErrorIs(t, err, asynq.SkipRetry)
	_, err = e.Inspector.GetTaskInfo(QueueResults, resultTaskID(job.ID))
	assert.Error(t, err, "no failure reported")
}
