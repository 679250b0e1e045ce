// Package jobs is the one contract between the web process and the workers:
// task type names, typed payloads, constructors that set the queue, retries
// and timeout, the handlers, and Register functions for each side.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/store"
)

// Task types.
const (
	TypeHashImage = "image:hash"
	TypeJobResult = "job:result"
)

// Queues. Workers serve the heavy queues; the web process serves results,
// because only it may write the database.
const (
	QueueHash    = "hash"
	QueueResults = "results"
)

// WorkerQueues are the queues a worker serves, with their priorities.
func WorkerQueues() map[string]int {
	return map[string]int{QueueHash: 3, QueueMirror: 2, QueueMaintenance: 1}
}

// WebQueues are the queues the web process serves.
func WebQueues() map[string]int { return map[string]int{QueueResults: 3, QueueSync: 1} }

// Enqueuer is what enqueues tasks (an *asynq.Client).
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// HashItem is one file of an image for the hash job. An item named
// "manifest" without a staged file asks the job to generate one.
type HashItem struct {
	Name   string `json:"name"`
	Staged string `json:"staged"`
}

// HashImagePayload asks a worker to hash an uploaded image's files and move
// them into the blob store.
type HashImagePayload struct {
	JobID   string     `json:"job_id"`
	ImageID string     `json:"image_id"`
	Title   string     `json:"title"`
	Items   []HashItem `json:"items"`
}

// NewHashImageTask returns the hash task; its TaskID is the job id, so the
// same job is never queued twice.
func NewHashImageTask(p HashImagePayload) (*asynq.Task, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("hash task %s: %w", p.JobID, err)
	}
	return asynq.NewTask(TypeHashImage, data, hashOptions(p.JobID)...), nil
}

func hashOptions(jobID string) []asynq.Option {
	return []asynq.Option{asynq.Queue(QueueHash), asynq.MaxRetry(3), asynq.Timeout(12 * time.Hour), asynq.TaskID(jobID)}
}

// NewHashJob builds the job record (with its payload) that hashes img.
func NewHashJob(jobID string, img *store.Image) (*store.Job, error) {
	p := HashImagePayload{JobID: jobID, ImageID: img.ID, Title: img.ProductID + " " + img.VersionName}
	var total int64
	for _, it := range img.Items {
		p.Items = append(p.Items, HashItem{Name: it.Name, Staged: it.Staged})
		total += it.Size
	}
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("hash job %s: %w", jobID, err)
	}
	return &store.Job{ID: jobID, Type: TypeHashImage, ImageID: img.ID, Title: p.Title, State: store.JobQueued,
		Payload: data, Total: total, CreatedAt: time.Now().UTC()}, nil
}

// ResultPayload carries a job's outcome from a worker to the web process.
type ResultPayload struct {
	JobID string `json:"job_id"`
	Type  string `json:"type"`
	// Error is set when the job failed for good.
	Error string `json:"error,omitempty"`
	// Items are a hash job's files, now in the blob store.
	Items []images.HashedItem `json:"items,omitempty"`
	// Scrub is a scrub's finding.
	Scrub *images.ScrubResult `json:"scrub,omitempty"`
}

// NewResultTask returns the result task. Its TaskID derives from the job, so
// a retried job that reports again while the first report waits adds nothing.
func NewResultTask(p ResultPayload) (*asynq.Task, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("result task %s: %w", p.JobID, err)
	}
	return asynq.NewTask(TypeJobResult, data, asynq.Queue(QueueResults), asynq.MaxRetry(25),
		asynq.Timeout(5*time.Minute), asynq.TaskID(resultTaskID(p.JobID))), nil
}

func resultTaskID(jobID string) string { return "result:" + jobID }

// TaskFor rebuilds the task of a stored job, to enqueue it again.
func TaskFor(job store.Job) (*asynq.Task, error) {
	switch job.Type {
	case TypeHashImage:
		return asynq.NewTask(TypeHashImage, job.Payload, hashOptions(job.ID)...), nil
	case TypeMirrorImage:
		return asynq.NewTask(TypeMirrorImage, job.Payload, mirrorOptions(job.ID)...), nil
	case TypeScrubBlobs:
		return asynq.NewTask(TypeScrubBlobs, job.Payload, scrubOptions(job.ID)...), nil
	}
	return nil, fmt.Errorf("job %s: unknown type %q", job.ID, job.Type)
}

