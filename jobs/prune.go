package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/customstream/customstream/internal/store"
)

// TypePruneHistory deletes finished jobs older than the retention setting.
const TypePruneHistory = "jobs:prune"

// PruneEvery is how often the history is pruned.
const PruneEvery = time.Hour

// NewPruneTask returns a prune run. It is served by the web process (it
// writes the database), on the sync queue; a second one waiting is refused.
func NewPruneTask() *asynq.Task {
	return asynq.NewTask(TypePruneHistory, nil, asynq.Queue(QueueSync), asynq.MaxRetry(0),
		asynq.Timeout(5*time.Minute), asynq.Unique(PruneEvery))
}

// PruneHandler deletes the history the settings no longer keep.
type PruneHandler struct {
	Store *store.Store
	Log   *slog.Logger
}

// ProcessTask prunes once.
func (h *PruneHandler) ProcessTask(context.Context, *asynq.Task) error {
	_, err := h.Prune()
	return err
}

// Prune deletes the jobs that finished before the retention period and
// returns how many it deleted.
func (h *PruneHandler) Prune() (int, error) {
	settings, err := h.Store.GetSettings()
	if err != nil {
		return 0, err
	}
	n, err := h.Store.PruneJobs(time.Now().Add(-settings.JobRetention()))
	if err != nil {
		return 0, fmt.Errorf("prune history: %w", err)
	}
	if n > 0 {
		h.Log.Info("Pruned the job history", slog.Int("deleted", n), slog.Int("retention_days", settings.JobRetentionDays))
	}
	return n, nil
}
