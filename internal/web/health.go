package web

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v2"
)

// healthz checks the database and Redis; 503 when either fails.
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
	status, code := "ok", fiber.StatusOK
	if !ok {
		status, code = "failing", fiber.StatusServiceUnavailable
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(code).JSON(fiber.Map{"status": status, "checks": checks})
}
