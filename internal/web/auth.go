package web

import (
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/auth"
	"github.com/customstream/customstream/internal/store"
)

const (
	sessionCookie = "customstream_session"
	// csrfHeader carries the session's CSRF token on htmx requests (the
	// layout sets it with hx-headers); plain forms send csrfField.
	csrfHeader = "X-CSRF-Token"
	csrfField  = "csrf_token"
	// localSession and localActor are the c.Locals keys of the admin's
	// session and of who acts (for logs).
	localSession = "session"
	localActor   = "actor"
	// envTokenName names CUSTOMSTREAM_API_TOKEN where a token's name is shown.
	envTokenName = "CUSTOMSTREAM_API_TOKEN"
)

// requireToken lets an API request through only with a bearer token: one
// created in the portal, or CUSTOMSTREAM_API_TOKEN.
func (h *handler) requireToken(c *fiber.Ctx) error {
	token, ok := strings.CutPrefix(c.Get(fiber.HeaderAuthorization), "Bearer ")
	token = strings.TrimSpace(token)
	if !ok || token == "" {
		return unauthorizedToken(c)
	}
	hash := auth.HashSecret(token)
	if h.envTokenHash != "" && subtle.ConstantTimeCompare([]byte(hash), []byte(h.envTokenHash)) == 1 {
		c.Locals(localActor, "token:"+envTokenName)
		return c.Next()
	}
	t, err := h.Store.APITokenByHash(hash)
	if errors.Is(err, store.ErrNotFound) {
		return unauthorizedToken(c)
	}
	if err != nil {
		return err
	}
	// Written at most once a minute: scripts may call the API in loops.
	if now := time.Now(); now.Sub(t.LastUsedAt) > time.Minute {
		if err := h.Store.TouchAPIToken(t.ID, now); err != nil {
			h.Log.Warn("Unable to record an API token's use", slog.String("token_name", t.Name), slog.Any("error", err))
		}
	}
	c.Locals(localActor, "token:"+t.Name)
	return c.Next()
}

func unauthorizedToken(c *fiber.Ctx) error {
	c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="customstream"`)
	return fiber.NewError(fiber.StatusUnauthorized, "missing or wrong API token: send Authorization: Bearer TOKEN (create tokens on the portal's API tokens page)")
}

// requireAdmin lets a portal request through only with a live admin
// session; others are sent to the login page.
func (h *handler) requireAdmin(c *fiber.Ctx) error {
	sess, err := h.sessions.Get(c.Cookies(sessionCookie))
	if errors.Is(err, auth.ErrPasswordChanged) {
		// Who changed it (customstream password, or a new
		// CUSTOMSTREAM_ADMIN_PASSWORD and a restart) is not known here.
		h.auditAs(c, "", auditPasswordChanged, store.AuditOK, auth.AdminUser,
			"noticed when a session opened before the change came back; every such session has ended")
	}
	if errors.Is(err, auth.ErrNoSession) {
		return h.toLogin(c)
	}
	if err != nil {
		return err
	}
	c.Locals(localSession, sess)
	c.Locals(localActor, sess.User)
	return c.Next()
}

// toLogin answers a request without a session: pages redirect to the login
// page (and back afterwards), htmx is told to load it, anything else is 401.
func (h *handler) toLogin(c *fiber.Ctx) error {
	if c.Cookies(sessionCookie) != "" {
		h.clearSessionCookie(c)
	}
	target := "/login?next=" + url.QueryEscape(c.OriginalURL())
	switch {
	case isHTMX(c):
		// A fragment cannot show a login page: htmx loads it instead.
		c.Set("HX-Redirect", "/login")
		return c.Status(fiber.StatusUnauthorized).SendString("Your session has ended: log in again.")
	case c.Method() == fiber.MethodGet || c.Method() == fiber.MethodHead:
		return c.Redirect(target, fiber.StatusSeeOther)
	}
	return fiber.NewError(fiber.StatusUnauthorized, "log in first: this needs an admin session")
}

// session returns the admin session requireAdmin found, or nil.
func session(c *fiber.Ctx) *store.Session {
	sess, _ := c.Locals(localSession).(*store.Session)
	return sess
}

// actor names who makes the request, for logs: the admin or a token.
func actor(c *fiber.Ctx) string {
	who, _ := c.Locals(localActor).(string)
	return who
}

// checkCSRF refuses a state-changing portal request that does not carry the
// session's CSRF token, or that another site made the browser send.
func (h *handler) checkCSRF(c *fiber.Ctx) error {
	if err := sameOrigin(c); err != nil {
		return err
	}
	sess := session(c)
	if sess == nil {
		return fiber.NewError(fiber.StatusForbidden, "no session")
	}
	token := c.Get(csrfHeader)
	// Only a urlencoded form is read for the field: a multipart upload is
	// streamed to disk and must not be buffered here.
	if token == "" && strings.HasPrefix(c.Get(fiber.HeaderContentType), fiber.MIMEApplicationForm) {
		token = c.FormValue(csrfField)
	}
	if token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(sess.CSRF)) != 1 {
		return fiber.NewError(fiber.StatusForbidden, "this form is out of date or came from another site: reload the page and try again")
	}
	return c.Next()
}

// sameOrigin refuses a request another site made the browser send (a form
// on a page the admin happened to open): the browser's Sec-Fetch-Site or
// Origin header gives it away.
func sameOrigin(c *fiber.Ctx) error {
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
	return nil
}

// contentSecurityPolicy allows only the server's own scripts, styles and
// connections: no inline script, no framing.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"

// securityHeaders sets the headers every answer carries.
func securityHeaders(c *fiber.Ctx) error {
	c.Set("Content-Security-Policy", contentSecurityPolicy)
	c.Set("X-Content-Type-Options", "nosniff")
	c.Set("X-Frame-Options", "DENY")
	c.Set("Referrer-Policy", "same-origin")
	if c.Protocol() == "https" {
		c.Set("Strict-Transport-Security", "max-age=31536000")
	}
	return c.Next()
}
