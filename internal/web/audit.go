package web

import (
	"errors"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/units"
)

// AuditLog records admin actions; *store.Store is the one the server uses.
type AuditLog interface {
	AppendAudit(e *store.AuditEntry) error
}

// Audit actions. A group is the part before the dot: filtering by "image"
// shows uploads and deletions.
const (
	auditLogin           = "session.login"
	auditLogout          = "session.logout"
	auditPasswordChanged = "session.password_changed"
	auditUpload          = "image.upload"
	auditDelete          = "image.delete"
	auditMirror          = "mirror.start"
	auditSyncRuleCreate  = "sync.rule_create"
	auditSyncRuleDelete  = "sync.rule_delete"
	auditSyncRun         = "sync.run"
	auditTokenCreate     = "token.create"
	auditTokenRevoke     = "token.revoke"
	auditJobCancel       = "job.cancel"
	auditJobRetry        = "job.retry"
	auditJobRemove       = "job.remove"
	auditScrub           = "job.scrub"
	auditSettings        = "settings.change"
)

// auditGroups is the filter of the audit page: each group and its actions,
// with their labels. A new action adds a line here.
var auditGroups = []auditGroup{
	{"session", "Sessions", []auditChoice{{auditLogin, "Log in"}, {auditLogout, "Log out"}, {auditPasswordChanged, "Password changed"}}},
	{"image", "Images", []auditChoice{{auditUpload, "Upload"}, {auditDelete, "Delete"}}},
	{"mirror", "Mirroring", []auditChoice{{auditMirror, "Mirror"}}},
	{"sync", "Sync", []auditChoice{{auditSyncRuleCreate, "Rule created"}, {auditSyncRuleDelete, "Rule deleted"}, {auditSyncRun, "Sync now"}}},
	{"token", "API tokens", []auditChoice{{auditTokenCreate, "Create"}, {auditTokenRevoke, "Revoke"}}},
	{"job", "Jobs", []auditChoice{{auditJobCancel, "Cancel"}, {auditJobRetry, "Retry"}, {auditJobRemove, "Remove"}, {auditScrub, "Scrub now"}}},
	{"settings", "Settings", []auditChoice{{auditSettings, "Change"}}},
}

type auditGroup struct {
	Value, Label string
	Actions      []auditChoice
}

type auditChoice struct{ Value, Label string }

// Limits of what is recorded and asked: an entry stays small whatever a
// client sent.
const (
	maxAuditField  = 512
	maxAuditQuery  = 200
	auditPageSize  = 50
	maxAuditAPIRow = 1000
)

// audit records a successful admin action. Later features call it once per
// action: h.audit(c, "setting.change", name, "from X to Y").
func (h *handler) audit(c *fiber.Ctx, action, target, detail string) {
	h.auditAs(c, actor(c), action, store.AuditOK, target, detail)
}

// auditOutcome records an action that was refused or failed.
func (h *handler) auditOutcome(c *fiber.Ctx, action, outcome, target, detail string) {
	h.auditAs(c, actor(c), action, outcome, target, detail)
}

// auditAs records an action by who. Recording never fails the action: an
// error is logged and the request goes on. Callers pass no secrets.
func (h *handler) auditAs(c *fiber.Ctx, who, action, outcome, target, detail string) {
	e := &store.AuditEntry{Actor: clip(who), Action: action, Outcome: outcome, Target: clip(redactURLs(target)),
		Detail: clip(redactURLs(detail)), Remote: c.IP()}
	if err := h.Audit.AppendAudit(e); err != nil {
		h.Log.Error("Unable to record an audit entry", slog.String("action", action), slog.String("actor", e.Actor),
			slog.String("target", e.Target), slog.String("outcome", outcome), slog.Any("error", err))
	}
}

// clip shortens s to maxAuditField bytes, on a character boundary.
// urlCredentials matches the user:password@ part of URLs in a text.
var urlCredentials = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#@\s]+@`)

// redactURLs hides the credentials of any URL in s: an upstream given as
// https://user:pass@mirror/ must not reach the audit log and its readers.
func redactURLs(s string) string {
	return urlCredentials.ReplaceAllString(s, "${1}xxxxx@")
}

func clip(s string) string {
	if len(s) <= maxAuditField {
		return s
	}
	cut := maxAuditField
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// auditQuery reads the filter of the page and the API; a bad one is a 400.
func auditQuery(c *fiber.Ctx, limit int) (store.AuditQuery, error) {
	q := store.AuditQuery{Action: strings.TrimSpace(c.Query("action")), Text: strings.TrimSpace(c.Query("q")),
		Before: c.Query("before"), After: c.Query("after"), Limit: limit}
	if strings.IndexFunc(q.Action, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r == '_' || r == '.') }) >= 0 ||
		len(q.Action) > 64 {
		return q, fiber.NewError(fiber.StatusBadRequest, "action: want an action such as image.delete or a group such as image")
	}
	if utf8.RuneCountInString(q.Text) > maxAuditQuery {
		return q, fiber.NewError(fiber.StatusBadRequest, "q: at most 200 characters")
	}
	return q, nil
}

// listAudit runs a query; a cursor that is no entry's is the client's fault.
func (h *handler) listAudit(q store.AuditQuery) ([]store.AuditEntry, string, error) {
	entries, next, err := h.Store.ListAudit(q)
	if errors.Is(err, store.ErrBadCursor) {
		return nil, "", fiber.NewError(fiber.StatusBadRequest, "before, after: want the id of an entry from an earlier answer, and at most one of them")
	}
	return entries, next, err
}

func (h *handler) auditData(c *fiber.Ctx) (fiber.Map, error) {
	q, err := auditQuery(c, auditPageSize)
	if err != nil {
		return nil, err
	}
	entries, next, err := h.listAudit(q)
	if err != nil {
		return nil, err
	}
	return fiber.Map{"Entries": entries, "Next": next, "Action": q.Action, "Q": q.Text, "More": q.Before != "",
		"Groups": auditGroups}, nil
}

// showAuditPage is the audit log, newest first; ?action= and ?q= filter it.
func (h *handler) showAuditPage(c *fiber.Ctx) error {
	data, err := h.auditData(c)
	if err != nil {
		return err
	}
	if isHTMX(c) {
		return h.partial(c, "audit_rows", data)
	}
	data["KeepDays"] = int(h.Config.AuditMaxAge / (24 * time.Hour))
	data["KeepEntries"] = units.Count(h.Config.AuditMaxEntries)
	return h.page(c, "audit", "Audit log", "audit", data)
}

// showAuditRows is the table region for a new filter, or (with ?before=)
// the next rows for "Load more".
func (h *handler) showAuditRows(c *fiber.Ctx) error {
	data, err := h.auditData(c)
	if err != nil {
		return err
	}
	if data["More"] == true {
		return h.partial(c, "audit_more", data)
	}
	return h.partial(c, "audit_rows", data)
}

// listAuditAPI is GET /api/audit: the same filters, ?limit= (at most 1000)
// and the cursor of the next page, for a SIEM to collect; ?after= reads
// forward from the last entry a collector has.
func (h *handler) listAuditAPI(c *fiber.Ctx) error {
	limit := 100
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAuditAPIRow {
			return fiber.NewError(fiber.StatusBadRequest, "limit: want a whole number from 1 to 1000")
		}
		limit = n
	}
	q, err := auditQuery(c, limit)
	if err != nil {
		return err
	}
	entries, next, err := h.listAudit(q)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"entries": entries, "next": next})
}
