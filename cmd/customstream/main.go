// Command customstream runs a simplestreams image mirror for MAAS: the web
// portal and stream server, the background workers, or both in one process.
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/customstream/customstream/internal/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `customstream: a simplestreams image mirror for MAAS

Usage:
  customstream all       web and worker in one process (embedded Redis when REDIS_URL is empty)
  customstream web       the portal, the JSON API and the stream server (needs REDIS_URL)
  customstream worker    a background worker: hashing, mirroring (needs REDIS_URL)
  customstream version   print the version

Configuration (environment):
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprint(stderr, usage+config.Help())
		return 2
	}
	switch args[0] {
	case "version":
		fmt.Fprintln(stdout, "customstream", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage+config.Help())
		return 0
	case "all", "web", "worker":
	default:
		fmt.Fprintf(stderr, "customstream: unknown command %q\n\n%s%s", args[0], usage, config.Help())
		return 2
	}
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "customstream:", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	if err := serve(args[0], cfg, log); err != nil {
		log.Error("customstream stopped", slog.String("command", args[0]), slog.Any("error", err))
		return 1
	}
	return 0
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
