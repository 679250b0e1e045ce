// Command customstream-bench measures customstream beside nginx, curl and
// sha256sum and prints a markdown table of ratios (see docs/BENCHMARKS.md).
// Usage: customstream-bench [-quick] [-bin PATH] [-only SECTION,...]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/customstream/customstream/internal/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "customstream-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	quick := flag.Bool("quick", os.Getenv("BENCH_QUICK") != "", "smaller sizes for a run of a minute or two (or set BENCH_QUICK=1)")
	bin := flag.String("bin", "", "customstream binary to measure (default: built from ./cmd/customstream)")
	only := flag.String("only", os.Getenv("BENCH_ONLY"), "comma-separated sections to run: upload, serving, mirror, catalog, publish (or set BENCH_ONLY)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process (the in-process publish section) to the file")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp("", "customstream-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	o := bench.Options{Sizes: bench.Defaults(), Bin: *bin, Work: work, Log: os.Stderr}
	if *quick {
		o.Sizes = bench.Quick()
	}
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	if err := bench.EnsureTools(ctx, o); err != nil {
		return err
	}
	if o.Bin == "" {
		o.Bin = filepath.Join(work, "customstream")
		build := exec.CommandContext(ctx, "go", "build", "-o", o.Bin, "./cmd/customstream")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build customstream: %w", err)
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	rows, err := bench.Run(ctx, o)
	fmt.Printf("\n%s\n", bench.Table(rows))
	fmt.Printf("Machine (%s, run took %s):\n%s", time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		time.Since(start).Round(time.Second), bench.Machine(ctx, work))
	return err
}
