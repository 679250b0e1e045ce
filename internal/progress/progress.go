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
	pipe.HSet(ctx, k, "done", done, "total", total)
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
	return Progress{Done: done, Total: total}, true, nil
}

// Clear removes jobID's record once the job has finished.
func (t *Tracker) Clear(ctx context.Context, jobID string) error {
	if err := t.rdb.Del(ctx, key(jobID)).Err(); err != nil {
		return fmt.Errorf("progress %s: %w", jobID, err)
	}
	return nil
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
