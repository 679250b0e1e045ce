package web

import (
	"bytes"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/metrics"
	"github.com/customstream/customstream/jobs"
)

// showMetrics answers GET /metrics in the Prometheus text format. It is
// public like /healthz, since scrapers have no session: it only reads, and
// shows counts, sizes and the version, never a name, URL or token.
func (h *handler) showMetrics(c *fiber.Ctx) error {
	var buf bytes.Buffer
	err := metrics.Write(c.Context(), &buf, metrics.Source{
		Version: h.Version, DataDir: h.Config.DataDir, Redis: h.Counters, Log: h.Log,
		Jobs: h.Store.ListJobs, JobTypes: []string{jobs.TypeHashImage, jobs.TypeMirrorImage, jobs.TypeScrubBlobs},
	})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, metrics.ContentType)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Send(buf.Bytes())
}
