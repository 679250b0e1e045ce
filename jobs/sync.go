package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/customstream/customstream/internal/catalog"
	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
)

// TypeSyncUpstreams runs every sync rule: new upstream versions get mirrored.
const TypeSyncUpstreams = "upstream:sync"

// QueueSync holds sync runs. The web process serves it: a sync reads the
// catalog cache and records mirror jobs, both in the database.
const QueueSync = "sync"

// NewSyncTask returns a sync run; while one waits or runs, another is refused.
func NewSyncTask() *asynq.Task {
	return asynq.NewTask(TypeSyncUpstreams, nil, asynq.Queue(QueueSync), asynq.MaxRetry(0),
		asynq.Timeout(time.Hour), asynq.Unique(time.Hour))
}

// Started is one version a mirror request queued, or skipped with a reason.
type Started struct {
	ID          string `json:"id,omitempty"`
	ProductID   string `json:"product_id"`
	VersionName string `json:"version_name"`
	Reason      string `json:"reason,omitempty"`
}

// StartMirrors records and enqueues one mirror job per version; versions
// already mirrored (or on their way) and products another upstream provides
// are skipped with the reason.
func StartMirrors(ctx context.Context, svc *images.Service, q Enqueuer, versions []images.MirrorVersion, log *slog.Logger) (started, skipped []Started, err error) {
	for _, v := range versions {
		img, job, err := svc.CreateMirror(v, func(img *store.Image) (*store.Job, error) {
			return NewMirrorJob(images.NewID(), img)
		})
		switch {
		case errors.Is(err, images.ErrAlreadyMirrored):
			skipped = append(skipped, Started{ProductID: v.ProductID, VersionName: v.VersionName, Reason: "already mirrored (or on its way)"})
			continue
		case errors.Is(err, store.ErrConflict):
			skipped = append(skipped, Started{ProductID: v.ProductID, VersionName: v.VersionName, Reason: err.Error()})
			continue
		case err != nil:
			return started, skipped, err
		}
		EnqueueRecorded(ctx, q, *job, log)
		started = append(started, Started{ID: job.ID, ProductID: img.ProductID, VersionName: img.VersionName})
	}
	return started, skipped, nil
}

// SyncHandler runs the sync rules.
type SyncHandler struct {
	Store   *store.Store
	Catalog *catalog.Service
	Images  *images.Service
	Queue   Enqueuer
	Log     *slog.Logger
}

// ProcessTask refreshes each rule's upstream and mirrors the new versions;
// each rule's outcome is recorded on it, so one failing upstream does not
// stop the others.
func (h *SyncHandler) ProcessTask(ctx context.Context, _ *asynq.Task) error {
	rules, err := h.Store.ListSyncRules()
	if err != nil {
		return err
	}
	if len(rules) == 0 {
		return nil
	}
	// The run is a job of its own on the Jobs page.
	job := &store.Job{ID: images.NewID(), Type: TypeSyncUpstreams, State: store.JobRunning,
		Title: fmt.Sprintf("Sync %d rule%s", len(rules), map[bool]string{true: "s"}[len(rules) > 1]), CreatedAt: time.Now().UTC()}
	if err := h.Store.PutJob(job); err != nil {
		return err
	}
	var failed []string
	for i := range rules {
		r := &rules[i]
		started, note, err := h.syncRule(ctx, r)
		r.LastRun, r.LastStarted, r.LastError = time.Now().UTC(), started, note
		if err != nil {
			r.LastError = err.Error()
			failed = append(failed, r.URL+": "+err.Error())
			h.Log.Warn("Sync rule failed", slog.String("rule_id", r.ID), slog.String("url", r.URL), slog.Any("error", err))
		} else {
			h.Log.Info("Sync rule ran", slog.String("rule_id", r.ID), slog.String("url", r.URL), slog.Int("started", started))
		}
		if err := h.Store.PutSyncRule(r); err != nil {
			return err
		}
	}
	state := store.JobSucceeded
	if len(failed) > 0 {
		state = store.JobFailed
	}
	if _, err := h.Store.FinishJob(job.ID, state, strings.Join(failed, "; "), nil); err != nil {
		return fmt.Errorf("sync: record the run: %w", err)
	}
	return nil
}

func (h *SyncHandler) syncRule(ctx context.Context, r *store.SyncRule) (int, string, error) {
	filters, err := simplestreams.ParseFilters(r.Filters...)
	if err != nil {
		return 0, "", err
	}
	l, err := h.Catalog.Load(ctx, r.URL, true)
	if err != nil {
		return 0, "", err
	}
	ids, missing := l.Select(r.ProductIDs, filters, r.Bootloaders)
	versions, err := l.LatestVersions(ids)
	if err != nil {
		return 0, "", err
	}
	started, _, err := StartMirrors(ctx, h.Images, h.Queue, versions, h.Log)
	if err != nil {
		return len(started), "", fmt.Errorf("sync %s: %w", r.URL, err)
	}
	// Never delete what the upstream dropped; just say so.
	note := ""
	if len(missing) > 0 {
		note = "no longer offered by the upstream: " + strings.Join(missing, ", ")
	}
	return len(started), note, nil
}
