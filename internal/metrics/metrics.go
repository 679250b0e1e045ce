// Package metrics counts what the processes do and writes it in the
// Prometheus text exposition format (version 0.0.4) for GET /metrics.
//
// The counters are package-level, like expvar's: the packages that do the
// work (httpfile, mirror, publish, upstream, the upload handler) add to them
// with one call and know nothing else of metrics. Counters of work done in
// worker processes (bytes downloaded) are Shared: each process adds locally
// and Flush ships the sum to Redis with INCRBY, where the web process reads
// the total of every process at scrape time.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// The counters of this process.
var (
	// UploadedBytes counts the bytes of uploaded files accepted into staging.
	UploadedBytes Counter
	// ServedBytes counts the bytes of stream documents and image files sent.
	ServedBytes Counter
	// UpstreamFetches and UpstreamErrors count catalog fetches and the
	// failed ones.
	UpstreamFetches Counter
	UpstreamErrors  Counter
	// DownloadedBytes counts the bytes mirror downloads received, in every
	// process that shares the Redis.
	DownloadedBytes = &Shared{Key: "customstream:metrics:mirror_downloaded_bytes"}
	// PublishSeconds is how long each publish took.
	PublishSeconds = NewHistogram(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
)

// shared lists every Shared counter, for Flush.
var shared = []*Shared{DownloadedBytes}

// ObservePublish records a publish that started at start:
// defer metrics.ObservePublish(time.Now()).
func ObservePublish(start time.Time) { PublishSeconds.Observe(time.Since(start).Seconds()) }

// CountUpstreamFetch counts a catalog fetch and, when *err is set by the
// time it runs, a failure; a canceled fetch is not the upstream's fault:
// defer metrics.CountUpstreamFetch(&err).
func CountUpstreamFetch(err *error) {
	UpstreamFetches.Add(1)
	if *err != nil && !errors.Is(*err, context.Canceled) {
		UpstreamErrors.Add(1)
	}
}

// Counter is a monotonic count of this process.
type Counter struct{ n atomic.Int64 }

// Add adds n; a negative n is ignored, since a counter only grows.
func (c *Counter) Add(n int64) {
	if n > 0 {
		c.n.Add(n)
	}
}

// Value returns the count.
func (c *Counter) Value() int64 { return c.n.Load() }

// Shared is a counter that several processes add to through a Redis key.
type Shared struct {
	Key     string
	pending atomic.Int64
	mu      sync.Mutex // one Flush at a time, so nothing is sent twice or lost
}

// Add adds n (ignored when negative) to what the next Flush sends.
func (s *Shared) Add(n int64) {
	if n > 0 {
		s.pending.Add(n)
	}
}

// Flush adds what this process counted since the last Flush to the Redis key.
func (s *Shared) Flush(ctx context.Context, rdb redis.Cmdable) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.pending.Swap(0)
	if n == 0 {
		return nil
	}
	if err := rdb.IncrBy(ctx, s.Key, n).Err(); err != nil {
		s.pending.Add(n) // sent with the next Flush
		return fmt.Errorf("metrics: flush %s: %w", s.Key, err)
	}
	return nil
}

// Total flushes this process's count and returns the total of every process.
func (s *Shared) Total(ctx context.Context, rdb redis.Cmdable) (int64, error) {
	if err := s.Flush(ctx, rdb); err != nil {
		return 0, err
	}
	n, err := rdb.Get(ctx, s.Key).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("metrics: read %s: %w", s.Key, err)
	}
	return n, nil
}

// Flush sends every Shared counter's local count to Redis.
func Flush(ctx context.Context, rdb redis.Cmdable) error {
	var errs []error
	for _, s := range shared {
		errs = append(errs, s.Flush(ctx, rdb))
	}
	return errors.Join(errs...)
}

// FlushEvery runs Flush every interval until the returned stop function is
// called; stop flushes once more, so a stopping worker loses nothing, and
// returns when that is done. Call it after the work has stopped and before
// closing rdb.
func FlushEvery(rdb redis.Cmdable, interval time.Duration, log *slog.Logger) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), interval)
				if err := Flush(ctx, rdb); err != nil {
					log.Warn("Unable to send metrics to Redis", slog.Any("error", err))
				}
				cancel()
			case <-quit:
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := Flush(ctx, rdb); err != nil {
					log.Warn("Unable to send the last metrics to Redis", slog.Any("error", err))
				}
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}

// Histogram counts observations in cumulative buckets, and keeps the last one.
type Histogram struct {
	mu     sync.Mutex
	bounds []float64
	counts []uint64 // per bucket, not cumulative; one more for +Inf
	sum    float64
	count  uint64
	last   float64
}

// NewHistogram returns a histogram with the given ascending upper bounds.
func NewHistogram(bounds ...float64) *Histogram {
	return &Histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

// Observe records one value.
func (h *Histogram) Observe(v float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i]++
	h.sum += v
	h.count++
	h.last = v
}

// histogramSnapshot is a consistent copy for writing.
type histogramSnapshot struct {
	bounds     []float64
	cumulative []uint64 // per bound, then +Inf
	sum, last  float64
	count      uint64
}

func (h *Histogram) snapshot() histogramSnapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := histogramSnapshot{bounds: h.bounds, sum: h.sum, last: h.last, count: h.count}
	var c uint64
	for _, n := range h.counts {
		c += n
		s.cumulative = append(s.cumulative, c)
	}
	return s
}

// Disk is the space of the filesystem holding a directory.
type Disk struct {
	Free  int64 // available to this (unprivileged) process
	Total int64
}

// DiskOf returns the space of the filesystem holding dir.
func DiskOf(dir string) (Disk, error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return Disk{}, fmt.Errorf("free space of %s: %w", dir, err)
	}
	bsize := int64(fs.Bsize)
	return Disk{Free: clampMul(fs.Bavail, bsize), Total: clampMul(fs.Blocks, bsize)}, nil
}

func clampMul(blocks uint64, bsize int64) int64 {
	if bsize <= 0 || blocks > uint64(math.MaxInt64/bsize) {
		return math.MaxInt64
	}
	return int64(blocks) * bsize
}
