package web

import (
	"crypto/subtle"
	"net/url"
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

// contentSecurityPolicy allows only the server's own scripts, styles and
// connections: no inline script, no framing.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"

// securityHeaders sets the headers every answer carries.
func securityHeaders(c *fiber.Ctx) error {
	c.Set("Content-Security-Policy", contentSecurityPolicy)
	c.Set("X-Content-Type-Options", "nosniff")
	c.Set("Referrer-Policy", "same-origin")
	return c.Next()
}

// sameOrigin refuses a state-changing portal request that another site made
// the browser send (a form on a page the admin happened to open): the
// browser's Sec-Fetch-Site or Origin header gives such a request away.
func (h *handler) sameOrigin(c *fiber.Ctx) error {
	site := c.Get("Sec-Fetch-Site")
	if site != "" && site != "same-origin" && site != "none" {
		return fiber.NewError(fiber.StatusForbidden, "cross-site request refused")
	}
	if origin := c.Get(fiber.HeaderOrigin); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host != string(c.Request().Host()) {
			return fiber.NewError(fiber.StatusForbidden, "cross-site request refused")
		}
	}
	return c.Next()
}
