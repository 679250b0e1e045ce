package web

import (
	"net/http"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/filesystem"
	"github.com/gofiber/fiber/v2/middleware/recover"

	"github.com/customstream/customstream/static"
)

// routes lists every route of the server. Each one names its access in its
// handler chain: public routes only read; h.requireAdmin needs a portal
// session and, for anything that changes state, h.checkCSRF the session's
// token; the API group needs a bearer token.
func (h *handler) routes(app *fiber.App) {
	app.Use(recover.New())
	app.Use(securityHeaders)

	// Public, read-only: the stream, its files, the keyring, health.
	// GET routes answer HEAD too.
	app.Get("/streams/v1/:doc", h.serveStreamDoc)
	app.Get("/uploads/*", h.serveItem)
	app.Get("/mirror/*", h.serveItem)
	app.Get("/keyring.gpg", h.serveKeyring)
	app.Get("/keyring.asc", h.serveKeyring)
	app.Get("/healthz", h.healthz)
	app.Get("/metrics", h.showMetrics)
	app.Use("/static", filesystem.New(filesystem.Config{Root: http.FS(static.FS), MaxAge: 3600}))

	// Logging in.
	app.Get("/login", h.showLogin)
	app.Post("/login", h.login)
	app.Post("/logout", h.requireAdmin, h.checkCSRF, h.logout)

	// Portal: an admin session.
	app.Get("/", h.requireAdmin, h.showHome)
	app.Get("/images", h.requireAdmin, h.showImagesPage)
	app.Get("/images/rows", h.requireAdmin, h.showImageRows)
	app.Get("/images/new", h.requireAdmin, h.showUploadPage)
	app.Post("/images/upload", h.requireAdmin, h.checkCSRF, h.uploadFromPortal)
	app.Post("/images/:id/delete", h.requireAdmin, h.checkCSRF, h.deleteFromPortal)
	app.Get("/upstream", h.requireAdmin, h.showUpstreamPage)
	app.Get("/upstream/browse", h.requireAdmin, h.showUpstreamBrowse)
	app.Get("/upstream/products", h.requireAdmin, h.showUpstreamRows)
	app.Post("/upstream/plan", h.requireAdmin, h.checkCSRF, h.showMirrorPlan)
	app.Post("/upstream/mirror", h.requireAdmin, h.checkCSRF, h.mirrorFromPortal)
	app.Post("/upstream/sync-rules", h.requireAdmin, h.checkCSRF, h.createSyncRule)
	app.Post("/upstream/sync-rules/:id/delete", h.requireAdmin, h.checkCSRF, h.deleteSyncRule)
	app.Post("/upstream/sync", h.requireAdmin, h.checkCSRF, h.syncNow)
	app.Get("/jobs", h.requireAdmin, h.showJobsPage)
	app.Get("/jobs/rows", h.requireAdmin, h.showJobRows)
	app.Post("/jobs/scrub", h.requireAdmin, h.checkCSRF, h.scrubFromPortal)
	app.Post("/jobs/:id/cancel", h.requireAdmin, h.checkCSRF, h.cancelJob)
	app.Post("/jobs/:id/retry", h.requireAdmin, h.checkCSRF, h.retryJob)
	app.Post("/jobs/:id/delete", h.requireAdmin, h.checkCSRF, h.deleteJob)
	app.Get("/setup", h.requireAdmin, h.showSetupPage)
	app.Get("/settings", h.requireAdmin, h.showSettingsPage)
	app.Post("/settings", h.requireAdmin, h.checkCSRF, h.saveSettings)
	app.Get("/tokens", h.requireAdmin, h.showTokensPage)
	app.Post("/tokens", h.requireAdmin, h.checkCSRF, h.createToken)
	app.Post("/tokens/:id/delete", h.requireAdmin, h.checkCSRF, h.deleteToken)
	app.Get("/audit", h.requireAdmin, h.showAuditPage)
	app.Get("/audit/rows", h.requireAdmin, h.showAuditRows)

	// JSON API: a bearer token.
	api := app.Group("/api", h.requireToken)
	api.Post("/upstream/fetch", h.fetchUpstreamAPI)
	api.Post("/images/mirror", h.mirrorAPI)
	api.Post("/images/upload", h.uploadFromAPI)
	api.Get("/images/list", h.listImagesAPI)
	api.Delete("/images/:id", h.deleteImageAPI)
	api.Get("/jobs", h.listJobsAPI)
	api.Get("/jobs/:id", h.getJobAPI)
	api.Post("/jobs/:id/cancel", h.cancelJob)
	api.Post("/jobs/:id/retry", h.retryJob)
	api.Delete("/jobs/:id", h.deleteJob)
	api.Post("/scrub", h.scrubAPI)
	api.Get("/audit", h.listAuditAPI)
}
