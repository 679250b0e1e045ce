package web

import (
	"context"
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/units"
)

// healthz checks the database, Redis and the data directory's free space
// (CUSTOMSTREAM_MIN_FREE); 503 when any fails. Each check says "ok" or why not.
func (h *handler) healthz(c *fiber.Ctx) error {
	checks := fiber.Map{}
	ok := true
	if err := h.Store.Ping(); err != nil {
		checks["database"], ok = err.Error(), false
	} else {
		checks["database"] = "ok"
	}
	ctx, cancel := context.WithTimeout(c.Context(), 2*time.Second)
	defer cancel()
	if err := h.Redis(ctx); err != nil {
		checks["redis"], ok = err.Error(), false
	} else {
		checks["redis"] = "ok"
	}
	answer := fiber.Map{"checks": checks}
	if d := h.disk(); d.Error != "" {
		checks["disk"], ok = d.Error, false
	} else {
		answer["disk"] = fiber.Map{"free_bytes": d.Free, "total_bytes": d.Total, "min_free_bytes": d.MinFree}
		if d.Level == "critical" {
			checks["disk"], ok = fmt.Sprintf("%s free in the data directory, below the %s of CUSTOMSTREAM_MIN_FREE",
				units.Bytes(d.Free), units.Bytes(d.MinFree)), false
		} else {
			checks["disk"] = "ok"
		}
	}
	answer["status"] = "ok"
	code := fiber.StatusOK
	if !ok {
		answer["status"], code = "failing", fiber.StatusServiceUnavailable
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(code).JSON(answer)
}
