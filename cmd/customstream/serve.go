package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/customstream/customstream/internal/auth"
	"github.com/customstream/customstream/internal/blobs"
	"github.com/customstream/customstream/internal/catalog"
	"github.com/customstream/customstream/internal/config"
	"github.com/customstream/customstream/internal/embedredis"
	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/mirror"
	"github.com/customstream/customstream/internal/progress"
	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/signing"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/upstream"
	"github.com/customstream/customstream/internal/web"
	"github.com/customstream/customstream/jobs"
)

// requeueEvery is how often the web process checks that every unfinished
// job is still known to Redis.
const requeueEvery = 30 * time.Second

// serve runs cmd ("all", "web" or "worker") until SIGINT or SIGTERM.
func serve(cmd string, cfg *config.Config, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	redisURL := cfg.RedisURL
	if redisURL == "" {
		if cmd != "all" {
			return fmt.Errorf("REDIS_URL is required for %q (only \"customstream all\" embeds a Redis server)", cmd)
		}
		m, err := embedredis.Start(ctx)
		if err != nil {
			return err
		}
		defer m.Close()
		redisURL = "redis://" + m.Addr()
		log.Info("Started the embedded Redis server", slog.String("addr", m.Addr()))
	}
	connOpt, err := asynq.ParseRedisURI(redisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	redisOpt, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(redisOpt)
	defer rdb.Close()
	queue := asynq.NewClient(connOpt)
	defer queue.Close()

	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	b, err := blobs.Open(cfg.DataDir)
	if err != nil {
		return err
	}
	tracker := progress.New(rdb)

	if cmd == "all" || cmd == "worker" {
		srv, err := startWorker(cfg, connOpt, b, tracker, queue, log)
		if err != nil {
			return err
		}
		defer srv.Shutdown()
	}
	if cmd == "worker" {
		log.Info("Worker started", slog.Int("concurrency", cfg.WorkerConcurrency), slog.String("data_dir", cfg.DataDir))
		<-ctx.Done()
		log.Info("Worker stopping")
		return nil
	}
	return runWeb(ctx, cfg, connOpt, rdb, queue, b, tracker, log)
}

func startWorker(cfg *config.Config, connOpt asynq.RedisConnOpt, b *blobs.Store, tracker *progress.Tracker, queue *asynq.Client, log *slog.Logger) (*asynq.Server, error) {
	srv := asynq.NewServer(connOpt, asynq.Config{
		Concurrency:     cfg.WorkerConcurrency,
		Queues:          jobs.WorkerQueues(),
		Logger:          jobs.Logger(log),
		LogLevel:        asynq.WarnLevel,
		ShutdownTimeout: 20 * time.Second,
	})
	mux := asynq.NewServeMux()
	// Downloads follow the same proxy and redirect rules as catalog fetches.
	client := upstream.New(upstream.Options{UserAgent: "customstream/" + version, AllowHosts: cfg.UpstreamAllow}).DownloadClient()
	downloader := &mirror.Downloader{Client: client, Blobs: b, Parallel: cfg.DownloadParallel, Log: log}
	jobs.RegisterWorker(mux,
		&jobs.HashHandler{Blobs: b, Progress: tracker, Results: queue, Log: log},
		&jobs.MirrorHandler{Downloader: downloader, Progress: tracker, Results: queue, Log: log}, log)
	if err := srv.Start(mux); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	return srv, nil
}

func runWeb(ctx context.Context, cfg *config.Config, connOpt asynq.RedisConnOpt, rdb *redis.Client, queue *asynq.Client,
	b *blobs.Store, tracker *progress.Tracker, log *slog.Logger) error {
	st, err := store.Open(filepath.Join(cfg.DataDir, "customstream.db"), 5*time.Second)
	if err != nil {
		return err
	}
	defer st.Close()
	pub, err := publish.New(cfg.DataDir, b, log)
	if err != nil {
		return err
	}
	signer, err := signing.Open(cfg.DataDir, log)
	if err != nil {
		return err
	}
	pub.SignWith(signer.Sign, signer.Keyring())
	svc := images.NewService(st, b, pub, log)
	svc.KeepVersions = cfg.KeepVersions
	if err := svc.CleanStaging(); err != nil {
		return err
	}
	// Rebuild the tree from the records: a crash mid-publish leaves at most
	// unreferenced files, which this removes.
	if err := svc.Republish(); err != nil {
		// The previous tree stays served; the next change publishes again.
		log.Error("Unable to publish at start", slog.Any("error", err))
	}
	admin, err := auth.LoadAdmin(cfg.DataDir, cfg.AdminPassword, log)
	if err != nil {
		return err
	}
	ln, err := listen(cfg)
	if err != nil {
		return err
	}
	keyring, err := upstreamKeyring(cfg)
	if err != nil {
		return err
	}
	catalogs := catalog.New(st, upstream.New(upstream.Options{Keyring: keyring, UserAgent: "customstream/" + version, AllowHosts: cfg.UpstreamAllow}), log)

	// Results record one at a time (the images service orders them); the
	// second slot keeps a long sync run from holding results back.
	results := asynq.NewServer(connOpt, asynq.Config{
		Concurrency: 2,
		Queues:      jobs.WebQueues(),
		Logger:      jobs.Logger(log),
		LogLevel:    asynq.WarnLevel,
	})
	mux := asynq.NewServeMux()
	jobs.RegisterWeb(mux, &jobs.ResultHandler{Images: svc},
		&jobs.SyncHandler{Store: st, Catalog: catalogs, Images: svc, Queue: queue, Log: log}, log)
	if err := results.Start(mux); err != nil {
		return fmt.Errorf("start result consumer: %w", err)
	}
	// Deferred after st.Close, so it runs first: a result being recorded
	// finishes before the database closes.
	defer results.Shutdown()
	scheduler := asynq.NewScheduler(connOpt, &asynq.SchedulerOpts{Logger: jobs.Logger(log), LogLevel: asynq.WarnLevel})
	if _, err := scheduler.Register(fmt.Sprintf("@every %s", cfg.SyncInterval), jobs.NewSyncTask()); err != nil {
		return fmt.Errorf("schedule sync: %w", err)
	}
	if err := scheduler.Start(); err != nil {
		return fmt.Errorf("start scheduler: %w", err)
	}
	defer scheduler.Shutdown()

	insp := asynq.NewInspector(connOpt)
	defer insp.Close()
	go jobs.RequeueLoop(ctx, requeueEvery, insp, queue, st.UnfinishedJobs, func(jobID, reason string) error {
		return svc.RecordResult(jobID, images.JobResult{Error: reason})
	}, log)

	app := web.New(web.Deps{
		Config: cfg, Store: st, Blobs: b, Images: svc, Catalog: catalogs, Publisher: pub, Queue: queue, Progress: tracker, Signer: signer,
		Redis:     func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		Inspector: insp, Admin: admin, APIToken: cfg.APIToken, Version: version, Log: log,
	})
	errc := make(chan error, 1)
	go func() { errc <- app.Listener(ln) }()
	log.Info("Web server started", slog.String("addr", cfg.Addr), slog.Bool("tls", cfg.TLSCert != ""), slog.String("data_dir", cfg.DataDir))
	select {
	case err := <-errc:
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	case <-ctx.Done():
	}
	log.Info("Web server stopping")
	return app.ShutdownWithTimeout(10 * time.Second)
}

// listen opens the web listener: HTTPS when a certificate is configured.
// The certificate is loaded here so a bad one stops the start, not the
// first request.
func listen(cfg *config.Config) (net.Listener, error) {
	var tlsConfig *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("CUSTOMSTREAM_TLS_CERT/CUSTOMSTREAM_TLS_KEY: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	return ln, nil
}

// upstreamKeyring reads CUSTOMSTREAM_UPSTREAM_KEYRING, or returns the Ubuntu
// cloud image key that signs images.maas.io.
func upstreamKeyring(cfg *config.Config) (openpgp.EntityList, error) {
	if cfg.UpstreamKeyring == "" {
		return upstream.DefaultKeyring()
	}
	data, err := os.ReadFile(cfg.UpstreamKeyring)
	if err != nil {
		return nil, fmt.Errorf("CUSTOMSTREAM_UPSTREAM_KEYRING: %w", err)
	}
	keys, err := simplestreams.ReadKeyring(data)
	if err != nil {
		return nil, fmt.Errorf("CUSTOMSTREAM_UPSTREAM_KEYRING %s: %w", cfg.UpstreamKeyring, err)
	}
	return keys, nil
}
