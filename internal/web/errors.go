package web

import (
	"errors"
	"log/slog"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/store"
)

// errorHandler answers API errors as {"error": "…"} and portal errors as
// text or an alert fragment; 5xx are logged at Error, 4xx at Warn.
func errorHandler(log *slog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		code := fiber.StatusInternalServerError
		msg := "internal error: see the server log"
		var fe *fiber.Error
		switch {
		case errors.As(err, &fe):
			code, msg = fe.Code, fe.Message
		case errors.Is(err, store.ErrNotFound):
			code, msg = fiber.StatusNotFound, "not found"
		}
		attrs := []any{slog.String("method", c.Method()), slog.String("path", c.Path()), slog.Int("status", code), slog.Any("error", err)}
		if code >= 500 {
			log.Error("Request failed", attrs...)
		} else if code != fiber.StatusNotFound {
			log.Warn("Request refused", attrs...)
		}
		if isAPI(c) || strings.Contains(c.Get(fiber.HeaderAccept), fiber.MIMEApplicationJSON) {
			return c.Status(code).JSON(fiber.Map{"error": msg})
		}
		if isHTMX(c) {
			c.Status(code)
			return c.Render("partials/alert", fiber.Map{"Message": msg})
		}
		return c.Status(code).SendString(msg)
	}
}
