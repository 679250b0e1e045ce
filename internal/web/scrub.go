package web

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/units"
	"github.com/customstream/customstream/jobs"
)

// startScrub queues a scrub of every ready version's files, unless one is
// queued or running already; the message says which.
func (h *handler) startScrub(c *fiber.Ctx) (*store.Job, bool, string, error) {
	job, started, err := jobs.StartScrub(c.Context(), h.Images, h.Queue, h.Log)
	if err != nil {
		return nil, false, "", err
	}
	if !started {
		h.auditOutcome(c, auditScrub, store.AuditRefused, job.Title, "already "+job.State)
		return job, false, "A scrub is already " + job.State + " (since " + job.CreatedAt.Format("2006-01-02 15:04 MST") + "); it was not queued twice.", nil
	}
	h.Log.Info("Scrub started", slog.String("job_id", job.ID), slog.String("user", actor(c)))
	h.audit(c, auditScrub, job.Title, "job "+job.ID)
	return job, true, "Scrub queued: every file of the ready versions (" + units.Bytes(job.Total) +
		") is read again and checked against its sha256; a damaged version leaves the stream at once.", nil
}

// scrubFromPortal is the Jobs page's "Scrub now" button.
func (h *handler) scrubFromPortal(c *fiber.Ctx) error {
	_, _, msg, err := h.startScrub(c)
	if err != nil {
		return err
	}
	if !isHTMX(c) {
		return c.Redirect("/jobs", fiber.StatusSeeOther)
	}
	data, err := h.jobsData(c, msg)
	if err != nil {
		return err
	}
	return h.partial(c, "job_rows", data)
}

// scrubAPI is POST /api/scrub: 202 with the new job, or 200 with the one
// already queued or running.
func (h *handler) scrubAPI(c *fiber.Ctx) error {
	job, started, msg, err := h.startScrub(c)
	if err != nil {
		return err
	}
	r := h.jobRow(c, *job, nil)
	if started {
		c.Status(fiber.StatusAccepted)
	}
	return c.JSON(fiber.Map{"job": r.api(), "started": started, "message": msg})
}

// scrubSchedule describes the periodic scrub for the Jobs page.
func (h *handler) scrubSchedule() string {
	if h.Config == nil || h.Config.ScrubInterval <= 0 {
		return "The periodic scrub is off (CUSTOMSTREAM_SCRUB_INTERVAL=0)."
	}
	every := units.Duration(h.Config.ScrubInterval)
	if d := h.Config.ScrubInterval; d%(24*time.Hour) == 0 {
		every = fmt.Sprintf("%d day%s", d/(24*time.Hour), map[bool]string{true: "s"}[d != 24*time.Hour])
	}
	return "A scrub runs every " + every + " (CUSTOMSTREAM_SCRUB_INTERVAL)."
}
