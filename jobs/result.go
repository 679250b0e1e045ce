package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/store"
)

// ResultHandler records workers' results; it runs in the web process, the
// only one that writes the database.
type ResultHandler struct {
	Images *images.Service
	// Queue takes the downloads a scrub's damage starts.
	Queue Enqueuer
	Log   *slog.Logger
}

// ProcessTask records one result; an error makes asynq try again.
func (h *ResultHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p ResultPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("result: bad payload: %v: %w", err, asynq.SkipRetry)
	}
	switch p.Type {
	case TypeHashImage, TypeMirrorImage:
		return h.Images.RecordResult(p.JobID, images.JobResult{Error: p.Error, Items: p.Items})
	case TypeScrubBlobs:
		res := images.ScrubResult{Error: p.Error}
		if p.Scrub != nil && p.Error == "" {
			res = *p.Scrub
		}
		redownloads, err := h.Images.RecordScrub(p.JobID, res, func(img *store.Image) (*store.Job, error) {
			return NewMirrorJob(images.NewID(), img)
		})
		for _, job := range redownloads {
			EnqueueRecorded(ctx, h.Queue, job, h.Log)
		}
		return err
	}
	return fmt.Errorf("result of job %s: unknown type %q: %w", p.JobID, p.Type, asynq.SkipRetry)
}
