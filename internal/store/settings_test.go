package store

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSettings(t *testing.T) {
	s := openTemp(t)
	got, err := s.GetSettings()
	require.NoError(t, err)
	assert.Equal(t, DefaultJobRetentionDays, got.JobRetentionDays, "a new server has the defaults")

	for _, days := range []int{0, -1, MaxJobRetentionDays + 1} {
		assert.Error(t, s.PutSettings(Settings{JobRetentionDays: days}), "%d days", days)
	}
	got, err = s.GetSettings()
	require.NoError(t, err)
	assert.Equal(t, DefaultJobRetentionDays, got.JobRetentionDays, "refused settings change nothing")

	require.NoError(t, s.PutSettings(Settings{JobRetentionDays: 7}))
	got, err = s.GetSettings()
	require.NoError(t, err)
	assert.Equal(t, 7, got.JobRetentionDays)
	assert.Equal(t, 7*24*time.Hour, got.JobRetention())
	assert.False(t, got.UpdatedAt.IsZero())
}

func TestPruneJobs(t *testing.T) {
	s := openTemp(t)
	now := time.Now().UTC()
	finish := func(id, state string, at time.Time) {
		t.Helper()
		_, err := s.FinishJob(id, state, "", func(img *Image) error {
			img.Status = map[string]string{JobSucceeded: StatusReady}[state]
			if img.Status == "" {
				img.Status = StatusFailed
			}
			return nil
		})
		require.NoError(t, err)
		j, err := s.GetJob(id)
		require.NoError(t, err)
		j.FinishedAt = at
		require.NoError(t, s.PutJob(j))
	}
	for _, id := range []string{"old-ok", "old-failed", "old-replaced", "new-ok", "running"} {
		img, job := newImage(id, "p-"+id, "v1")
		require.NoError(t, s.CreateImage(img, job))
	}
	finish("job-old-ok", JobSucceeded, now.AddDate(0, 0, -40))
	finish("job-old-failed", JobFailed, now.AddDate(0, 0, -40))
	finish("job-old-replaced", JobFailed, now.AddDate(0, 0, -40))
	finish("job-new-ok", JobSucceeded, now.AddDate(0, 0, -1))
	// A retried image points at its new job: the old failure may go.
	_, err := s.RestartImage("old-replaced", "job-old-replaced", StatusDownloading,
		&Job{ID: "job-retry", Type: "image:mirror", ImageID: "old-replaced", State: JobQueued, CreatedAt: now})
	require.NoError(t, err)
	// Of two old sync runs, the newer stays: the last run of each type is kept.
	for id, days := range map[string]int{"old-sync": -41, "older-sync": -50} {
		require.NoError(t, s.PutJob(&Job{ID: id, Type: "upstream:sync", State: JobRunning, CreatedAt: now.AddDate(0, 0, days)}))
		finish(id, JobSucceeded, now.AddDate(0, 0, days))
	}

	n, err := s.PruneJobs(now.AddDate(0, 0, -30))
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	jobs, err := s.ListJobs()
	require.NoError(t, err)
	var left []string
	for _, j := range jobs {
		left = append(left, j.ID)
	}
	assert.ElementsMatch(t, []string{"job-old-failed", "job-new-ok", "job-running", "job-retry", "old-sync"}, left,
		"old finished jobs go; recent and unfinished ones, a failed image's last job and each type's last run stay")
}

func TestScheduleSinceIsSavedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customstream.db")
	s, err := Open(path, time.Second)
	require.NoError(t, err)
	first, err := s.ScheduleSince()
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), first, time.Minute)
	require.NoError(t, s.Close())
	s, err = Open(path, time.Second)
	require.NoError(t, err)
	defer s.Close()
	again, err := s.ScheduleSince()
	require.NoError(t, err)
	assert.True(t, first.Equal(again), "a restart keeps the first start")
}
