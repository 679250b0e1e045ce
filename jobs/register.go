package jobs

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/hibiken/asynq"
)

// RegisterWorker adds the handlers a worker runs.
func RegisterWorker(mux *asynq.ServeMux, hash *HashHandler, mirror *MirrorHandler, scrub *ScrubHandler, log *slog.Logger) {
	mux.Use(logTasks(log))
	mux.Handle(TypeHashImage, hash)
	mux.Handle(TypeMirrorImage, mirror)
	mux.Handle(TypeScrubBlobs, scrub)
}

// RegisterWeb adds the handlers the web process runs.
func RegisterWeb(mux *asynq.ServeMux, results *ResultHandler, sync *SyncHandler, prune *PruneHandler, log *slog.Logger) {
	mux.Use(logTasks(log))
	mux.Handle(TypeJobResult, results)
	mux.Handle(TypeSyncUpstreams, sync)
	mux.Handle(TypePruneHistory, prune)
}

// slogAdapter lets asynq log through slog.
type slogAdapter struct{ log *slog.Logger }

// Logger returns an asynq logger writing to log.
func Logger(log *slog.Logger) asynq.Logger {
	return slogAdapter{log.With(slog.String("component", "asynq"))}
}

func (a slogAdapter) Debug(args ...any) { a.log.Debug(fmt.Sprint(args...)) }
func (a slogAdapter) Info(args ...any)  { a.log.Info(fmt.Sprint(args...)) }
func (a slogAdapter) Warn(args ...any)  { a.log.Warn(fmt.Sprint(args...)) }
func (a slogAdapter) Error(args ...any) { a.log.Error(fmt.Sprint(args...)) }
func (a slogAdapter) Fatal(args ...any) { a.log.Error(fmt.Sprint(args...)); os.Exit(1) }
