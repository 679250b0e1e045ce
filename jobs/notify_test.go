package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/store"
)

// TestAnnouncedResultIsRecordedAtOnce: no consumer serves the results queue
// here, so only the announcement can record the hash job's result.
func TestAnnouncedResultIsRecordedAtOnce(t *testing.T) {
	tests := []struct {
		name     string
		announce bool
	}{
		{"announced", true},
		{"not announced: it waits for the queue", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); ListenResults(ctx, e.Redis, e.Inspector, e.results, e.Log) }()
			t.Cleanup(func() { cancel(); <-done })

			require.Eventually(t, func() bool {
				n, err := e.Redis.PubSubNumSub(ctx, resultsChannel).Result()
				return err == nil && n[resultsChannel] == 1
			}, 5*time.Second, 10*time.Millisecond, "the listener subscribes")

			img, job := e.upload(t, bootFiles(), bootMeta())
			hash := *e.hash
			if tt.announce {
				hash.Results = NotifyResults(e.Queue, e.Redis)
			}
			require.NoError(t, e.runPending(t, QueueHash, job.ID, &hash))
			if !tt.announce {
				time.Sleep(200 * time.Millisecond)
				assert.Equal(t, store.JobQueued, jobState(t, e, job.ID), "nothing records an unannounced result but the queue")
				_, err := e.Inspector.GetTaskInfo(QueueResults, resultTaskID(job.ID))
				assert.NoError(t, err, "the result waits in its queue")
				return
			}
			require.Eventually(t, func() bool { return jobState(t, e, job.ID) == store.JobSucceeded }, 5*time.Second, 10*time.Millisecond)
			got, err := e.Store.GetImage(img.ID)
			require.NoError(t, err)
			assert.Equal(t, store.StatusReady, got.Status)
			assert.Eventually(t, func() bool {
				_, err := e.Inspector.GetTaskInfo(QueueResults, resultTaskID(job.ID))
				return err != nil
			}, 5*time.Second, 10*time.Millisecond, "the recorded result leaves its queue")
		})
	}
}

func jobState(t *testing.T, e *env, id string) string {
	t.Helper()
	j, err := e.Store.GetJob(id)
	require.NoError(t, err)
	return j.State
}
