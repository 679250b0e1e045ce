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
	"github.com/redis/go-redis/v9"

	"github.com/customstream/customstream/internal/auth"
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
	// Inspector takes canceled jobs' tasks off their queues; nil skips that.
	Inspector *asynq.Inspector
	// Redis is pinged by /healthz.
	Redis func(ctx context.Context) error
	// Counters is the Redis holding the counters every process shares
	// (bytes mirrored by workers), read by /metrics; nil shows this
	// process's own counts.
	Counters redis.Cmdable
	// Audit records admin actions; nil means Store.
	Audit AuditLog
	// Admin checks the portal password.
	Admin *auth.Admin
	// APIToken, when set (CUSTOMSTREAM_API_TOKEN), works besides the
	// tokens made in the portal.
	APIToken string
	Version  string
	Log      *slog.Logger
	// HeaderTimeout bounds reading a request's headers; zero means 30s.
	HeaderTimeout time.Duration
	// BodyIdleTimeout bounds a stall in a request body; zero means 1m.
	BodyIdleTimeout time.Duration
}

// handler holds every dependency of the routes.
type handler struct {
	Deps
	sessions     *auth.Sessions
	logins       *auth.Limiter
	envTokenHash string
}

// New returns the Fiber app with every route.
func New(d Deps) *fiber.App {
	engine := html.NewFileSystem(http.FS(views.FS), ".html")
	engine.AddFuncMap(templateFuncs())
	if d.HeaderTimeout == 0 {
		d.HeaderTimeout = 30 * time.Second
	}
	if d.Audit == nil {
		d.Audit = d.Store
	}
	if d.BodyIdleTimeout == 0 {
		d.BodyIdleTimeout = time.Minute
	}
	app := fiber.New(fiber.Config{
		AppName: "customstream",
		Views:   engine,
		// Uploads of many gigabytes stream to disk: fasthttp must not
		// buffer or pre-parse them. ReadTimeout bounds the headers (a slow
		// client cannot hold the server); requestBody then lets a body
		// take as long as it keeps coming.
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		BodyLimit:                    4 << 20,
		ReadTimeout:                  d.HeaderTimeout,
		ReadBufferSize:               16 << 10,
		IdleTimeout:                  2 * time.Minute,
		DisableStartupMessage:        true,
		ErrorHandler:                 errorHandler(d.Log),
	})
	h := &handler{Deps: d, sessions: &auth.Sessions{Store: d.Store, Admin: d.Admin},
		logins: auth.NewLimiter(loginFailures, loginWindow)}
	if d.APIToken != "" {
		// Kept only as a hash, like the portal's tokens.
		h.envTokenHash = auth.HashSecret(d.APIToken)
		h.APIToken = ""
	}
	h.routes(app)
	return app
}

// Ensure the asynq client satisfies the queue interface.
var _ jobs.Enqueuer = (*asynq.Client)(nil)
