package images

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/customstream/customstream/internal/store"
)

// CanceledReason is the error a canceled job leaves on its image.
const CanceledReason = "canceled by an admin"

// Cancel ends an unfinished job at an admin's request: its image fails with
// CanceledReason and its staged uploads are removed. The caller stops the
// task itself; a result it still reports is ignored (the first one wins).
func (s *Service) Cancel(jobID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobEnded = true
	var staged []string
	_, err := s.store.FinishJob(jobID, store.JobCanceled, CanceledReason, func(img *store.Image) error {
		for _, it := range img.Items {
			if it.Staged != "" {
				staged = append(staged, it.Staged)
			}
		}
		img.Status, img.Error = store.StatusFailed, CanceledReason
		return nil
	})
	if errors.Is(err, store.ErrFinished) {
		return fmt.Errorf("job %s has finished already: %w", jobID, store.ErrConflict)
	}
	if err != nil {
		return err
	}
	s.removeStaged(staged)
	s.log.Info("Job canceled", slog.String("job_id", jobID))
	// Blobs freed while the job ran (a scrub holds collection back) go now.
	return s.republish()
}

// Retry starts a failed or canceled mirror job again, as a new job for the
// same image: the download resumes what the last attempt left in staging.
// An upload cannot be retried: its files went when its job failed.
func (s *Service) Retry(jobID string, newJob NewJobFunc) (*store.Image, *store.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.store.GetJob(jobID)
	if err != nil {
		return nil, nil, err
	}
	if old.State != store.JobFailed && old.State != store.JobCanceled {
		return nil, nil, fmt.Errorf("job %s is %s: only a failed or canceled job can be retried: %w", jobID, old.State, store.ErrConflict)
	}
	if old.ImageID == "" {
		return nil, nil, fmt.Errorf("job %s belongs to no image: run it again from its page: %w", jobID, store.ErrConflict)
	}
	img, err := s.store.GetImage(old.ImageID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, fmt.Errorf("the image of job %s was deleted: %w", jobID, store.ErrConflict)
	}
	if err != nil {
		return nil, nil, err
	}
	if img.Origin == store.OriginUpload {
		return nil, nil, fmt.Errorf("an upload cannot be retried (its files were removed when it failed): upload it again: %w", store.ErrConflict)
	}
	job, err := newJob(img)
	if err != nil {
		return nil, nil, err
	}
	img, err = s.store.RestartImage(img.ID, jobID, store.StatusDownloading, job)
	if err != nil {
		return nil, nil, err
	}
	s.log.Info("Job retried", slog.String("job_id", jobID), slog.String("new_job_id", job.ID), slog.String("image_id", img.ID))
	return img, job, nil
}
