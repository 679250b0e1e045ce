package web

import (
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/store"
)

type apiJob struct {
	ID       string      `json:"id"`
	Type     string      `json:"type"`
	ImageID  string      `json:"image_id,omitempty"`
	State    string      `json:"state"`
	Progress apiProgress `json:"progress"`
	Error    string      `json:"error"`
}

type apiProgress struct {
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
}

// jobView merges the record (the truth about the outcome) with the progress
// a worker reports while it runs.
func (h *handler) jobView(c *fiber.Ctx, job *store.Job) apiJob {
	out := apiJob{ID: job.ID, Type: job.Type, ImageID: job.ImageID, State: job.State, Error: job.Error,
		Progress: apiProgress{Done: job.Done, Total: job.Total}}
	if job.Finished() {
		return out
	}
	if p, ok, err := h.Progress.Get(c.Context(), job.ID); err == nil && ok {
		out.State = store.JobRunning
		out.Progress = apiProgress{Done: p.Done, Total: p.Total}
	}
	return out
}

// listJobsAPI is GET /api/jobs, newest first.
func (h *handler) listJobsAPI(c *fiber.Ctx) error {
	list, err := h.Store.ListJobs()
	if err != nil {
		return err
	}
	out := make([]apiJob, 0, len(list))
	for i := range list {
		out = append(out, h.jobView(c, &list[i]))
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
	return c.JSON(h.jobView(c, job))
}
