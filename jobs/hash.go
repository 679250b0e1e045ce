package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/customstream/customstream/internal/blobs"
	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/progress"
)

// hashStaging is the workers' own staging sub-directory (generated files).
const hashStaging = "hash"

// HashHandler hashes an uploaded image's files, commits them to the blob
// store and reports the result to the web process.
type HashHandler struct {
	Blobs    *blobs.Store
	Progress *progress.Tracker
	Results  Enqueuer
	Log      *slog.Logger
}

// ProcessTask runs one hash job. It is idempotent: staged files stay until
// the web process has recorded the result, so a retry hashes them again.
func (h *HashHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	return runWorkerJob(ctx, t, TypeHashImage, h.Results, h.Progress, func(p *HashImagePayload) (ResultPayload, error) {
		items, err := h.hashAll(ctx, *p)
		return ResultPayload{Items: items}, err
	})
}

// workerPayload is a worker task's payload: it names its job.
type workerPayload interface{ jobID() string }

func (p HashImagePayload) jobID() string   { return p.JobID }
func (p MirrorImagePayload) jobID() string { return p.JobID }
func (p ScrubPayload) jobID() string       { return p.JobID }

// runWorkerJob is the frame of every worker task: decode its payload, stop
// when an admin canceled its job, run it, and report its result (or, once
// no retry is left, its failure) to the web process.
func runWorkerJob[P workerPayload](ctx context.Context, t *asynq.Task, jobType string, results Enqueuer, tracker *progress.Tracker,
	run func(p *P) (ResultPayload, error)) error {
	var p P
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("%s: bad payload: %v: %w", jobType, err, asynq.SkipRetry)
	}
	id := p.jobID()
	if tracker.Canceled(ctx, id) {
		return fmt.Errorf("job %s canceled by an admin: %w", id, asynq.SkipRetry)
	}
	res, err := run(&p)
	if err != nil {
		return failJob(ctx, results, tracker, id, jobType, err)
	}
	res.JobID, res.Type = id, jobType
	if err := report(ctx, results, res); err != nil {
		return err
	}
	_ = tracker.Clear(ctx, id)
	return nil
}

// errPermanent marks failures a retry cannot fix.
var errPermanent = errors.New("permanent")

func (h *HashHandler) hashAll(ctx context.Context, p HashImagePayload) ([]images.HashedItem, error) {
	var total int64
	paths := map[string]string{}
	for _, it := range p.Items {
		if it.Staged == "" {
			continue
		}
		path, err := h.Blobs.StagedPath(it.Staged)
		if err != nil {
			return nil, fmt.Errorf("item %s: %w: %w", it.Name, err, errPermanent)
		}
		paths[it.Name] = path
		fi, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("item %s: the uploaded file is gone from staging: %w", it.Name, errPermanent)
		}
		if err != nil {
			return nil, fmt.Errorf("item %s: %w", it.Name, err)
		}
		total += fi.Size()
	}
	rep := h.Progress.Reporter(ctx, p.JobID, total)
	var done int64
	var out []images.HashedItem
	generate := false
	for _, it := range p.Items {
		if it.Staged == "" {
			generate = generate || it.Name == "manifest"
			continue
		}
		sum, size, err := blobs.HashFileContext(ctx, paths[it.Name], func(n int64) { rep.Report(done + n) })
		if err != nil {
			return nil, fmt.Errorf("item %s: %w", it.Name, err)
		}
		if err := h.Blobs.Commit(paths[it.Name], sum); err != nil {
			return nil, fmt.Errorf("item %s: %w", it.Name, err)
		}
		done += size
		out = append(out, images.HashedItem{Name: it.Name, SHA256: sum, Size: size})
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	if generate {
		m, err := h.generateManifest(p, out)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	rep.Report(total)
	return out, nil
}

// generateManifest writes a manifest that lists the image's files, since
// MAAS 3.8 refuses a version without one. Its content is deterministic, so
// a retry produces the same blob.
func (h *HashHandler) generateManifest(p HashImagePayload, items []images.HashedItem) (images.HashedItem, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# customstream manifest for %s\n# generated: the upload came without a manifest\n", p.Title)
	for _, it := range items {
		fmt.Fprintf(&b, "%s\t%d\t%s\n", it.Name, it.Size, it.SHA256)
	}
	dir, err := h.Blobs.StagingDir(hashStaging)
	if err != nil {
		return images.HashedItem{}, err
	}
	path := filepath.Join(dir, p.JobID+".manifest")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return images.HashedItem{}, fmt.Errorf("manifest: %w", err)
	}
	defer os.Remove(path)
	sum, size, err := blobs.HashFile(path, nil)
	if err != nil {
		return images.HashedItem{}, err
	}
	if err := h.Blobs.Commit(path, sum); err != nil {
		return images.HashedItem{}, err
	}
	return images.HashedItem{Name: "manifest", SHA256: sum, Size: size}, nil
}

// failJob reports a failure when no retry is left (or none can help) and
// returns the error for asynq to retry or archive.
func failJob(ctx context.Context, results Enqueuer, tracker *progress.Tracker, jobID, taskType string, err error) error {
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	// The web process recorded a canceled job already; a retry would only
	// do the work it was told to stop.
	if tracker.Canceled(context.WithoutCancel(ctx), jobID) {
		_ = tracker.Clear(context.WithoutCancel(ctx), jobID)
		return fmt.Errorf("job %s canceled by an admin: %w", jobID, asynq.SkipRetry)
	}
	permanent := errors.Is(err, errPermanent)
	// A worker shutting down cancels its tasks: the job did not fail, and
	// asynq runs it again (not counted as a failed attempt) even on its
	// last allowed retry.
	if !permanent && (retried < maxRetry || errors.Is(ctx.Err(), context.Canceled)) {
		return err
	}
	msg := strings.TrimSuffix(err.Error(), ": "+errPermanent.Error())
	if rerr := report(ctx, results, ResultPayload{JobID: jobID, Type: taskType, Error: msg}); rerr != nil {
		return rerr
	}
	_ = tracker.Clear(ctx, jobID)
	return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
}

// report enqueues a result; one already waiting for the same job is enough.
// It runs even when the task's own deadline has passed: a timed-out job
// must still say so.
func report(ctx context.Context, q Enqueuer, res ResultPayload) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	task, err := NewResultTask(res)
	if err != nil {
		return err
	}
	if _, err := q.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("report result of job %s: %w", res.JobID, err)
	}
	return nil
}
