package web

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/auth"
	"github.com/customstream/customstream/internal/store"
)

// Failed logins allowed per client address in loginWindow.
const (
	loginFailures = 5
	loginWindow   = 15 * time.Minute
)

// showLogin is the login page; an admin already logged in goes on.
func (h *handler) showLogin(c *fiber.Ctx) error {
	if _, err := h.sessions.Get(c.Cookies(sessionCookie)); err == nil {
		return c.Redirect(nextPage(c.Query("next")), fiber.StatusSeeOther)
	}
	return h.loginPage(c, fiber.StatusOK, "")
}

func (h *handler) loginPage(c *fiber.Ctx, status int, message string) error {
	c.Status(status)
	return h.page(c, "login", "Log in", "login", fiber.Map{"Next": nextPage(c.Query("next", c.FormValue("next"))), "Error": message,
		"User": c.FormValue("user")})
}

// login checks the admin's password and opens a session.
func (h *handler) login(c *fiber.Ctx) error {
	if err := sameOrigin(c); err != nil {
		return err
	}
	ip := c.IP()
	user := strings.TrimSpace(c.FormValue("user"))
	if ok, wait := h.logins.Allow(ip); !ok {
		minutes := int(wait.Round(time.Minute) / time.Minute)
		if minutes < 1 {
			minutes = 1
		}
		c.Set(fiber.HeaderRetryAfter, fmt.Sprint(int(wait.Seconds())+1))
		h.Log.Warn("Login refused: too many failures", slog.String("remote_ip", ip))
		// Once per lock-out: a flood of attempts must not push the rest of
		// the audit log out.
		if h.logins.FirstRefusal(ip) {
			h.auditAs(c, "", auditLogin, store.AuditRefused, user, fmt.Sprintf(
				"too many failed logins from this address: locked out for %d minute%s; later attempts in that time are not recorded",
				minutes, plural(minutes)))
		}
		return h.loginPage(c, fiber.StatusTooManyRequests,
			fmt.Sprintf("Too many failed logins from your address: try again in %d minute%s.", minutes, plural(minutes)))
	}
	if !h.Admin.Check(user, c.FormValue("password")) {
		h.logins.Fail(ip)
		h.Log.Warn("Login failed", slog.String("user", user), slog.String("remote_ip", ip))
		// The name typed is kept, never the password.
		h.auditAs(c, "", auditLogin, store.AuditFailed, user, "wrong user name or password")
		return h.loginPage(c, fiber.StatusUnauthorized, "Wrong user name or password.")
	}
	h.logins.Succeed(ip)
	id, sess, err := h.sessions.Open(user, ip)
	if err != nil {
		return err
	}
	c.Cookie(&fiber.Cookie{Name: sessionCookie, Value: id, Path: "/", Expires: sess.CreatedAt.Add(auth.SessionMaxAge),
		HTTPOnly: true, SameSite: fiber.CookieSameSiteLaxMode, Secure: h.secureCookies(c)})
	h.Log.Info("Admin logged in", slog.String("user", user), slog.String("remote_ip", ip))
	h.auditAs(c, user, auditLogin, store.AuditOK, user, "")
	return c.Redirect(nextPage(c.FormValue("next")), fiber.StatusSeeOther)
}

// logout ends the session.
func (h *handler) logout(c *fiber.Ctx) error {
	if err := h.sessions.End(c.Cookies(sessionCookie)); err != nil {
		return err
	}
	h.clearSessionCookie(c)
	h.Log.Info("Admin logged out", slog.String("user", actor(c)), slog.String("remote_ip", c.IP()))
	h.audit(c, auditLogout, actor(c), "")
	if isHTMX(c) {
		c.Set("HX-Redirect", "/login")
		return c.SendStatus(fiber.StatusNoContent)
	}
	return c.Redirect("/login", fiber.StatusSeeOther)
}

func (h *handler) clearSessionCookie(c *fiber.Ctx) {
	c.Cookie(&fiber.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, Expires: time.Unix(1, 0),
		HTTPOnly: true, SameSite: fiber.CookieSameSiteLaxMode, Secure: h.secureCookies(c)})
}

// secureCookies reports whether the admin reaches the portal over HTTPS:
// directly with TLS, through a proxy that says so, or by the public URL.
func (h *handler) secureCookies(c *fiber.Ctx) bool {
	return c.Protocol() == "https" || strings.HasPrefix(h.Config.PublicURL, "https://")
}

// nextPage returns where to go after login: a local path, never another
// site. Browsers read "//host" and "/\host" as other hosts, and drop tabs
// and newlines first ("/\t/host"), so any of those falls back.
func nextPage(next string) string {
	const fallback = "/"
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/login") {
		return fallback
	}
	if strings.ContainsFunc(next, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return fallback
	}
	if u, err := url.Parse(next); err != nil || u.Scheme != "" || u.Host != "" {
		return fallback
	}
	return next
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
