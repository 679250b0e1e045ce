// Package web is the Fiber app: portal pages, the JSON API and the stream
// and file server. routes.go lists every route.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/template/html/v2"
	"github.com/hibiken/asynq"

	"github.com/customstream/customstream/internal/blobs"
	"github.com/customstream/customstream/internal/catalog"
	"github.com/customstream/customstream/internal/config"
	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/progress"
	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/signing"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/jobs"
	"github.com/customstream/customstream/views"
)

// Deps are what the web process hands the handlers.
type Deps struct {
	Config    *config.Config
	Store     *store.Store
	Blobs     *blobs.Store
	Images    *images.Service
	Catalog   *catalog.Service
	Publisher *publish.Publisher
	Queue     jobs.Enqueuer
	Progress  *progress.Tracker
	Signer    *signing.Signer
	// Redis is pinged by /healthz.
	Redis    func(ctx context.Context) error
	APIToken string
	Version  string
	Log      *slog.Logger
}

// handler holds every dependency of the routes.
type handler struct {
	Deps
}

// New returns the Fiber app with every route.
func New(d Deps) *fiber.App {
	engine := html.NewFileSystem(http.FS(views.FS), ".html")
	engine.AddFuncMap(templateFuncs())
	app := fiber.New(fiber.Config{
		AppName: "customstream",
		Views:   engine,
		// Uploads of many gigabytes stream to disk: fasthttp must not
		// buffer or pre-parse them, and the body read has no deadline.
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		BodyLimit:                    4 << 20,
		ReadTimeout:                  0,
		ReadBufferSize:               16 << 10,
		IdleTimeout:                  2 * time.Minute,
		DisableStartupMessage:        true,
		ErrorHandler:                 errorHandler(d.Log),
	})
	h := &handler{Deps: d}
	h.routes(app)
	return app
}

// Ensure the asynq client satisfies the queue interface.
var _ jobs.Enqueuer = (*asynq.Client)(nil)
