package jobs

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// wakeChannel is the Redis channel on which every enqueue announces its
// task's queue, so the servers serving that queue look at it at once.
const wakeChannel = "customstream:wake"

// PollEvery is how often a server looks at an empty queue on which no task
// was announced. Only tasks queued without a notice wait for it: a retry
// (asynq moves those into their queue every 5 s), or a task whose notice
// was lost while a process was not subscribed. Each look runs asynq's Lua
// dequeue in Redis: `customstream all` idled at 0.75–1.1 % of a core with
// 1 s, 0.35–0.4 % with 5 s.
const PollEvery = 5 * time.Second

// pollUnsubscribed is how often a Waker lets a server look at an empty
// queue while it hears no notices (Listen not subscribed): asynq's own
// cadence.
const pollUnsubscribed = time.Second

// TaskCheckInterval is how long (0.5–1.5 times) an asynq server sleeps
// after its dequeue found every queue empty. Between polls the Waker holds
// the dequeue instead, so this sleep only follows a poll; short, so a task
// announced during it waits at most 30 ms.
const TaskCheckInterval = 20 * time.Millisecond

// announcingQueue enqueues tasks and announces each one's queue.
type announcingQueue struct {
	Enqueuer
	rdb redis.Cmdable
}

// Announce returns q announcing the queue of every task it enqueues on
// wakeChannel, where Waker.Listen hears it.
func Announce(q Enqueuer, rdb redis.Cmdable) Enqueuer {
	return &announcingQueue{Enqueuer: q, rdb: rdb}
}

// EnqueueContext enqueues task and announces its queue.
func (a *announcingQueue) EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	info, err := a.Enqueuer.EnqueueContext(ctx, task, opts...)
	if err == nil {
		announce(ctx, a.rdb, info.Queue)
	}
	return info, err
}

// AnnounceScheduled returns a PostEnqueueFunc for asynq's Scheduler that
// announces the queue of each task it enqueues.
func AnnounceScheduled(rdb redis.Cmdable) func(*asynq.TaskInfo, error) {
	return func(info *asynq.TaskInfo, err error) {
		if err == nil {
			announce(context.Background(), rdb, info.Queue)
		}
	}
}

// announce wakes the servers of queue. A lost notice only means the task
// waits for the queue's next poll.
func announce(ctx context.Context, rdb redis.Cmdable, queue string) {
	_ = rdb.Publish(ctx, wakeChannel, queue).Err()
}

// Waker wakes asynq servers when a task is announced on one of their
// queues. asynq polls: when all its queues are empty it sleeps
// TaskCheckInterval and dequeues again. The hook it puts on a server's
// Redis client answers a dequeue from a queue found empty less than
// pollEvery ago (1 s while Listen is not subscribed), with no task
// announced on it since, as empty without Redis; and while all the
// server's queues are so, it holds the dequeue until a notice or the first
// of them is due. An idle server thus sends one dequeue a queue per
// pollEvery and hardly wakes between.
type Waker struct {
	pollEvery time.Duration
	now       func() time.Time

	mu     sync.Mutex
	queues map[string]*queueWake
	// changed is closed, and replaced, when a notice arrives or Listen
	// starts or stops: held dequeues look again.
	changed   chan struct{}
	listening bool

	// dequeues counts the dequeues recognized, answered or passed on.
	dequeues atomic.Int64
}

// queueWake is what the Waker knows of one queue.
type queueWake struct {
	wakes      uint64    // notices heard for the queue
	emptyAt    time.Time // when a dequeue last found it empty
	emptyWakes uint64    // wakes when that dequeue was sent
}

// NewWaker returns a Waker that lets a dequeue from an empty, unannounced
// queue reach Redis once per pollEvery.
func NewWaker(pollEvery time.Duration) *Waker {
	return &Waker{pollEvery: pollEvery, now: time.Now, queues: map[string]*queueWake{}, changed: make(chan struct{})}
}

// Server is an asynq server whose dequeues go through a Waker, on a Redis
// client of its own.
type Server struct {
	*asynq.Server
	hook  *serverHook
	redis *redis.Client
}

// NewServer returns an asynq server for cfg on a Redis client from opt,
// woken by w.
func (w *Waker) NewServer(opt *redis.Options, cfg asynq.Config) *Server {
	c := redis.NewClient(opt)
	h := &serverHook{w: w}
	for q := range cfg.Queues {
		h.queues = append(h.queues, q)
	}
	c.AddHook(h)
	cfg.TaskCheckInterval = TaskCheckInterval
	return &Server{Server: asynq.NewServerFromRedisClient(c, cfg), hook: h, redis: c}
}

// Stop stops the server taking new tasks. asynq's Stop waits for its
// dequeue, so a held dequeue is let go first.
func (s *Server) Stop() {
	s.hook.release()
	s.Server.Stop()
}

// Shutdown stops the server as asynq's Shutdown does, then closes its
// Redis client, which asynq leaves open.
func (s *Server) Shutdown() {
	s.hook.release()
	s.Server.Shutdown()
	_ = s.redis.Close()
}

// Listen feeds the notices on wakeChannel to w until ctx ends. Until it
// has subscribed, and once it ends, the servers look at each empty queue
// every second, as asynq alone would.
func (w *Waker) Listen(ctx context.Context, rdb *redis.Client) {
	sub := rdb.Subscribe(ctx, wakeChannel)
	defer sub.Close()
	defer w.setListening(false)
	// Subscription messages come on each (re)subscription.
	msgs := sub.ChannelWithSubscriptions()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Message:
				w.wake(m.Payload)
			case *redis.Subscription:
				w.setListening(true)
			}
		}
	}
}

