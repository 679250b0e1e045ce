package web

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/jobs"
)

// historyStats describes the job history the retention setting prunes.
type historyStats struct {
	Finished int
	Oldest   time.Time
}

func (h *handler) settingsData(form store.Settings, message, formErr string) (fiber.Map, error) {
	all, err := h.Store.ListJobs()
	if err != nil {
		return nil, err
	}
	var hist historyStats
	for _, j := range all {
		if !j.Finished() {
			continue
		}
		hist.Finished++
		if hist.Oldest.IsZero() || j.FinishedAt.Before(hist.Oldest) {
			hist.Oldest = j.FinishedAt
		}
	}
	return fiber.Map{"Settings": form, "History": hist, "Message": message, "Error": formErr,
		"MaxRetention": store.MaxJobRetentionDays, "Env": h.Config.Env()}, nil
}

// showSettingsPage shows the settings an admin may change and the
// environment the server started with.
func (h *handler) showSettingsPage(c *fiber.Ctx) error {
	s, err := h.Store.GetSettings()
	if err != nil {
		return err
	}
	data, err := h.settingsData(s, "", "")
	if err != nil {
		return err
	}
	return h.page(c, "settings", "Settings", "settings", data)
}

func (h *handler) settingsRegion(c *fiber.Ctx, status int, form store.Settings, message, formErr string) error {
	data, err := h.settingsData(form, message, formErr)
	if err != nil {
		return err
	}
	return h.region(c, status, "settings_form", "settings", "Settings", "settings", data)
}

// saveSettings changes the settings; a shorter retention prunes at once.
func (h *handler) saveSettings(c *fiber.Ctx) error {
	form, err := h.Store.GetSettings()
	if err != nil {
		return err
	}
	raw := strings.TrimSpace(c.FormValue("job_retention_days"))
	days, err := strconv.Atoi(raw)
	if err != nil {
		form.JobRetentionDays = 0
		msg := fmt.Sprintf("Keep finished jobs for a whole number of days, not %q.", raw)
		h.auditOutcome(c, auditSettings, store.AuditRefused, "job history retention", msg)
		return h.settingsRegion(c, fiber.StatusBadRequest, form, "", msg)
	}
	before := form.JobRetentionDays
	form.JobRetentionDays = days
	if err := form.Validate(); err != nil {
		msg := "Keep finished jobs for 1 to " + strconv.Itoa(store.MaxJobRetentionDays) + " days."
		h.auditOutcome(c, auditSettings, store.AuditRefused, "job history retention", fmt.Sprintf("%d days: %s", days, msg))
		return h.settingsRegion(c, fiber.StatusBadRequest, form, "", msg)
	}
	if err := h.Store.PutSettings(form); err != nil {
		return err
	}
	h.Log.Info("Settings changed", slog.Int("job_retention_days", days), slog.String("user", actor(c)))
	h.audit(c, auditSettings, "job history retention", fmt.Sprintf("%d days, was %d", days, before))
	pruned, err := (&jobs.PruneHandler{Store: h.Store, Log: h.Log}).Prune()
	if err != nil {
		return err
	}
	msg := "Saved."
	if pruned > 0 {
		msg = fmt.Sprintf("Saved. %d finished job%s older than %d days removed from the history.", pruned, plural(pruned), days)
	}
	return h.settingsRegion(c, fiber.StatusOK, form, msg, "")
}
