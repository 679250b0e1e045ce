package jobs

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/customstream/customstream/internal/images"
)

// ResultHandler records workers' results; it runs in the web process, the
// only one that writes the database.
type ResultHandler struct {
	Images *images.Service
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
	}
	return fmt.Errorf("result of job %s: unknown type %q: %w", p.JobID, p.Type, asynq.SkipRetry)
}
