package store

import (
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Job states as the API reports them.
const (
	JobQueued    = "queued"
	JobRunning   = "running"
	JobSucceeded = "succeeded"
	JobFailed    = "failed"
	JobCanceled  = "canceled"
)

// ErrFinished means a job already has its result; a second result is ignored.
var ErrFinished = errors.New("job already finished")

// Job records the intent of a background task, so it can be enqueued again
// when Redis has lost it.
type Job struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	ImageID string `json:"image_id"`
	// Title says what the job works on, for people.
	Title string `json:"title"`
	State string `json:"state"`
	Error string `json:"error"`
	// Result sums up what a finished maintenance job found.
	Result     string    `json:"result,omitempty"`
	Payload    []byte    `json:"payload"`
	Done       int64     `json:"done"`
	Total      int64     `json:"total"`
	CreatedAt  time.Time `json:"created_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// Finished reports whether the job has reached a final state.
func (j *Job) Finished() bool {
	return j.State == JobSucceeded || j.State == JobFailed || j.State == JobCanceled
}

// GetJob returns one job by id.
func (s *Store) GetJob(id string) (*Job, error) {
	var job Job
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx, bucketJobs, id, &job) })
	if err != nil {
		return nil, err
	}
	return &job, nil
}

// ListJobs returns every job, newest first.
func (s *Store) ListJobs() ([]Job, error) {
	var jobs []Job
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		jobs, err = list[Job](tx, bucketJobs)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].CreatedAt.After(jobs[j].CreatedAt) })
	return jobs, nil
}

// FinishJob records a job's result and lets update change its image in the
// same transaction. The first result wins: a later one returns ErrFinished,
// so a retried task that reports twice changes nothing.
func (s *Store) FinishJob(jobID, state, errMsg string, update func(img *Image) error) (*Image, error) {
	var img Image
	err := s.db.Update(func(tx *bolt.Tx) error {
		var job Job
		if err := get(tx, bucketJobs, jobID, &job); err != nil {
			return err
		}
		if job.Finished() {
			return fmt.Errorf("job %s: %w", jobID, ErrFinished)
		}
		job.State = state
		job.Error = errMsg
		job.FinishedAt = time.Now().UTC()
		if job.State == JobSucceeded && job.Total > 0 {
			job.Done = job.Total
		}
		if err := put(tx, bucketJobs, job.ID, &job); err != nil {
			return err
		}
		if job.ImageID == "" {
			return nil
		}
		if err := get(tx, bucketImages, job.ImageID, &img); err != nil {
			// The image was deleted while its job ran: nothing to update.
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			return err
		}
		if err := update(&img); err != nil {
			return err
		}
		img.UpdatedAt = time.Now().UTC()
		return put(tx, bucketImages, img.ID, &img)
	})
	if err != nil {
		return nil, err
	}
	return &img, nil
}

// CancelJob marks an unfinished job canceled.
func (s *Store) CancelJob(jobID string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return cancelJob(tx, jobID) })
}

func cancelJob(tx *bolt.Tx, jobID string) error {
	var job Job
	if err := get(tx, bucketJobs, jobID, &job); err != nil {
		return err
	}
	if job.Finished() {
		return nil
	}
	job.State = JobCanceled
	job.FinishedAt = time.Now().UTC()
	return put(tx, bucketJobs, job.ID, &job)
}

// RestartImage gives a failed image a new job: both change in one
// transaction, and only while the image still points at oldJobID.
func (s *Store) RestartImage(imageID, oldJobID, status string, job *Job) (*Image, error) {
	var img Image
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := get(tx, bucketImages, imageID, &img); err != nil {
			return err
		}
		if img.JobID != oldJobID || img.Status != StatusFailed {
			return fmt.Errorf("image %s has moved on (job %s, %s): %w", imageID, img.JobID, img.Status, ErrConflict)
		}
		img.Status, img.Error, img.JobID, img.UpdatedAt = status, "", job.ID, time.Now().UTC()
		if err := put(tx, bucketImages, img.ID, &img); err != nil {
			return err
		}
		return put(tx, bucketJobs, job.ID, job)
	})
	if err != nil {
		return nil, err
	}
	return &img, nil
}

// PutJob records a job that belongs to no image (a sync run, maintenance).
func (s *Store) PutJob(job *Job) error {
	return s.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketJobs, job.ID, job) })
}

// DeleteJob removes a finished job from the history; an unfinished one is
// ErrConflict.
func (s *Store) DeleteJob(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		var job Job
		if err := get(tx, bucketJobs, id, &job); err != nil {
			return err
		}
		if !job.Finished() {
			return fmt.Errorf("job %s is %s: cancel it first: %w", id, job.State, ErrConflict)
		}
		return tx.Bucket(bucketJobs).Delete([]byte(id))
	})
}

// UnfinishedJobs returns the jobs that still wait for a result.
func (s *Store) UnfinishedJobs() ([]Job, error) {
	jobs, err := s.ListJobs()
	if err != nil {
		return nil, err
	}
	var out []Job
	for _, j := range jobs {
		if !j.Finished() {
			out = append(out, j)
		}
	}
	return out, nil
}

// PruneJobs deletes the jobs that finished before cutoff and returns how
// many it deleted. Two kinds stay: the last job of a failed image, since
// retrying the image goes through it, and the newest finished job of each
// type, since the dashboard and the scrub schedule read the last run.
func (s *Store) PruneJobs(cutoff time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		jobs, err := list[Job](tx, bucketJobs)
		if err != nil {
			return err
		}
		newest := map[string]*Job{}
		for i := range jobs {
			j := &jobs[i]
			if cur := newest[j.Type]; j.Finished() && (cur == nil || j.FinishedAt.After(cur.FinishedAt)) {
				newest[j.Type] = j
			}
		}
		for i := range jobs {
			j := &jobs[i]
			if !j.Finished() || !j.FinishedAt.Before(cutoff) || newest[j.Type] == j || retryable(tx, j) {
				continue
			}
			if err := tx.Bucket(bucketJobs).Delete([]byte(j.ID)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune jobs: %w", err)
	}
	return n, nil
}

// retryable reports whether j is the last job of an image that failed.
func retryable(tx *bolt.Tx, j *Job) bool {
	if j.ImageID == "" || j.State == JobSucceeded {
		return false
	}
	var img Image
	if err := get(tx, bucketImages, j.ImageID, &img); err != nil {
		return false
	}
	return img.JobID == j.ID && img.Status == StatusFailed
}

// FinishScrub records a scrub's outcome. In one transaction damage sees
// every image and returns whether it changed it and, when the image is to be
// downloaded again, the new job to record; then finish sets the scrub job's
// state, error and result. The first result wins, as with FinishJob. It
// returns the changed images and the new jobs.
func (s *Store) FinishScrub(jobID string, damage func(img *Image) (bool, *Job, error), finish func(job *Job)) ([]Image, []Job, error) {
	var changed []Image
	var started []Job
	err := s.db.Update(func(tx *bolt.Tx) error {
		changed, started = nil, nil
		var job Job
		if err := get(tx, bucketJobs, jobID, &job); err != nil {
			return err
		}
		if job.Finished() {
			return fmt.Errorf("job %s: %w", jobID, ErrFinished)
		}
		imgs, err := list[Image](tx, bucketImages)
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		for i := range imgs {
			img := &imgs[i]
			ok, newJob, err := damage(img)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			img.UpdatedAt = now
			if err := put(tx, bucketImages, img.ID, img); err != nil {
				return err
			}
			changed = append(changed, *img)
			if newJob != nil {
				if err := put(tx, bucketJobs, newJob.ID, newJob); err != nil {
					return err
				}
				started = append(started, *newJob)
			}
		}
		finish(&job)
		job.FinishedAt = now
		if job.Total > 0 && job.State != JobCanceled {
			job.Done = job.Total
		}
		return put(tx, bucketJobs, job.ID, &job)
	})
	if err != nil {
		return nil, nil, err
	}
	return changed, started, nil
}
