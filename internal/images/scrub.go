package images

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/customstream/customstream/internal/blobs"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/units"
)

// BlobRef is one blob a scrub checks: every ready version's file, once
// however many versions share it.
type BlobRef struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// DamagedBlob is a blob a scrub found wrong: its content no longer has its
// sha256, it is shorter or longer than recorded, or it is gone.
type DamagedBlob struct {
	SHA256 string `json:"sha256"`
	// Problem says what is wrong, for people: "sha256 mismatch",
	// "missing", "size 10 B, expected 20 B".
	Problem string `json:"problem"`
	// File is the damaged file as the worker read it; zero when it was
	// missing. Only that file is removed: a fresh copy put in place since
	// is not damaged.
	File blobs.FileID `json:"file,omitempty"`
}

// ScrubResult is what a scrub job reports; Error is set when it failed.
type ScrubResult struct {
	Error   string        `json:"error,omitempty"`
	Files   int           `json:"files"`
	Bytes   int64         `json:"bytes"`
	Damaged []DamagedBlob `json:"damaged,omitempty"`
}

// Summary is the scrub's result line: "12 files, 3.2 GiB checked, 1 damaged".
func (r ScrubResult) Summary() string {
	return fmt.Sprintf("%d file%s, %s checked, %d damaged", r.Files, plural(r.Files), units.Bytes(r.Bytes), len(r.Damaged))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// ScrubBlobs lists the blobs of every ready version, by sha256, and their
// total size.
func ScrubBlobs(imgs []store.Image) ([]BlobRef, int64) {
	seen := map[string]bool{}
	var refs []BlobRef
	var total int64
	for _, img := range imgs {
		if img.Status != store.StatusReady {
			continue
		}
		for _, it := range img.Items {
			if it.SHA256 == "" || seen[it.SHA256] {
				continue
			}
			seen[it.SHA256] = true
			refs = append(refs, BlobRef{SHA256: it.SHA256, Size: it.Size})
			total += it.Size
		}
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].SHA256 < refs[j].SHA256 })
	return refs, total
}

// NewScrubFunc builds the job record of a scrub over blobs.
type NewScrubFunc func(blobs []BlobRef, total int64) (*store.Job, error)

// CreateScrub records a scrub of every ready version's blobs. While one is
// unfinished it returns that one and false: two scrubs would read every
// file twice for nothing.
func (s *Service) CreateScrub(newJob NewScrubFunc) (*store.Job, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	imgs, err := s.store.ListImages()
	if err != nil {
		return nil, false, err
	}
	job, err := newJob(ScrubBlobs(imgs))
	if err != nil {
		return nil, false, err
	}
	pending, err := s.store.UnfinishedJobs()
	if err != nil {
		return nil, false, err
	}
	for i := range pending {
		if pending[i].Type == job.Type {
			return &pending[i], false, nil
		}
	}
	if err := s.store.PutJob(job); err != nil {
		return nil, false, err
	}
	s.log.Info("Scrub queued", slog.String("job_id", job.ID), slog.String("title", job.Title))
	return job, true, nil
}

// RecordScrub applies a scrub's result. Every ready version that uses a
// damaged blob (dedup: several may share one) leaves the stream at once: a
// mirrored one is downloaded again with a new job from redownload (returned
// for the caller to enqueue), an upload or an import is marked damaged until
// an admin deletes it or uploads it again. The damaged blob files are
// removed, so neither the download nor a new upload of the same content
// takes the bad copy for a good one; a blob replaced by a fresh copy since
// the worker read it is left alone. A second result for the job is ignored.
func (s *Service) RecordScrub(jobID string, res ScrubResult, redownload NewJobFunc) ([]store.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobEnded = true
	// The damaged files go first: a download or upload must not take one
	// for a good copy. A removal that fails records nothing, so the result
	// is retried.
	problems := map[string]string{}
	for _, d := range res.Damaged {
		gone, err := s.blobs.RemoveDamaged(d.SHA256, d.File)
		if err != nil {
			return nil, fmt.Errorf("record scrub %s: %w", jobID, err)
		}
		if !gone {
			s.log.Info("A damaged blob was replaced by a fresh copy since the scrub read it", slog.String("sha256", d.SHA256))
			continue
		}
		problems[d.SHA256] = d.Problem
	}
	var reports []string
	changed, started, err := s.store.FinishScrub(jobID, func(img *store.Image) (bool, *store.Job, error) {
		// A version on its way has no blobs to lose yet; a damaged or
		// failed one is out of the stream already.
		if img.Status != store.StatusReady || len(problems) == 0 {
			return false, nil, nil
		}
		var bad []string
		for _, it := range img.Items {
			if p, ok := problems[it.SHA256]; ok {
				bad = append(bad, fmt.Sprintf("%s on %s", p, it.Name))
			}
		}
		if len(bad) == 0 {
			return false, nil, nil
		}
		damage := "damaged: " + strings.Join(bad, ", ")
		if !redownloadable(img) {
			img.Status, img.Error = store.StatusDamaged, damage+": delete it or upload it again"
			reports = append(reports, fmt.Sprintf("%s %s (%s; out of the stream)", img.ProductID, img.VersionName, strings.Join(bad, ", ")))
			return true, nil, nil
		}
		job, err := redownload(img)
		if err != nil {
			return false, nil, err
		}
		img.Status, img.Error, img.JobID = store.StatusDownloading, damage+"; downloading it again", job.ID
		reports = append(reports, fmt.Sprintf("%s %s (%s; downloading it again)", img.ProductID, img.VersionName, strings.Join(bad, ", ")))
		return true, job, nil
	}, func(job *store.Job) {
		if res.Error != "" {
			job.State, job.Error = store.JobFailed, res.Error
			return
		}
		job.State, job.Result = store.JobSucceeded, res.Summary()
		// The scrub did its work, but damage is what the admin must see:
		// the job shows as failed, with what was found.
		if len(reports) > 0 {
			job.State, job.Error = store.JobFailed, strings.Join(reports, "; ")
		} else if len(res.Damaged) > 0 {
			job.Result += " (no longer used by any version)"
		}
	})
	if err != nil {
		if errors.Is(err, store.ErrFinished) {
			// Either a retried job reported twice, or recording worked but
			// the publish after it failed: publishing again covers both.
			s.log.Info("Ignored a second result", slog.String("job_id", jobID))
			return nil, s.republish()
		}
		return nil, fmt.Errorf("record scrub %s: %w", jobID, err)
	}
	for _, img := range changed {
		s.log.Warn("Damaged version taken out of the stream", slog.String("image_id", img.ID), slog.String("product_id", img.ProductID),
			slog.String("version_name", img.VersionName), slog.String("status", img.Status), slog.String("error", img.Error))
	}
	s.log.Info("Scrub recorded", slog.String("job_id", jobID), slog.String("result", res.Summary()), slog.Int("versions_damaged", len(changed)))
	// Even with nothing damaged: the blobs of versions deleted while the
	// scrub ran waited for it (no collection while a job runs).
	return started, s.republish()
}

// redownloadable reports whether img came from an upstream that still
// names every file: uploads and imports exist nowhere else.
func redownloadable(img *store.Image) bool {
	if img.Origin == store.OriginUpload || IsImport(img.Origin) {
		return false
	}
	for _, it := range img.Items {
		if it.Source == "" || it.Expected == "" {
			return false
		}
	}
	return true
}
