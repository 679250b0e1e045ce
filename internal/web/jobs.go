package web

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/jobs"
)

type apiJob struct {
	ID         string      `json:"id"`
	Type       string      `json:"type"`
	ImageID    string      `json:"image_id,omitempty"`
	Title      string      `json:"title"`
	State      string      `json:"state"`
	Progress   apiProgress `json:"progress"`
	Error      string      `json:"error"`
	Result     string      `json:"result,omitempty"`
	CreatedAt  time.Time   `json:"created_at"`
	FinishedAt *time.Time  `json:"finished_at,omitempty"`
}

type apiProgress struct {
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// BytesPerSecond and ETASeconds are the running attempt's average and
	// what is left at that pace; zero when unknown.
	BytesPerSecond int64 `json:"bytes_per_second,omitempty"`
	ETASeconds     int64 `json:"eta_seconds,omitempty"`
}

// jobRow is a job as the Jobs page and the API show it: the record (the
// truth about the outcome) merged with the progress a worker reports.
type jobRow struct {
	store.Job
	Kind     string
	Percent  int
	Rate     float64
	ETA      time.Duration
	Live     bool
	Finished bool
	// The actions the job allows.
	CanCancel, CanRetry, CanDelete bool
}

var jobKinds = map[string]string{jobs.TypeHashImage: "Hash", jobs.TypeMirrorImage: "Mirror", jobs.TypeSyncUpstreams: "Sync",
	jobs.TypeScrubBlobs: "Scrub"}

// cancelable reports whether an admin may stop job: the worker jobs (an
// image's hash or mirror, a scrub), not a sync run.
func cancelable(job *store.Job) bool {
	return !job.Finished() && (job.ImageID != "" || job.Type == jobs.TypeScrubBlobs)
}

func (h *handler) jobRow(c *fiber.Ctx, job store.Job, img *store.Image) jobRow {
	r := jobRow{Job: job, Kind: jobKinds[job.Type], Finished: job.Finished()}
	if r.Kind == "" {
		r.Kind = job.Type
	}
	if !r.Finished {
		if p, ok, err := h.Progress.Get(c.Context(), job.ID); err == nil && ok {
			r.State, r.Live = store.JobRunning, true
			r.Done, r.Total = p.Done, p.Total
			r.Rate, r.ETA = p.Rate()
		}
	}
	if r.Total > 0 {
		r.Percent = int(r.Done * 100 / r.Total)
	}
	r.CanCancel = cancelable(&job)
	r.CanDelete = r.Finished
	r.CanRetry = (job.State == store.JobFailed || job.State == store.JobCanceled) && job.Type == jobs.TypeMirrorImage &&
		img != nil && img.JobID == job.ID
	return r
}

func (r *jobRow) api() apiJob {
	out := apiJob{ID: r.ID, Type: r.Type, ImageID: r.ImageID, Title: r.Title, State: r.State, Error: r.Error, Result: r.Result,
		Progress:  apiProgress{Done: r.Done, Total: r.Total, BytesPerSecond: int64(r.Rate), ETASeconds: int64(r.ETA.Seconds())},
		CreatedAt: r.CreatedAt}
	if r.Finished {
		out.FinishedAt = &r.FinishedAt
	}
	return out
}

// jobRows lists every job, newest first, and whether any is still active.
func (h *handler) jobRows(c *fiber.Ctx, filter string) ([]jobRow, bool, error) {
	list, err := h.Store.ListJobs()
	if err != nil {
		return nil, false, err
	}
	imgs, err := h.Images.List()
	if err != nil {
		return nil, false, err
	}
	byID := make(map[string]*store.Image, len(imgs))
	for i := range imgs {
		byID[imgs[i].ID] = &imgs[i]
	}
	active := false
	rows := make([]jobRow, 0, len(list))
	for _, job := range list {
		r := h.jobRow(c, job, byID[job.ImageID])
		active = active || !r.Finished
		switch {
		case filter == "active" && r.Finished, filter == "failed" && r.State != store.JobFailed:
			continue
		}
		rows = append(rows, r)
	}
	return rows, active, nil
}

func (h *handler) jobsData(c *fiber.Ctx, message string) (fiber.Map, error) {
	filter := c.Query("show")
	if filter != "active" && filter != "failed" {
		filter = "all"
	}
	rows, active, err := h.jobRows(c, filter)
	if err != nil {
		return nil, err
	}
	return fiber.Map{"Jobs": rows, "Active": active, "Show": filter, "Message": message, "ScrubSchedule": h.scrubSchedule()}, nil
}

// showJobsPage lists every job with its live progress.
func (h *handler) showJobsPage(c *fiber.Ctx) error {
	data, err := h.jobsData(c, "")
	if err != nil {
		return err
	}
	settings, err := h.Store.GetSettings()
	if err != nil {
		return err
	}
	data["RetentionDays"] = settings.JobRetentionDays
	return h.page(c, "jobs", "Jobs", "jobs", data)
}

// showJobRows is the table alone, polled while jobs are active.
func (h *handler) showJobRows(c *fiber.Ctx) error {
	data, err := h.jobsData(c, "")
	if err != nil {
		return err
	}
	return h.partial(c, "job_rows", data)
}

