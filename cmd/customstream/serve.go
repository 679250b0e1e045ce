package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
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
	"github.com/customstream/customstream/internal/metrics"
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

// scrubCheckEvery is how often the web process looks whether the periodic
// scrub is due.
const scrubCheckEvery = time.Minute

// metricsFlushEvery is how often a process sends its shared counters (bytes
// downloaded) to Redis, where /metrics reads them.
const metricsFlushEvery = 5 * time.Second

// serve runs cmd ("all", "web" or "worker") until SIGINT or SIGTERM.
//
// On the signal it stops taking new work at once: the web server stops
// accepting, the scheduler and the requeue loop stop, the asynq servers
// take no new task. Running jobs see their context canceled and stop at a
// safe point (a download keeps its .part file to resume, a hash starts
// again); asynq puts them back to be retried without counting a failure.
// The database closes last, once nothing can write to it.
func serve(cmd string, cfg *config.Config, log *slog.Logger) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer func() {
		if err == nil {
			log.Info("customstream stopped", slog.String("command", cmd))
		}
	}()
	// Everything logs through log, in CUSTOMSTREAM_LOG_FORMAT: the standard
	// logger (any library's log.Printf) and go-redis's own messages too;
	// asynq's go through jobs.Logger.
	slog.SetDefault(log)
	redis.SetLogger(redisLogger{log.With(slog.String("component", "redis"))})

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
	asynqClient := asynq.NewClient(connOpt)
	defer asynqClient.Close()
	// Every task this process queues wakes the servers of its queue; the
	// waker hears those notices for this process's own servers. Deferred
	// after rdb.Close, so it stops first.
	queue := jobs.Announce(asynqClient, rdb)
	waker := jobs.NewWaker(jobs.PollEvery)
	wakeCtx, stopWaking := context.WithCancel(ctx)
	wakeDone := make(chan struct{})
	go func() { defer close(wakeDone); waker.Listen(wakeCtx, rdb) }()
	defer func() { stopWaking(); <-wakeDone }()
	// Deferred after rdb.Close, so it runs first; and before the worker
	// stops, so it runs after: the worker's last counts are sent.
	defer metrics.FlushEvery(rdb, metricsFlushEvery, log)()

	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	b, err := blobs.Open(cfg.DataDir)
	if err != nil {
		return err
	}
	tracker := progress.New(rdb)

	if cmd == "all" || cmd == "worker" {
		srv, tasks, err := startWorker(ctx, cfg, waker, rdb, b, tracker, queue, log)
		if err != nil {
			return err
		}
		// The worker stops alongside the web server, not after it.
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			<-ctx.Done()
			log.Info("Worker stopping")
			srv.Shutdown()
			tasks.wait(log)
			log.Info("Worker stopped")
		}()
		defer func() { stop(); <-stopped }()
	}
	if cmd == "worker" {
		log.Info("Worker started", slog.Int("concurrency", cfg.WorkerConcurrency), slog.String("data_dir", cfg.DataDir))
		<-ctx.Done()
		return nil
	}
	return runWeb(ctx, cfg, connOpt, waker, rdb, queue, b, tracker, log)
}

// taskConfig is the asynq configuration both kinds of server share: task
// contexts end with ctx (the signal), and a task stopped by it is retried
// soon, without counting as a failed attempt.
func taskConfig(ctx context.Context, log *slog.Logger, c asynq.Config) asynq.Config {
	c.Logger = jobs.Logger(log)
	c.LogLevel = asynq.WarnLevel
	c.ShutdownTimeout = taskShutdownTimeout
	c.BaseContext = func() context.Context { return ctx }
	stoppedByShutdown := func(err error) bool { return ctx.Err() != nil && errors.Is(err, context.Canceled) }
	c.IsFailure = func(err error) bool { return !stoppedByShutdown(err) }
	c.RetryDelayFunc = func(n int, err error, t *asynq.Task) time.Duration {
		if stoppedByShutdown(err) {
			return time.Second
		}
		return asynq.DefaultRetryDelayFunc(n, err, t)
	}
	return c
}

// taskShutdownTimeout bounds the wait for running tasks to return once their
// context has ended.
const taskShutdownTimeout = 20 * time.Second

// runningTasks counts the task handlers running. asynq stops waiting for a
// handler once its context ends (and retries its task), so a stopping
// process waits here until the handlers have really returned.
type runningTasks struct{ wg sync.WaitGroup }

func (r *runningTasks) middleware(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		r.wg.Add(1)
		defer r.wg.Done()
		return next.ProcessTask(ctx, t)
	})
}

// wait waits for the running handlers, at most taskShutdownTimeout.
func (r *runningTasks) wait(log *slog.Logger) {
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(taskShutdownTimeout):
		log.Warn("Tasks still running after the shutdown time-out; asynq runs them again later", slog.Duration("waited", taskShutdownTimeout))
	}
}

// redisLogger sends go-redis's messages to slog.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...))
}

