package web

import (
	"net/http"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/filesystem"
	"github.com/gofiber/fiber/v2/middleware/recover"

	"github.com/customstream/customstream/static"
)

// routes lists every route of the server.
func (h *handler) routes(app *fiber.App) {
	app.Use(recover.New())
	app.Use(securityHeaders)

	// Stream and files: public and read-only. GET routes answer HEAD too.
	app.Get("/streams/v1/:doc", h.serveStreamDoc)
	app.Get("/uploads/*", h.serveItem)
	app.Get("/mirror/*", h.serveItem)
	app.Get("/keyring.gpg", h.serveKeyring)
	app.Get("/keyring.asc", h.serveKeyring)

	// Portal.
	app.Get("/", h.showHome)
	app.Get("/images", h.showImagesPage)
	app.Get("/images/rows", h.showImageRows)
	app.Get("/images/new", h.showUploadPage)
	app.Post("/images/upload", h.sameOrigin, h.uploadFromPortal)
	app.Post("/images/:id/delete", h.sameOrigin, h.deleteFromPortal)
	app.Get("/upstream", h.showUpstreamPage)
	app.Get("/upstream/browse", h.showUpstreamBrowse)
	app.Get("/upstream/products", h.showUpstreamRows)
	app.Post("/upstream/plan", h.sameOrigin, h.showMirrorPlan)
	app.Post("/upstream/mirror", h.sameOrigin, h.mirrorFromPortal)
	app.Post("/upstream/sync-rules", h.sameOrigin, h.createSyncRule)
	app.Post("/upstream/sync-rules/:id/delete", h.sameOrigin, h.deleteSyncRule)
	app.Post("/upstream/sync", h.sameOrigin, h.syncNow)
	app.Get("/setup", h.showSetupPage)
	app.Use("/static", filesystem.New(filesystem.Config{Root: http.FS(static.FS), MaxAge: 3600}))

	// JSON API: bearer token.
	api := app.Group("/api", h.requireToken)
	api.Post("/upstream/fetch", h.fetchUpstreamAPI)
	api.Post("/images/mirror", h.mirrorAPI)
	api.Post("/images/upload", h.uploadFromAPI)
	api.Get("/images/list", h.listImagesAPI)
	api.Delete("/images/:id", h.deleteImageAPI)
	api.Get("/jobs", h.listJobsAPI)
	api.Get("/jobs/:id", h.getJobAPI)

	// Operations.
	app.Get("/healthz", h.healthz)
}
