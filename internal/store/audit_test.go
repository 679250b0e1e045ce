package store

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// appendAudit records entries at the given times, in that order.
func appendAudit(t *testing.T, s *Store, entries ...AuditEntry) {
	t.Helper()
	for i := range entries {
		require.NoError(t, s.AppendAudit(&entries[i]))
		require.NotEmpty(t, entries[i].ID)
	}
}

func auditTargets(entries []AuditEntry) []string {
	out := []string{}
	for _, e := range entries {
		out = append(out, e.Target)
	}
	return out
}

func TestAuditOrderAndPages(t *testing.T) {
	s := openTemp(t)
	base := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	var entries []AuditEntry
	for i := range 7 {
		action := "image.upload"
		if i%2 == 1 {
			action = "image.delete"
		}
		entries = append(entries, AuditEntry{Time: base.Add(time.Duration(i) * time.Minute), Actor: "admin", Action: action,
			Target: fmt.Sprint("t", i), Outcome: AuditOK})
	}
	// Same instant twice, and a clock that stepped back: both keep the
	// order they were recorded in.
	entries = append(entries, AuditEntry{Time: base.Add(6 * time.Minute), Actor: "token:ci", Action: "token.create", Target: "t7"},
		AuditEntry{Time: base.Add(-time.Hour), Actor: "admin", Action: "login", Target: "t8", Detail: "Clock Stepped Back"})
	appendAudit(t, s, entries...)

	got, next, err := s.ListAudit(AuditQuery{})
	require.NoError(t, err)
	assert.Equal(t, []string{"t8", "t7", "t6", "t5", "t4", "t3", "t2", "t1", "t0"}, auditTargets(got))
	assert.Empty(t, next)
	assert.Equal(t, base.Add(-time.Hour), got[0].Time, "the entry keeps the clock's time")

	tests := []struct {
		name   string
		q      AuditQuery
		pages  [][]string
		errors bool
	}{
		{"pages of three", AuditQuery{Limit: 3}, [][]string{{"t8", "t7", "t6"}, {"t5", "t4", "t3"}, {"t2", "t1", "t0"}}, false},
		{"pages of four", AuditQuery{Limit: 4}, [][]string{{"t8", "t7", "t6", "t5"}, {"t4", "t3", "t2", "t1"}, {"t0"}}, false},
		{"an action", AuditQuery{Action: "image.delete", Limit: 2}, [][]string{{"t5", "t3"}, {"t1"}}, false},
		{"a group", AuditQuery{Action: "image", Limit: 10}, [][]string{{"t6", "t5", "t4", "t3", "t2", "t1", "t0"}}, false},
		{"a group is a whole word", AuditQuery{Action: "imag"}, [][]string{{}}, false},
		{"text in any field, any case", AuditQuery{Text: "STEPPED"}, [][]string{{"t8"}}, false},
		{"text in the actor", AuditQuery{Text: "token:"}, [][]string{{"t7"}}, false},
		{"nothing matches", AuditQuery{Text: "nothing"}, [][]string{{}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.q
			for i, want := range tt.pages {
				got, next, err := s.ListAudit(q)
				require.NoError(t, err)
				assert.Equal(t, want, auditTargets(got), "page %d", i)
				if i == len(tt.pages)-1 {
					assert.Empty(t, next, "the last page has no next")
				} else {
					require.NotEmpty(t, next)
				}
				q.Before = next
			}
		})
	}

	t.Run("after an entry, oldest first", func(t *testing.T) {
		q := AuditQuery{After: entries[2].ID, Limit: 3}
		for i, want := range [][]string{{"t3", "t4", "t5"}, {"t6", "t7", "t8"}} {
			got, next, err := s.ListAudit(q)
			require.NoError(t, err)
			assert.Equal(t, want, auditTargets(got), "page %d", i)
			q.After = next
		}
		assert.Empty(t, q.After, "the last page has no next")
		got, _, err := s.ListAudit(AuditQuery{After: entries[8].ID})
		require.NoError(t, err)
		assert.Empty(t, got, "nothing newer than the newest")
		got, _, err = s.ListAudit(AuditQuery{After: entries[0].ID, Action: "login"})
		require.NoError(t, err)
		assert.Equal(t, []string{"t8"}, auditTargets(got), "filters apply")
	})

	for _, q := range []AuditQuery{{Before: "zz"}, {Before: "00ff"}, {After: "<script>"}, {Before: entries[0].ID, After: entries[1].ID}} {
		_, _, err := s.ListAudit(q)
		assert.ErrorIs(t, err, ErrBadCursor, "%+v", q)
	}
}