func startWorker(ctx context.Context, cfg *config.Config, waker *jobs.Waker, rdb *redis.Client, b *blobs.Store, tracker *progress.Tracker,
	queue jobs.Enqueuer, log *slog.Logger) (*jobs.Server, *runningTasks, error) {
	srv := waker.NewServer(rdb.Options(), taskConfig(ctx, log, asynq.Config{
		Concurrency: cfg.WorkerConcurrency,
		Queues:      jobs.WorkerQueues(),
	}))
	mux := asynq.NewServeMux()
	tasks := &runningTasks{}
	mux.Use(tasks.middleware)
	// Downloads follow the same proxy and redirect rules as catalog fetches.
	client := upstream.New(upstream.Options{UserAgent: "customstream/" + version, AllowHosts: cfg.UpstreamAllow}).DownloadClient()
	downloader := &mirror.Downloader{Client: client, Blobs: b, Parallel: cfg.DownloadParallel, Log: log}
	jobs.RegisterWorker(mux,
		&jobs.HashHandler{Blobs: b, Progress: tracker, Results: queue, Log: log},
		&jobs.MirrorHandler{Downloader: downloader, Progress: tracker, Results: queue, Log: log},
		&jobs.ScrubHandler{Blobs: b, Progress: tracker, Results: queue, Log: log}, log)
	if err := srv.Start(mux); err != nil {
		srv.Shutdown() // closes its Redis client
		return nil, nil, fmt.Errorf("start worker: %w", err)
	}
	return srv, tasks, nil
}

func runWeb(ctx context.Context, cfg *config.Config, connOpt asynq.RedisConnOpt, waker *jobs.Waker, rdb *redis.Client, queue jobs.Enqueuer,
	b *blobs.Store, tracker *progress.Tracker, log *slog.Logger) error {
	st, err := store.Open(filepath.Join(cfg.DataDir, "customstream.db"), 5*time.Second)
	if err != nil {
		return err
	}
	// Deferred first, so it runs last: nothing writes to the database after.
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("Unable to close the database", slog.Any("error", err))
			return
		}
		log.Info("Database closed")
	}()
	// Each new audit entry drops what falls outside the retention; this
	// catches up at once when the bounds were lowered.
	st.SetAuditRetention(store.AuditRetention{MaxAge: cfg.AuditMaxAge, MaxEntries: cfg.AuditMaxEntries})
	if n, err := st.PruneAudit(time.Now()); err != nil {
		log.Error("Unable to prune the audit log", slog.Any("error", err))
	} else if n > 0 {
		log.Info("Pruned the audit log", slog.Int("entries", n))
	}
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
	// Start-up garbage (argon2's 19 MiB work area, the first publish) is
	// collected now, so the scavenger returns it while the server idles:
	// an idle server's first collection comes only half a minute later.
	// (FreeOSMemory here measured a slower catalog filter p99 later on.)
	runtime.GC()
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
	results := waker.NewServer(rdb.Options(), taskConfig(ctx, log, asynq.Config{
		Concurrency: 2,
		Queues:      jobs.WebQueues(),
	}))
	mux := asynq.NewServeMux()
	tasks := &runningTasks{}
	mux.Use(tasks.middleware)
	jobs.RegisterWeb(mux, &jobs.ResultHandler{Images: svc, Queue: queue, Log: log},
		&jobs.SyncHandler{Store: st, Catalog: catalogs, Images: svc, Queue: queue, Log: log},
		&jobs.PruneHandler{Store: st, Log: log}, log)
	if err := results.Start(mux); err != nil {
		results.Shutdown() // closes its Redis client
		return fmt.Errorf("start result consumer: %w", err)
	}
	// Deferred after st.Close, so it runs first: a result being recorded
	// finishes before the database closes.
	defer func() { results.Shutdown(); tasks.wait(log) }()
	scheduler := asynq.NewScheduler(connOpt, &asynq.SchedulerOpts{Logger: jobs.Logger(log), LogLevel: asynq.WarnLevel,
		PostEnqueueFunc: jobs.AnnounceScheduled(rdb)})
	if _, err := scheduler.Register(fmt.Sprintf("@every %s", cfg.SyncInterval), jobs.NewSyncTask()); err != nil {
		return fmt.Errorf("schedule sync: %w", err)
	}
	if _, err := scheduler.Register(fmt.Sprintf("@every %s", jobs.PruneEvery), jobs.NewPruneTask()); err != nil {
		return fmt.Errorf("schedule history prune: %w", err)
	}
	if err := scheduler.Start(); err != nil {
		return fmt.Errorf("start scheduler: %w", err)
	}
	defer scheduler.Shutdown()

	insp := asynq.NewInspector(connOpt)
	defer insp.Close()
	requeueCtx, stopRequeue := context.WithCancel(ctx)
	requeueDone := make(chan struct{})
	go func() {
		defer close(requeueDone)
		jobs.RequeueLoop(requeueCtx, requeueEvery, insp, queue, st.UnfinishedJobs, func(jobID, reason string) error {
			return svc.RecordResult(jobID, images.JobResult{Error: reason})
		}, log)
	}()
	defer func() { stopRequeue(); <-requeueDone }()
	if cfg.ScrubInterval > 0 {
		began, err := st.ScheduleSince()
		if err != nil {
			return err
		}
		scrubCtx, stopScrubs := context.WithCancel(ctx)
		scrubDone := make(chan struct{})
		go func() {
			defer close(scrubDone)
			jobs.ScrubLoop(scrubCtx, cfg.ScrubInterval, scrubCheckEvery, began, st.ListJobs, func(ctx context.Context) error {
				_, _, err := jobs.StartScrub(ctx, svc, queue, log)
				return err
			}, log)
		}()
		defer func() { stopScrubs(); <-scrubDone }()
	}

	app := web.New(web.Deps{
		Config: cfg, Store: st, Blobs: b, Images: svc, Catalog: catalogs, Publisher: pub, Queue: queue, Progress: tracker, Signer: signer,
		Redis: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }, Counters: rdb,
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
	// No new result or sync task, no new schedule, while requests finish.
	results.Stop()
	scheduler.Shutdown()
	if err := app.ShutdownWithTimeout(10 * time.Second); err != nil {
		log.Warn("Requests still running were cut", slog.Any("error", err))
	}
	log.Info("Web server stopped")
	return nil
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