// setListening records whether Listen hears notices and lets the held
// dequeues look again. On a subscription, every queue's next dequeue
// reaches Redis: notices sent before it were lost.
func (w *Waker) setListening(on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.listening = on
	if on {
		for _, q := range w.queues {
			q.wakes++
		}
	}
	w.broadcast()
}

// wake makes the next dequeue from queue reach Redis.
func (w *Waker) wake(queue string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// A queue not dequeued yet has no entry and reaches Redis anyway; this
	// keeps names nobody serves out of the map.
	if q := w.queues[queue]; q != nil {
		q.wakes++
		w.broadcast()
	}
}

// broadcast wakes the held dequeues; w.mu is held.
func (w *Waker) broadcast() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// serverHook is the Waker's hook on one asynq server's Redis client.
type serverHook struct {
	w      *Waker
	queues []string // the queues the server serves
	// released: the server is stopping, its dequeues are never held.
	released atomic.Bool
}

// release lets go of a held dequeue, and of every later one.
func (h *serverHook) release() {
	h.released.Store(true)
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	h.w.broadcast()
}

// DialHook passes dials through.
func (h *serverHook) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook passes pipelines through: asynq dequeues alone.
func (h *serverHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook answers, or holds, asynq's dequeues from a queue known to be
// empty; any other command passes through.
func (h *serverHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		queue, ok := dequeuedQueue(cmd.Args())
		if !ok {
			return next(ctx, cmd)
		}
		h.w.dequeues.Add(1)
		sent, wakes, skip := h.w.beforeDequeue(ctx, queue, h)
		if skip {
			// asynq's Dequeue takes redis.Nil as "empty, next queue".
			cmd.SetErr(redis.Nil)
			return redis.Nil
		}
		err := next(ctx, cmd)
		if errors.Is(err, redis.Nil) {
			h.w.foundEmpty(queue, sent, wakes)
		}
		return err
	}
}

// beforeDequeue tells whether a dequeue from queue can be answered as
// empty, or else the time and wake count to record if Redis finds it empty.
// While every queue of h's server is known empty, it waits for a notice or
// the first of them to be due.
func (w *Waker) beforeDequeue(ctx context.Context, queue string, h *serverHook) (now time.Time, wakes uint64, skip bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		now = w.now()
		q := w.queue(queue)
		if !w.knownEmpty(q, now) {
			return now, q.wakes, false
		}
		due, idle := w.firstDue(h.queues, now)
		if !idle || h.released.Load() {
			// Another queue of the round is due: let the round go on.
			return now, q.wakes, true
		}
		changed := w.changed
		w.mu.Unlock()
		t := time.NewTimer(due.Sub(now))
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		w.mu.Lock()
		if ctx.Err() != nil {
			return w.now(), q.wakes, true
		}
	}
}

// queue returns the entry of name; w.mu is held.
func (w *Waker) queue(name string) *queueWake {
	q := w.queues[name]
	if q == nil {
		q = &queueWake{}
		w.queues[name] = q
	}
	return q
}

// knownEmpty: a dequeue found q empty less than w.every() ago and no task
// was announced since; w.mu is held.
func (w *Waker) knownEmpty(q *queueWake, now time.Time) bool {
	return !q.emptyAt.IsZero() && now.Sub(q.emptyAt) < w.every() && q.wakes == q.emptyWakes
}

// every is how often an empty queue is looked at; w.mu is held.
func (w *Waker) every() time.Duration {
	if !w.listening {
		return min(w.pollEvery, pollUnsubscribed)
	}
	return w.pollEvery
}

// firstDue returns when the first of queues is due for a poll, and whether
// all of them are known empty until then; w.mu is held.
func (w *Waker) firstDue(queues []string, now time.Time) (due time.Time, idle bool) {
	if len(queues) == 0 {
		return now, false
	}
	for _, name := range queues {
		q := w.queue(name)
		if !w.knownEmpty(q, now) {
			return now, false
		}
		if at := q.emptyAt.Add(w.every()); due.IsZero() || at.Before(due) {
			due = at
		}
	}
	return due, true
}

// foundEmpty records that a dequeue sent at sent, with wakes notices
// heard, found queue empty. A notice heard while it ran makes the wake
// counts differ, so the next dequeue reaches Redis.
func (w *Waker) foundEmpty(queue string, sent time.Time, wakes uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queue(queue)
	q.emptyAt, q.emptyWakes = sent, wakes
}

// dequeuedQueue returns the queue of asynq's dequeue script call: EVALSHA
// or EVAL with the keys asynq:{Q}:pending, paused, active and lease.
func dequeuedQueue(args []any) (string, bool) {
	if len(args) < 7 {
		return "", false
	}
	name, _ := args[0].(string)
	if !strings.EqualFold(name, "evalsha") && !strings.EqualFold(name, "eval") {
		return "", false
	}
	if n, ok := args[2].(int); !ok || n != 4 {
		return "", false
	}
	first, _ := args[3].(string)
	queue, ok := strings.CutPrefix(first, "asynq:{")
	if !ok {
		return "", false
	}
	queue, ok = strings.CutSuffix(queue, "}:pending")
	if !ok || queue == "" {
		return "", false
	}
	prefix := "asynq:{" + queue + "}:"
	for i, suffix := range []string{"pending", "paused", "active", "lease"} {
		if key, _ := args[3+i].(string); key != prefix+suffix {
			return "", false
		}
	}
	return queue, true
}