func TestAuditRetention(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		retention AuditRetention
		ages      []time.Duration // of the entries, oldest first
		want      []string
	}{
		{"at most three", AuditRetention{MaxEntries: 3}, []time.Duration{5, 4, 3, 2, 1}, []string{"4", "3", "2"}},
		{"at most a day", AuditRetention{MaxAge: 24 * time.Hour}, []time.Duration{72, 26, 23, 1}, []string{"3", "2"}},
		{"both", AuditRetention{MaxAge: 24 * time.Hour, MaxEntries: 1}, []time.Duration{48, 2, 1}, []string{"2"}},
		{"no bound", AuditRetention{}, []time.Duration{9000, 1}, []string{"1", "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTemp(t)
			s.SetAuditRetention(tt.retention)
			for i, age := range tt.ages {
				appendAudit(t, s, AuditEntry{Time: now.Add(-age * time.Hour), Action: "login", Target: fmt.Sprint(i)})
			}
			got, _, err := s.ListAudit(AuditQuery{Limit: 100})
			require.NoError(t, err)
			assert.Equal(t, tt.want, auditTargets(got))
		})
	}

	t.Run("pruned when the bounds shrink, and across a reopen", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "customstream.db")
		s, err := Open(path, time.Second)
		require.NoError(t, err)
		for i := range 10 {
			appendAudit(t, s, AuditEntry{Time: now.Add(time.Duration(i) * time.Hour), Action: "login", Target: fmt.Sprint(i)})
		}
		require.NoError(t, s.Close())
		s, err = Open(path, time.Second)
		require.NoError(t, err)
		defer s.Close()
		s.SetAuditRetention(AuditRetention{MaxAge: 5 * time.Hour, MaxEntries: 4})
		n, err := s.PruneAudit(now.Add(10 * time.Hour))
		require.NoError(t, err)
		assert.Equal(t, 6, n)
		got, _, err := s.ListAudit(AuditQuery{})
		require.NoError(t, err)
		assert.Equal(t, []string{"9", "8", "7", "6"}, auditTargets(got))
		n, err = s.PruneAudit(now.Add(13 * time.Hour))
		require.NoError(t, err)
		assert.Equal(t, 2, n, "two more are older than five hours")
		appendAudit(t, s, AuditEntry{Time: now.Add(13 * time.Hour), Action: "login", Target: "10"})
		got, _, err = s.ListAudit(AuditQuery{})
		require.NoError(t, err)
		assert.Equal(t, []string{"10", "9", "8"}, auditTargets(got), "sequence numbers go on after a reopen")
	})

	t.Run("a cursor whose entry was pruned", func(t *testing.T) {
		s := openTemp(t)
		for i := range 4 {
			appendAudit(t, s, AuditEntry{Time: now.Add(time.Duration(i) * time.Minute), Action: "login", Target: fmt.Sprint(i)})
		}
		page, next, err := s.ListAudit(AuditQuery{Limit: 3})
		require.NoError(t, err)
		require.Equal(t, []string{"3", "2", "1"}, auditTargets(page))
		s.SetAuditRetention(AuditRetention{MaxEntries: 2})
		_, err = s.PruneAudit(now)
		require.NoError(t, err)
		page, next, err = s.ListAudit(AuditQuery{Before: next})
		require.NoError(t, err)
		assert.Empty(t, page, "nothing older is left")
		assert.Empty(t, next)
	})
}

// TestAuditDefaultRetention: Open bounds the log without being told.
func TestAuditDefaultRetention(t *testing.T) {
	s := openTemp(t)
	old := time.Now().Add(-DefaultAuditMaxAge - time.Hour)
	appendAudit(t, s, AuditEntry{Time: old, Action: "login", Target: "old"}, AuditEntry{Action: "login", Target: "new"})
	got, _, err := s.ListAudit(AuditQuery{})
	require.NoError(t, err)
	assert.Equal(t, []string{"new"}, auditTargets(got))
	assert.WithinDuration(t, time.Now(), got[0].Time, time.Minute, "a zero time is now")
}
