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
// was announced: asynq's default cadence, the delay a lost notice costs.
const PollEvery = time.Second

// TaskCheckInterval is how long an asynq server sleeps when all its queues
// are empty, then 0.5–1.5 times that. It is short so an announced task
// starts within tens of milliseconds; the Waker answers the checks between
// two polls without Redis, so they cost no Lua dequeue.
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
		// A lost notice only means the task waits for the queue's next poll.
		_ = a.rdb.Publish(ctx, wakeChannel, info.Queue).Err()
	}
	return info, err
}

// Waker is a go-redis hook for the Redis client of asynq servers. asynq
// polls its queues; the Waker answers a dequeue from a queue found empty
// less than pollEvery ago as empty, without Redis, unless a task was
// announced on that queue since. Any other command passes through.
type Waker struct {
	pollEvery time.Duration
	now       func() time.Time

	mu     sync.Mutex
	queues map[string]*queueWake

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
	return &Waker{pollEvery: pollEvery, now: time.Now, queues: map[string]*queueWake{}}
}

// NewServer returns an asynq server for cfg, with its own Redis client
// (from opt) whose dequeues go through w. asynq does not close a client it
// is given: close it after the server's Shutdown.
func (w *Waker) NewServer(opt *redis.Options, cfg asynq.Config) (*asynq.Server, *redis.Client) {
	c := redis.NewClient(opt)
	c.AddHook(w)
	cfg.TaskCheckInterval = TaskCheckInterval
	return asynq.NewServerFromRedisClient(c, cfg), c
}

// Listen feeds the notices on wakeChannel to w until ctx ends. While it is
// not subscribed the servers still poll each queue every pollEvery.
func (w *Waker) Listen(ctx context.Context, rdb *redis.Client) {
	sub := rdb.Subscribe(ctx, wakeChannel)
	defer sub.Close()
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
				// Notices sent while unsubscribed were lost.
				w.wakeAll()
			}
		}
	}
}

// wake makes the next dequeue from queue reach Redis.
func (w *Waker) wake(queue string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// A queue not dequeued yet has no entry and reaches Redis anyway; this
	// keeps names nobody serves out of the map.
	if q := w.queues[queue]; q != nil {
		q.wakes++
	}
}

func (w *Waker) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, q := range w.queues {
		q.wakes++
	}
}

// DialHook passes dials through.
func (w *Waker) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook passes pipelines through: asynq dequeues alone.
func (w *Waker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook answers asynq's dequeues from a queue known to be empty.
func (w *Waker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		queue, ok := dequeuedQueue(cmd.Args())
		if !ok {
			return next(ctx, cmd)
		}
		w.dequeues.Add(1)
		sent, wakes, skip := w.beforeDequeue(queue)
		if skip {
			// asynq's Dequeue takes redis.Nil as "empty, next queue".
			cmd.SetErr(redis.Nil)
			return redis.Nil
		}
		err := next(ctx, cmd)
		if errors.Is(err, redis.Nil) {
			w.foundEmpty(queue, sent, wakes)
		}
		return err
	}
}

// beforeDequeue tells whether a dequeue from queue can be answered as
// empty, or else the time and wake count to record if Redis finds it empty.
func (w *Waker) beforeDequeue(queue string) (now time.Time, wakes uint64, skip bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now = w.now()
	q := w.queues[queue]
	if q == nil {
		q = &queueWake{}
		w.queues[queue] = q
	}
	fresh := !q.emptyAt.IsZero() && now.Sub(q.emptyAt) < w.pollEvery
	return now, q.wakes, fresh && q.wakes == q.emptyWakes
}

// foundEmpty records that a dequeue sent at sent, with wakes notices
// heard, found queue empty. A notice heard while it ran makes the wake
// counts differ, so the next dequeue reaches Redis.
func (w *Waker) foundEmpty(queue string, sent time.Time, wakes uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queues[queue]
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