// jobAction runs an action on a job, audits it, then answers the portal
// with the refreshed table (and the outcome), or the API with the job. do
// returns the message and the job's title (empty when not found).
func (h *handler) jobAction(c *fiber.Ctx, action string, do func(id string) (msg, title string, err error)) error {
	id := c.Params("id")
	msg, title, err := do(id)
	target := "job " + id
	if title != "" {
		target = title
	}
	status := fiber.StatusOK
	switch {
	case errors.Is(err, store.ErrNotFound):
		status, msg = fiber.StatusNotFound, "no job with id "+id
	case errors.Is(err, store.ErrConflict):
		status, msg = fiber.StatusConflict, err.Error()
	case err != nil:
		h.auditOutcome(c, action, store.AuditFailed, target, "job "+id+": "+err.Error())
		return err
	}
	if status == fiber.StatusOK {
		h.audit(c, action, target, "job "+id+": "+msg)
	} else {
		h.auditOutcome(c, action, store.AuditRefused, target, msg)
	}
	if isAPI(c) {
		if status != fiber.StatusOK {
			return fiber.NewError(status, msg)
		}
		return c.JSON(fiber.Map{"message": msg})
	}
	data, derr := h.jobsData(c, msg)
	if derr != nil {
		return derr
	}
	c.Status(status)
	return h.partial(c, "job_rows", data)
}

// cancelJob stops a queued or running hash, mirror or scrub job; an image's
// fails with "canceled" and can be deleted or, when mirrored, retried.
func (h *handler) cancelJob(c *fiber.Ctx) error {
	return h.jobAction(c, auditJobCancel, func(id string) (string, string, error) {
		job, err := h.Store.GetJob(id)
		if err != nil {
			return "", "", err
		}
		if job.ImageID == "" && job.Type != jobs.TypeScrubBlobs {
			return "", job.Title, fmt.Errorf("job %s (%s) cannot be canceled: %w", id, jobKinds[job.Type], store.ErrConflict)
		}
		// The flag first: a worker that stops on the cancel must not retry.
		if err := h.Progress.Cancel(c.Context(), id); err != nil {
			return "", job.Title, err
		}
		if err := h.Images.Cancel(id); err != nil {
			return "", job.Title, err
		}
		h.stopTask(job)
		h.Log.Info("Job canceled", slog.String("job_id", id), slog.String("title", job.Title), slog.String("user", actor(c)))
		return "Canceled " + job.Title + ".", job.Title, nil
	})
}

// stopTask takes a canceled job's task off its queue, or tells the worker
// running it to stop.
func (h *handler) stopTask(job *store.Job) {
	if h.Inspector == nil {
		return
	}
	if err := h.Inspector.DeleteTask(jobs.QueueOf(job.Type), job.ID); err == nil {
		return
	}
	if err := h.Inspector.CancelProcessing(job.ID); err != nil {
		h.Log.Warn("Unable to signal a running task to stop", slog.String("job_id", job.ID), slog.Any("error", err))
	}
}

// retryJob starts a failed or canceled mirror job again.
func (h *handler) retryJob(c *fiber.Ctx) error {
	return h.jobAction(c, auditJobRetry, func(id string) (string, string, error) {
		title := ""
		if old, err := h.Store.GetJob(id); err == nil {
			title = old.Title
		}
		img, job, err := h.Images.Retry(id, func(img *store.Image) (*store.Job, error) {
			return jobs.NewMirrorJob(images.NewID(), img)
		})
		if err != nil {
			return "", title, err
		}
		if err := jobs.Enqueue(c.Context(), h.Queue, *job); err != nil {
			// The record stays: the requeue loop enqueues it once Redis answers.
			h.Log.Warn("Unable to enqueue a retried job", slog.String("job_id", job.ID), slog.Any("error", err))
		}
		h.Log.Info("Job retried", slog.String("job_id", id), slog.String("new_job_id", job.ID), slog.String("user", actor(c)))
		return "Retrying " + img.ProductID + " " + img.VersionName + " as job " + job.ID + ".", title, nil
	})
}

// deleteJob removes a finished job from the history.
func (h *handler) deleteJob(c *fiber.Ctx) error {
	return h.jobAction(c, auditJobRemove, func(id string) (string, string, error) {
		title := ""
		if job, err := h.Store.GetJob(id); err == nil {
			title = job.Title
		}
		if err := h.Store.DeleteJob(id); err != nil {
			return "", title, err
		}
		return "Removed the job from the history.", title, nil
	})
}

// listJobsAPI is GET /api/jobs, newest first.
func (h *handler) listJobsAPI(c *fiber.Ctx) error {
	rows, _, err := h.jobRows(c, "all")
	if err != nil {
		return err
	}
	out := make([]apiJob, 0, len(rows))
	for i := range rows {
		out = append(out, rows[i].api())
	}
	return c.JSON(fiber.Map{"jobs": out})
}

// getJobAPI is GET /api/jobs/{id}.
func (h *handler) getJobAPI(c *fiber.Ctx) error {
	job, err := h.Store.GetJob(c.Params("id"))
	if errors.Is(err, store.ErrNotFound) {
		return fiber.NewError(fiber.StatusNotFound, "no job with id "+c.Params("id"))
	}
	if err != nil {
		return err
	}
	var img *store.Image
	if job.ImageID != "" {
		img, _ = h.Images.Get(job.ImageID)
	}
	r := h.jobRow(c, *job, img)
	return c.JSON(r.api())
}
