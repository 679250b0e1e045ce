// Package progress keeps the bytes done and total of running jobs in Redis,
// where workers write them and the web process reads them.
package progress

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ttl bounds how long a dead worker's progress lingers.
const ttl = 10 * time.Minute

// Progress is a job's byte count.
type Progress struct {
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// Started is when a worker first reported on the job (this attempt or
	// an earlier one); Updated when it last did.
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
}

// Rate returns the average bytes per second since the job started, and the
// time left at that rate; zero when unknown.
func (p Progress) Rate() (float64, time.Duration) {
	secs := p.Updated.Sub(p.Started).Seconds()
	if secs < 1 || p.Done <= 0 {
		return 0, 0
	}
	rate := float64(p.Done) / secs
	if p.Total <= p.Done {
		return rate, 0
	}
	return rate, time.Duration(float64(p.Total-p.Done) / rate * float64(time.Second))
}

// Tracker reads and writes progress records.
type Tracker struct {
	rdb redis.UniversalClient
}

// New returns a tracker over rdb.
func New(rdb redis.UniversalClient) *Tracker {
	return &Tracker{rdb: rdb}
}

func key(jobID string) string { return "customstream:progress:" + jobID }

// Set records done/total for jobID.
func (t *Tracker) Set(ctx context.Context, jobID string, done, total int64) error {
	k := key(jobID)
	pipe := t.rdb.TxPipeline()
	now := time.Now().UnixMilli()
	pipe.HSetNX(ctx, k, "started", now)
	pipe.HSet(ctx, k, "done", done, "total", total, "updated", now)
	pipe.Expire(ctx, k, ttl)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("progress %s: %w", jobID, err)
	}
	return nil
}

// Get returns the progress of jobID; ok is false when no worker reported any.
func (t *Tracker) Get(ctx context.Context, jobID string) (Progress, bool, error) {
	vals, err := t.rdb.HGetAll(ctx, key(jobID)).Result()
	if err != nil {
		return Progress{}, false, fmt.Errorf("progress %s: %w", jobID, err)
	}
	if len(vals) == 0 {
		return Progress{}, false, nil
	}
	done, _ := strconv.ParseInt(vals["done"], 10, 64)
	total, _ := strconv.ParseInt(vals["total"], 10, 64)
	started, _ := strconv.ParseInt(vals["started"], 10, 64)
	updated, _ := strconv.ParseInt(vals["updated"], 10, 64)
	return Progress{Done: done, Total: total, Started: time.UnixMilli(started), Updated: time.UnixMilli(updated)}, true, nil
}

// Clear removes jobID's record once the job has finished.
func (t *Tracker) Clear(ctx context.Context, jobID string) error {
	if err := t.rdb.Del(ctx, key(jobID)).Err(); err != nil {
		return fmt.Errorf("progress %s: %w", jobID, err)
	}
	return nil
}

func canceledKey(jobID string) string { return "customstream:canceled:" + jobID }

// Cancel marks jobID canceled by an admin, so a worker running it stops and
// does not retry.
func (t *Tracker) Cancel(ctx context.Context, jobID string) error {
	if err := t.rdb.Set(ctx, canceledKey(jobID), 1, 7*24*time.Hour).Err(); err != nil {
		return fmt.Errorf("cancel %s: %w", jobID, err)
	}
	return nil
}

// Canceled reports whether an admin canceled jobID.
func (t *Tracker) Canceled(ctx context.Context, jobID string) bool {
	n, err := t.rdb.Exists(ctx, canceledKey(jobID)).Result()
	return err == nil && n > 0
}

// Reporter throttles Set calls for one job: hashing calls it for every
// megabyte, Redis needs a few updates a second.
type Reporter struct {
	t        *Tracker
	ctx      context.Context
	jobID    string
	total    int64
	interval time.Duration

	mu   sync.Mutex
	last time.Time
}

// Reporter returns a throttled reporter for one job of known total size.
func (t *Tracker) Reporter(ctx context.Context, jobID string, total int64) *Reporter {
	return &Reporter{t: t, ctx: ctx, jobID: jobID, total: total, interval: 250 * time.Millisecond}
}

// Report records done unless the last write was very recent; the final
// byte count is always written.
func (r *Reporter) Report(done int64) {
	r.mu.Lock()
	now := time.Now()
	if done < r.total && now.Sub(r.last) < r.interval {
		r.mu.Unlock()
		return
	}
	r.last = now
	r.mu.Unlock()
	// Progress is advisory: a failed write must not fail the job.
	_ = r.t.Set(r.ctx, r.jobID, done, r.total)
}