// QueueOf returns the queue a job type's tasks go to.
func QueueOf(jobType string) string {
	switch jobType {
	case TypeHashImage:
		return QueueHash
	case TypeMirrorImage:
		return QueueMirror
	case TypeSyncUpstreams:
		return QueueSync
	case TypeScrubBlobs:
		return QueueMaintenance
	}
	return ""
}

// Enqueue puts a stored job's task on its queue; a job already queued is
// not an error.
func Enqueue(ctx context.Context, q Enqueuer, job store.Job) error {
	task, err := TaskFor(job)
	if err != nil {
		return err
	}
	if _, err := q.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue job %s: %w", job.ID, err)
	}
	return nil
}

// FailFunc records a job as failed with a reason (the web process's
// images.Service.RecordResult with an error).
type FailFunc func(jobID, reason string) error

// EnqueueRecorded enqueues a job whose record is already stored. The record
// is the source of truth: when Redis is away the requeue loop enqueues the
// job later, so a failure here is only logged.
func EnqueueRecorded(ctx context.Context, q Enqueuer, job store.Job, log *slog.Logger) {
	if err := Enqueue(ctx, q, job); err != nil {
		log.Warn("Unable to enqueue; the job waits for the requeue loop", slog.String("job_id", job.ID), slog.Any("error", err))
	}
}

// Requeue enqueues again every unfinished job whose task and result Redis no
// longer holds (a restarted embedded server, a flushed Redis): bbolt is the
// source of truth, Redis only delivers work. A task asynq archived without a
// result (it ran out of retries, or crashed) fails its job with the last error.
func Requeue(ctx context.Context, insp *asynq.Inspector, q Enqueuer, unfinished []store.Job, fail FailFunc, log *slog.Logger) (int, error) {
	n := 0
	for _, job := range unfinished {
		if _, err := insp.GetTaskInfo(QueueResults, resultTaskID(job.ID)); err == nil {
			continue
		}
		info := findTask(insp, job.ID)
		if info != nil && info.State == asynq.TaskStateArchived {
			reason := "the job stopped after its retries without reporting"
			if info.LastErr != "" {
				reason += ": " + info.LastErr
			}
			if err := fail(job.ID, reason); err != nil {
				return n, err
			}
			_ = insp.DeleteTask(info.Queue, info.ID)
			continue
		}
		if info != nil {
			continue
		}
		if err := Enqueue(ctx, q, job); err != nil {
			return n, err
		}
		log.Info("Job enqueued again", slog.String("job_id", job.ID), slog.String("type", job.Type))
		n++
	}
	return n, nil
}

func findTask(insp *asynq.Inspector, id string) *asynq.TaskInfo {
	for _, queue := range []string{QueueHash, QueueMirror, QueueMaintenance} {
		if info, err := insp.GetTaskInfo(queue, id); err == nil {
			return info
		}
	}
	return nil
}

// RequeueLoop runs Requeue at start and then every interval until ctx ends.
func RequeueLoop(ctx context.Context, interval time.Duration, insp *asynq.Inspector, q Enqueuer,
	unfinished func() ([]store.Job, error), fail FailFunc, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		jobs, err := unfinished()
		if err == nil {
			_, err = Requeue(ctx, insp, q, jobs, fail, log)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("Unable to requeue unfinished jobs", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// logTasks logs every task's type, id, duration and outcome.
func logTasks(log *slog.Logger) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			id, _ := asynq.GetTaskID(ctx)
			start := time.Now()
			err := next.ProcessTask(ctx, t)
			attrs := []any{slog.String("type", t.Type()), slog.String("task_id", id), slog.Duration("took", time.Since(start))}
			if err != nil {
				log.Warn("Task failed", append(attrs, slog.Any("error", err))...)
			} else {
				log.Info("Task done", attrs...)
			}
			return err
		})
	}
}
