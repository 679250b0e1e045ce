package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/mirror"
	"github.com/customstream/customstream/internal/progress"
	"github.com/customstream/customstream/internal/store"
)

// TypeMirrorImage downloads one upstream product version.
const TypeMirrorImage = "image:mirror"

// QueueMirror holds mirror jobs: long, network-bound, apart from hashing.
const QueueMirror = "mirror"

// MirrorItem is one file for a mirror job to fetch.
type MirrorItem struct {
	Name   string `json:"name"`
	URL    string `json:"url"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// MirrorImagePayload asks a worker to download a version's items.
type MirrorImagePayload struct {
	JobID   string       `json:"job_id"`
	ImageID string       `json:"image_id"`
	Title   string       `json:"title"`
	Items   []MirrorItem `json:"items"`
}

func mirrorOptions(jobID string) []asynq.Option {
	// Retries back off (asynq's default grows with each attempt), so a
	// flaky upstream gets time to recover.
	return []asynq.Option{asynq.Queue(QueueMirror), asynq.MaxRetry(5), asynq.Timeout(24 * time.Hour), asynq.TaskID(jobID)}
}

// NewMirrorImageTask returns the mirror task of a payload.
func NewMirrorImageTask(p MirrorImagePayload) (*asynq.Task, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("mirror task %s: %w", p.JobID, err)
	}
	return asynq.NewTask(TypeMirrorImage, data, mirrorOptions(p.JobID)...), nil
}

// NewMirrorJob builds the job record that downloads img's items.
func NewMirrorJob(jobID string, img *store.Image) (*store.Job, error) {
	p := MirrorImagePayload{JobID: jobID, ImageID: img.ID, Title: img.ProductID + " " + img.VersionName}
	var total int64
	for _, it := range img.Items {
		p.Items = append(p.Items, MirrorItem{Name: it.Name, URL: it.Source, Size: it.Size, SHA256: it.Expected})
		total += it.Size
	}
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("mirror job %s: %w", jobID, err)
	}
	return &store.Job{ID: jobID, Type: TypeMirrorImage, ImageID: img.ID, Title: p.Title, State: store.JobQueued,
		Payload: data, Total: total, CreatedAt: time.Now().UTC()}, nil
}

// MirrorHandler downloads a version's items into the blob store and reports
// them to the web process.
type MirrorHandler struct {
	Downloader *mirror.Downloader
	Progress   *progress.Tracker
	Results    Enqueuer
	Log        *slog.Logger
}

// ProcessTask runs one mirror job. A retry resumes partial files and skips
// what is already in the blob store.
func (h *MirrorHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	return runWorkerJob(ctx, t, TypeMirrorImage, h.Results, h.Progress, func(p *MirrorImagePayload) (ResultPayload, error) {
		items := make([]mirror.Item, len(p.Items))
		for i, it := range p.Items {
			items[i] = mirror.Item{Name: it.Name, URL: it.URL, Size: it.Size, SHA256: it.SHA256}
		}
		var rep *progress.Reporter
		st, err := h.Downloader.Fetch(ctx, items, func(done, total int64) {
			if rep == nil {
				rep = h.Progress.Reporter(ctx, p.JobID, total)
			}
			rep.Report(done)
		})
		if err != nil {
			return ResultPayload{}, err
		}
		h.Log.Info("Mirrored", slog.String("job_id", p.JobID), slog.String("title", p.Title), slog.Int("downloaded", st.Downloaded),
			slog.Int("reused", st.Reused), slog.Int64("bytes", st.Bytes), slog.Int64("resumed_bytes", st.Resumed))
		var res ResultPayload
		for _, it := range p.Items {
			res.Items = append(res.Items, images.HashedItem{Name: it.Name, SHA256: it.SHA256, Size: it.Size})
		}
		return res, nil
	})
}
