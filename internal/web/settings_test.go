package web

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/store"
)

func TestSettingsPage(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	resp, body := e.get(t, "/settings")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, want := range []string{`name="job_retention_days"`, `value="30"`, "The history holds no finished job yet",
		"CUSTOMSTREAM_SYNC_INTERVAL", "<code>6h</code>", "CUSTOMSTREAM_ADMIN_PASSWORD"} {
		assert.Contains(t, body, want)
	}

	// Two finished jobs: one 10 days old, one from today.
	now := time.Now().UTC()
	for id, age := range map[string]time.Duration{"old": 10 * 24 * time.Hour, "new": time.Hour} {
		require.NoError(t, e.Store.PutJob(&store.Job{ID: id, Type: "upstream:sync", State: store.JobRunning, CreatedAt: now.Add(-age)}))
		_, err := e.Store.FinishJob(id, store.JobSucceeded, "", nil)
		require.NoError(t, err)
		j, err := e.Store.GetJob(id)
		require.NoError(t, err)
		j.FinishedAt = now.Add(-age)
		require.NoError(t, e.Store.PutJob(j))
	}

	tests := []struct {
		name, days string
		status     int
		want       string
		left       int
	}{
		{"not a number", "a week", http.StatusBadRequest, "a whole number of days, not &#34;a week&#34;", 2},
		{"zero", "0", http.StatusBadRequest, "1 to 3650 days", 2},
		{"too long", "5000", http.StatusBadRequest, "1 to 3650 days", 2},
		{"longer", "90", http.StatusOK, "Saved.", 2},
		{"shorter prunes at once", "7", http.StatusOK, "1 finished job older than 7 days removed", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.postForm(t, "/settings", url.Values{"job_retention_days": {tt.days}})
			assert.Equal(t, tt.status, resp.StatusCode)
			assert.Contains(t, body, tt.want)
			assert.NotContains(t, body, "<html", "htmx gets the form alone")
			jobs, err := e.Store.ListJobs()
			require.NoError(t, err)
			assert.Len(t, jobs, tt.left)
		})
	}
	s, err := e.Store.GetSettings()
	require.NoError(t, err)
	assert.Equal(t, 7, s.JobRetentionDays, "refused values were not saved")
	_, body = e.get(t, "/settings")
	assert.Contains(t, body, `value="7"`)
	assert.Contains(t, body, "The history holds 1 finished job")
}
