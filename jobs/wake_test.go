package jobs

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/store"
)

// dequeueScript does what asynq's dequeue script does with its keys.
var dequeueScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[2]) == 0 then
	return redis.call("RPOPLPUSH", KEYS[1], KEYS[3])
end
return nil`)

func dequeueKeys(queue string) []string {
	p := "asynq:{" + queue + "}:"
	return []string{p + "pending", p + "paused", p + "active", p + "lease"}
}

// reached counts the commands that get past the Waker to Redis; inFlight,
// when set, runs while a command is on its way.
type reached struct {
	n        atomic.Int64
	inFlight func()
}

func (r *reached) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *reached) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (r *reached) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		if r.inFlight != nil {
			r.inFlight()
		}
		return next(ctx, cmd)
	}
}

// hooked returns a Redis client whose commands go through w's hook for a
// server of the hash queue, then past r. The hook never holds a dequeue
// (as for a stopping server), so each call answers at once.
func hooked(t *testing.T, addr string, w *Waker, r *reached) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	h := &serverHook{w: w, queues: []string{"hash"}}
	h.released.Store(true)
	c.AddHook(h)
	c.AddHook(r)
	return c
}

// setListening sets w as if Listen were subscribed or not.
func setListening(w *Waker, on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.listening = on
}

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestDequeuedQueue(t *testing.T) {
	keys := func(ks ...string) []any {
		out := make([]any, len(ks))
		for i, k := range ks {
			out[i] = k
		}
		return out
	}
	dequeue := keys(dequeueKeys("hash")...)
	tests := []struct {
		name  string
		args  []any
		queue string
	}{
		{"evalsha", append([]any{"evalsha", "abc", 4}, append(dequeue, int64(1), "asynq:{hash}:t:")...), "hash"},
		{"eval", append([]any{"eval", "script", 4}, append(dequeue, int64(1), "asynq:{hash}:t:")...), "hash"},
		{"other script", append([]any{"evalsha", "abc", 4}, keys("asynq:{hash}:active", "asynq:{hash}:lease", "a", "b")...), ""},
		{"three keys", append([]any{"evalsha", "abc", 3}, keys(dequeueKeys("hash")[:3]...)...), ""},
		{"keys of two queues", append([]any{"evalsha", "abc", 4}, keys("asynq:{hash}:pending", "asynq:{mirror}:paused", "asynq:{hash}:active", "asynq:{hash}:lease")...), ""},
		{"empty queue name", append([]any{"evalsha", "abc", 4}, keys(dequeueKeys("")...)...), ""},
		{"get", []any{"get", "asynq:{hash}:pending", "a", "b", "c", "d", "e"}, ""},
		{"short", []any{"evalsha"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, ok := dequeuedQueue(tt.args)
			assert.Equal(t, tt.queue != "", ok)
			assert.Equal(t, tt.queue, q)
		})
	}
}

func TestWakerAnswersEmptyQueues(t *testing.T) {
	tests := []struct {
		name string
		// between runs after a dequeue found the queue empty; it tells
		// whether the next dequeue must reach Redis.
		between func(t *testing.T, w *Waker, c *redis.Client, clock *fakeClock) bool
	}{
		{"again at once: answered", func(*testing.T, *Waker, *redis.Client, *fakeClock) bool { return false }},
		{"a notice for the queue", func(_ *testing.T, w *Waker, _ *redis.Client, _ *fakeClock) bool { w.wake("hash"); return true }},
		{"a notice for another queue", func(_ *testing.T, w *Waker, _ *redis.Client, _ *fakeClock) bool { w.wake("mirror"); return false }},
		{"almost pollEvery later", func(_ *testing.T, _ *Waker, _ *redis.Client, c *fakeClock) bool {
			c.t = c.t.Add(PollEvery - time.Millisecond)
			return false
		}},
		{"pollEvery later", func(_ *testing.T, _ *Waker, _ *redis.Client, c *fakeClock) bool {
			c.t = c.t.Add(PollEvery)
			return true
		}},
		{"unsubscribed: a second later", func(_ *testing.T, w *Waker, _ *redis.Client, c *fakeClock) bool {
			setListening(w, false)
			c.t = c.t.Add(pollUnsubscribed)
			return true
		}},
		{"unsubscribed: almost a second later", func(_ *testing.T, w *Waker, _ *redis.Client, c *fakeClock) bool {
			setListening(w, false)
			c.t = c.t.Add(pollUnsubscribed - time.Millisecond)
			return false
		}},
		{"a command that is no dequeue", func(t *testing.T, _ *Waker, c *redis.Client, _ *fakeClock) bool {
			require.NoError(t, c.LPush(context.Background(), "asynq:{hash}:pending", "task").Err())
			return false
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := miniredis.RunT(t)
			clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
			w := NewWaker(PollEvery)
			w.now = clock.now
			setListening(w, true)
			r := &reached{}
			c := hooked(t, m.Addr(), w, r)
			ctx := context.Background()
			// Loaded, so each dequeue is one EVALSHA.
			require.NoError(t, dequeueScript.Load(ctx, c).Err())

			before := r.n.Load()
			err := dequeueScript.Run(ctx, c, dequeueKeys("hash"), 1).Err()
			require.ErrorIs(t, err, redis.Nil)
			require.Equal(t, before+1, r.n.Load(), "the first dequeue reaches Redis")

			want := tt.between(t, w, c, clock)
			before = r.n.Load()
			err = dequeueScript.Run(ctx, c, dequeueKeys("hash"), 1).Err()
			if want {
				assert.Greater(t, r.n.Load(), before, "the dequeue reaches Redis")
			} else {
				assert.Equal(t, before, r.n.Load(), "the dequeue is answered without Redis")
				assert.ErrorIs(t, err, redis.Nil, "answered as an empty queue")
			}
			assert.Equal(t, int64(2), w.dequeues.Load(), "both dequeues recognized")

			// Other commands always reach Redis.
			before = r.n.Load()
			require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
			require.NoError(t, c.Eval(ctx, `return redis.call("GET", KEYS[1])`, []string{"k"}).Err())
			assert.Equal(t, before+2, r.n.Load())
		})
	}
}

// TestWakerKeepsANoticeDuringADequeue: a task announced while a dequeue is
// on its way may have come after the dequeue looked, so the empty answer
// must not hide it until the next poll.
func TestWakerKeepsANoticeDuringADequeue(t *testing.T) {
	m := miniredis.RunT(t)
	w := NewWaker(time.Hour)
	setListening(w, true)
	var notice atomic.Bool
	r := &reached{inFlight: func() {
		if notice.Load() {
			w.wake("hash")
		}
	}}
	c := hooked(t, m.Addr(), w, r)
	ctx := context.Background()
	dequeue := func() error { return dequeueScript.Run(ctx, c, dequeueKeys("hash"), 1).Err() }

	require.ErrorIs(t, dequeue(), redis.Nil)
	notice.Store(true)
	w.wake("hash")
	require.ErrorIs(t, dequeue(), redis.Nil, "the notice's dequeue finds it empty; another notice comes meanwhile")
	notice.Store(false)
	before := r.n.Load()
	require.ErrorIs(t, dequeue(), redis.Nil)
	assert.Greater(t, r.n.Load(), before, "the notice heard in flight sends the next dequeue to Redis")
	before = r.n.Load()
	require.ErrorIs(t, dequeue(), redis.Nil)
	assert.Equal(t, before, r.n.Load(), "then the queue is known empty again")
}

// wakeServer starts an asynq server on Redis at addr through w, running h, and waits
// until it has found queue empty: from then on only a notice or w's
// pollEvery makes it look again.
func wakeServer(t *testing.T, addr string, w *Waker, queue string, h asynq.Handler) {
	t.Helper()
	srv := w.NewServer(&redis.Options{Addr: addr}, asynq.Config{
		Concurrency: 1, Queues: map[string]int{queue: 1}, LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.Handle(TypeJobResult, h)
	mux.Handle(TypeHashImage, h)
	require.NoError(t, srv.Start(mux))
	t.Cleanup(srv.Shutdown)
	require.Eventually(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		q := w.queues[queue]
		return q != nil && !q.emptyAt.IsZero()
	}, 10*time.Second, 5*time.Millisecond, "asynq's dequeue went through the waker: its keys are as dequeuedQueue expects")
}

// listen runs w.Listen on Redis at addr until the test ends, once subscribed.
func listen(t *testing.T, addr string, w *Waker) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Listen(ctx, rdb) }()
	t.Cleanup(func() { cancel(); <-done; rdb.Close() })
	require.Eventually(t, func() bool {
		n, err := rdb.PubSubNumSub(ctx, wakeChannel).Result()
		return err == nil && n[wakeChannel] == 1
	}, 5*time.Second, 5*time.Millisecond, "the waker subscribes")
	return rdb
}

// TestAnnouncedTaskStarts runs a real asynq server that looks at an empty
// queue once a minute unless a task is announced on it.
func TestAnnouncedTaskStarts(t *testing.T) {
	tests := []struct {
		name     string
		announce bool
	}{
		{"announced: starts at once", true},
		{"not announced: waits for the minute's poll", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := miniredis.RunT(t)
			w := NewWaker(time.Minute)
			rdb := listen(t, m.Addr(), w)
			started := make(chan string, 1)
			wakeServer(t, m.Addr(), w, QueueHash, asynq.HandlerFunc(func(_ context.Context, task *asynq.Task) error {
				started <- string(task.Payload())
				return nil
			}))
			client := asynq.NewClient(asynq.RedisClientOpt{Addr: m.Addr()})
			t.Cleanup(func() { client.Close() })
			var q Enqueuer = client
			if tt.announce {
				q = Announce(client, rdb)
			}
			_, err := q.EnqueueContext(context.Background(), asynq.NewTask(TypeHashImage, []byte("job-1")), asynq.Queue(QueueHash))
			require.NoError(t, err)
			if !tt.announce {
				select {
				case <-started:
					t.Fatal("an unannounced task started before the queue's poll")
				case <-time.After(300 * time.Millisecond):
				}
				return
			}
			select {
			case p := <-started:
				assert.Equal(t, "job-1", p)
			case <-time.After(20 * time.Second):
				t.Fatal("the announced task did not start")
			}
		})
	}
}

// TestAnnouncedResultIsRecorded: the web process's result consumer, woken
// by the worker's notice, records the hash job's result long before its
// once-a-minute poll would.
func TestAnnouncedResultIsRecorded(t *testing.T) {
	tests := []struct {
		name     string
		announce bool
	}{
		{"announced", true},
		{"not announced: it waits for the queue's poll", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			addr := e.Redis.Options().Addr
			w := NewWaker(time.Minute)
			listen(t, addr, w)
			wakeServer(t, addr, w, QueueResults, e.results)

			img, job := e.upload(t, bootFiles(), bootMeta())
			hash := *e.hash
			if tt.announce {
				hash.Results = Announce(e.Queue, e.Redis)
			}
			require.NoError(t, e.runPending(t, QueueHash, job.ID, &hash))
			if !tt.announce {
				time.Sleep(300 * time.Millisecond)
				assert.Equal(t, store.JobQueued, jobState(t, e, job.ID), "nothing records an unannounced result before the poll")
				return
			}
			require.Eventually(t, func() bool { return jobState(t, e, job.ID) == store.JobSucceeded }, 20*time.Second, 5*time.Millisecond)
			got, err := e.Store.GetImage(img.ID)
			require.NoError(t, err)
			assert.Equal(t, store.StatusReady, got.Status)
		})
	}
}

// TestListenWakesOnSubscribing: notices sent while the waker was not
// subscribed are lost, so each subscription sends the next dequeue of
// every queue to Redis.
func TestListenWakesOnSubscribing(t *testing.T) {
	m := miniredis.RunT(t)
	w := NewWaker(time.Hour)
	r := &reached{}
	c := hooked(t, m.Addr(), w, r)
	ctx := context.Background()
	require.ErrorIs(t, dequeueScript.Run(ctx, c, dequeueKeys("hash"), 1).Err(), redis.Nil)

	listen(t, m.Addr(), w)
	require.Eventually(t, func() bool {
		before := r.n.Load()
		_ = dequeueScript.Run(ctx, c, dequeueKeys("hash"), 1).Err()
		return r.n.Load() > before
	}, 5*time.Second, 5*time.Millisecond)
}

func jobState(t *testing.T, e *env, id string) string {
	t.Helper()
	j, err := e.Store.GetJob(id)
	require.NoError(t, err)
	return j.State
}

// TestWakerHoldsAnIdleDequeue: while every queue of a server is known
// empty, its dequeue waits in the hook (here for an hour). A notice lets
// it go to Redis, the server stopping answers it empty, and Listen ending
// brings the poll back to once a second.
func TestWakerHoldsAnIdleDequeue(t *testing.T) {
	tests := []struct {
		name    string
		letGo   func(rdb *redis.Client, h *serverHook, stopListening func())
		toRedis bool
	}{
		{"a notice", func(rdb *redis.Client, _ *serverHook, _ func()) {
			require.NoError(t, rdb.Publish(context.Background(), wakeChannel, "hash").Err())
		}, true},
		{"the server stopping", func(_ *redis.Client, h *serverHook, _ func()) { h.release() }, false},
		{"Listen ending", func(_ *redis.Client, _ *serverHook, stop func()) { stop() }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := miniredis.RunT(t)
			w := NewWaker(time.Hour)
			rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
			t.Cleanup(func() { rdb.Close() })
			ctx, cancel := context.WithCancel(context.Background())
			listened := make(chan struct{})
			go func() { defer close(listened); w.Listen(ctx, rdb) }()
			stopListening := func() { cancel(); <-listened }
			t.Cleanup(stopListening)
			require.Eventually(t, func() bool {
				w.mu.Lock()
				defer w.mu.Unlock()
				return w.listening
			}, 5*time.Second, 5*time.Millisecond, "the waker subscribes")

			h := &serverHook{w: w, queues: []string{"hash"}}
			r := &reached{}
			c := redis.NewClient(&redis.Options{Addr: m.Addr()})
			t.Cleanup(func() { c.Close() })
			c.AddHook(h)
			c.AddHook(r)
			require.NoError(t, dequeueScript.Load(ctx, c).Err())
			require.ErrorIs(t, dequeueScript.Run(ctx, c, dequeueKeys("hash"), 1).Err(), redis.Nil)

			before := r.n.Load()
			done := make(chan error, 1)
			go func() { done <- dequeueScript.Run(context.Background(), c, dequeueKeys("hash"), 1).Err() }()
			select {
			case err := <-done:
				t.Fatalf("the dequeue of an idle server returned (%v): it polls", err)
			case <-time.After(200 * time.Millisecond):
			}
			tt.letGo(rdb, h, stopListening)
			select {
			case err := <-done:
				assert.ErrorIs(t, err, redis.Nil)
			case <-time.After(10 * time.Second):
				t.Fatal("the dequeue is still held")
			}
			if tt.toRedis {
				assert.Greater(t, r.n.Load(), before, "the announced queue is looked at")
			} else {
				assert.Equal(t, before, r.n.Load(), "answered empty")
			}
		})
	}
}

// TestScheduledTaskIsAnnounced: a periodic task starts although its queue
// is polled once a minute.
func TestScheduledTaskIsAnnounced(t *testing.T) {
	m := miniredis.RunT(t)
	w := NewWaker(time.Minute)
	rdb := listen(t, m.Addr(), w)
	started := make(chan struct{}, 10)
	wakeServer(t, m.Addr(), w, QueueSync, asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		started <- struct{}{}
		return nil
	}))
	s := asynq.NewScheduler(asynq.RedisClientOpt{Addr: m.Addr()}, &asynq.SchedulerOpts{
		LogLevel: asynq.FatalLevel, PostEnqueueFunc: AnnounceScheduled(rdb)})
	_, err := s.Register("@every 1s", asynq.NewTask(TypeHashImage, nil, asynq.Queue(QueueSync)))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	t.Cleanup(s.Shutdown)
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the scheduled task did not start")
	}
}
