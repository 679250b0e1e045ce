package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/hibiken/asynq"

	"github.com/customstream/customstream/internal/blobs"
	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/progress"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/units"
)

// TypeScrubBlobs re-hashes every blob a ready version uses.
const TypeScrubBlobs = "blobs:scrub"

// QueueMaintenance holds maintenance jobs (scrubs): workers serve it after
// the hash and mirror queues, which admins wait for.
const QueueMaintenance = "maintenance"

// ScrubPayload asks a worker to check blobs against their sha256. The web
// process lists them from its records, so a missing file is found too.
type ScrubPayload struct {
	JobID string           `json:"job_id"`
	Blobs []images.BlobRef `json:"blobs"`
}

func scrubOptions(jobID string) []asynq.Option {
	// Reading many terabytes from slow disks takes hours; the TaskID (the
	// job id) keeps one scrub from being queued twice.
	return []asynq.Option{asynq.Queue(QueueMaintenance), asynq.MaxRetry(3), asynq.Timeout(72 * time.Hour), asynq.TaskID(jobID)}
}

// NewScrubTask returns the scrub task of a payload.
func NewScrubTask(p ScrubPayload) (*asynq.Task, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("scrub task %s: %w", p.JobID, err)
	}
	return asynq.NewTask(TypeScrubBlobs, data, scrubOptions(p.JobID)...), nil
}

// NewScrubJob builds the job record that checks refs (total bytes).
func NewScrubJob(jobID string, refs []images.BlobRef, total int64) (*store.Job, error) {
	data, err := json.Marshal(ScrubPayload{JobID: jobID, Blobs: refs})
	if err != nil {
		return nil, fmt.Errorf("scrub job %s: %w", jobID, err)
	}
	n := len(refs)
	title := fmt.Sprintf("Re-hash %d file%s (%s) of the ready versions against their sha256", n, map[bool]string{true: "s"}[n != 1], units.Bytes(total))
	return &store.Job{ID: jobID, Type: TypeScrubBlobs, Title: title, State: store.JobQueued, Payload: data, Total: total,
		CreatedAt: time.Now().UTC()}, nil
}

// StartScrub records and enqueues a scrub of every ready version's blobs.
// While one is queued or running it returns that one, and started is
// false. Web pages and the periodic schedule all start scrubs through it.
func StartScrub(ctx context.Context, svc *images.Service, q Enqueuer, log *slog.Logger) (job *store.Job, started bool, err error) {
	job, started, err = svc.CreateScrub(func(refs []images.BlobRef, total int64) (*store.Job, error) {
		return NewScrubJob(images.NewID(), refs, total)
	})
	if err != nil {
		return nil, false, fmt.Errorf("start scrub: %w", err)
	}
	if started {
		EnqueueRecorded(ctx, q, *job, log)
	}
	return job, started, nil
}

// ScrubLoop starts a scrub once interval has passed since the last one was
// created (with none in the history, since the schedule began: the first
// start on this data directory), looking every check until ctx ends.
// Counting from stored times rather than from the process start lets a
// server restarted more often than interval scrub too.
func ScrubLoop(ctx context.Context, interval, check time.Duration, began time.Time, history func() ([]store.Job, error),
	start func(ctx context.Context) error, log *slog.Logger) {
	t := time.NewTicker(check)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		last, err := lastScrub(history, began)
		if err == nil && time.Since(last) >= interval {
			err = start(ctx)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("Unable to start the periodic scrub", slog.Any("error", err))
		}
	}
}

func lastScrub(history func() ([]store.Job, error), began time.Time) (time.Time, error) {
	list, err := history()
	if err != nil {
		return time.Time{}, err
	}
	last := began
	found := false
	for _, j := range list {
		if j.Type == TypeScrubBlobs && (!found || j.CreatedAt.After(last)) {
			last, found = j.CreatedAt, true
		}
	}
	return last, nil
}

// ScrubHandler re-hashes blobs in the shared data directory and reports
// the damaged ones; the web process takes their versions out of the stream.
type ScrubHandler struct {
	Blobs    *blobs.Store
	Progress *progress.Tracker
	Results  Enqueuer
	Log      *slog.Logger
}

// ProcessTask runs one scrub. It only reads: a retry (after a shutdown)
// checks every file again.
func (h *ScrubHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	return runWorkerJob(ctx, t, TypeScrubBlobs, h.Results, h.Progress, func(p *ScrubPayload) (ResultPayload, error) {
		res, err := h.scrub(ctx, *p)
		if err != nil {
			return ResultPayload{}, err
		}
		h.Log.Info("Scrubbed", slog.String("job_id", p.JobID), slog.Int("files", res.Files), slog.Int64("bytes", res.Bytes),
			slog.Int("damaged", len(res.Damaged)))
		return ResultPayload{Scrub: &res}, nil
	})
}

func (h *ScrubHandler) scrub(ctx context.Context, p ScrubPayload) (images.ScrubResult, error) {
	var total int64
	for _, b := range p.Blobs {
		if !blobs.ValidSum(b.SHA256) {
			return images.ScrubResult{}, fmt.Errorf("blob %q: not a sha256: %w", b.SHA256, errPermanent)
		}
		total += b.Size
	}
	rep := h.Progress.Reporter(ctx, p.JobID, total)
	rep.Report(0)
	var res images.ScrubResult
	var done int64
	for _, b := range p.Blobs {
		problem, file, n, err := h.check(ctx, b, func(n int64) { rep.Report(done + n) }, true)
		if err != nil {
			return images.ScrubResult{}, err
		}
		done += b.Size
		res.Files++
		res.Bytes += n
		rep.Report(done)
		if problem != "" {
			h.Log.Warn("Damaged blob", slog.String("job_id", p.JobID), slog.String("sha256", b.SHA256), slog.String("problem", problem))
			res.Damaged = append(res.Damaged, images.DamagedBlob{SHA256: b.SHA256, Problem: problem, File: file})
		}
	}
	rep.Report(total)
	return res, nil
}

// check re-hashes one blob and says what is wrong with it ("" when
// nothing), which file it read (zero when missing) and the bytes it read.
// A blob file replaced while it was read (the old one is damaged, the new
// one in place) is checked once more, so a good file is never reported for
// its predecessor.
func (h *ScrubHandler) check(ctx context.Context, b images.BlobRef, progress func(int64), again bool) (string, blobs.FileID, int64, error) {
	path := h.Blobs.Path(b.SHA256)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "missing", blobs.FileID{}, 0, nil
	}
	if err != nil {
		// Permissions and the like: the set-up, not the blob, is wrong.
		return "", blobs.FileID{}, 0, fmt.Errorf("blob %s: %w", b.SHA256, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", blobs.FileID{}, 0, fmt.Errorf("blob %s: %w", b.SHA256, err)
	}
	id := blobs.IDOf(fi)
	if fi.Size() != b.Size {
		return fmt.Sprintf("size mismatch (%d bytes, expected %d)", fi.Size(), b.Size), id, 0, nil
	}
	sum, n, err := blobs.HashReader(ctx, f, progress)
	switch {
	case errors.Is(err, syscall.EIO):
		return "unreadable (input/output error)", id, n, nil
	case err != nil:
		return "", id, n, fmt.Errorf("blob %s: %w", b.SHA256, err)
	case sum == b.SHA256:
		return "", id, n, nil
	}
	if cur, err := os.Stat(path); again && err == nil && !os.SameFile(fi, cur) {
		return h.check(ctx, b, progress, false)
	}
	return "sha256 mismatch", id, n, nil
}
