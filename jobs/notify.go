package jobs

import (
	"context"
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// resultsChannel is the Redis channel on which workers announce the results
// they queue. asynq looks at an empty queue only about once a second (a
// shorter interval costs idle CPU on every process), so without the notice
// each job would wait up to 1.5 s more for the web process to record it.
const resultsChannel = "customstream:results"

// notifyingQueue enqueues tasks and announces results on resultsChannel.
type notifyingQueue struct {
	Enqueuer
	rdb redis.Cmdable
}

// NotifyResults returns q announcing every result it enqueues, so the web
// process records it at once; the queued task stays the durable copy.
func NotifyResults(q Enqueuer, rdb redis.Cmdable) Enqueuer {
	return &notifyingQueue{Enqueuer: q, rdb: rdb}
}

// EnqueueContext enqueues task and, for a result, announces its job.
func (n *notifyingQueue) EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	info, err := n.Enqueuer.EnqueueContext(ctx, task, opts...)
	if err == nil && task.Type() == TypeJobResult {
		// A lost notice only means the result waits for the queue's poll.
		_ = n.rdb.Publish(ctx, resultsChannel, info.ID).Err()
	}
	return info, err
}

// ListenResults records each announced result as soon as it is announced,
// until ctx ends: it runs the pending result task through h and then takes
// it off the queue. A result the queue's own consumer takes first is
// recorded once all the same (the first result wins).
func ListenResults(ctx context.Context, rdb *redis.Client, insp *asynq.Inspector, h asynq.Handler, log *slog.Logger) {
	sub := rdb.Subscribe(ctx, resultsChannel)
	defer sub.Close()
	// Wait for the subscription; on an error the channel below reconnects.
	_, _ = sub.Receive(ctx)
	notices := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-notices:
			if !ok {
				return
			}
			recordNow(ctx, insp, h, msg.Payload, log)
		}
	}
}

func recordNow(ctx context.Context, insp *asynq.Inspector, h asynq.Handler, taskID string, log *slog.Logger) {
	info, err := insp.GetTaskInfo(QueueResults, taskID)
	if err != nil || info.State != asynq.TaskStatePending {
		return // taken by the queue's consumer already
	}
	if err := h.ProcessTask(ctx, asynq.NewTask(info.Type, info.Payload)); err != nil {
		// The queued task stays: the consumer retries it.
		log.Warn("Unable to record an announced result; the queue retries it", slog.String("task_id", taskID), slog.Any("error", err))
		return
	}
	_ = insp.DeleteTask(QueueResults, taskID)
}
