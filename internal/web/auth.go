package web

import (
	"crypto/subtle"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// requireToken lets an API request through only with the bearer token.
func (h *handler) requireToken(c *fiber.Ctx) error {
	auth := c.Get(fiber.HeaderAuthorization)
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), []byte(h.APIToken)) != 1 {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="customstream"`)
		return fiber.NewError(fiber.StatusUnauthorized, "missing or wrong API token: send Authorization: Bearer TOKEN")
	}
	return c.Next()
}
