package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type auditPage struct {
	Entries []struct {
		Actor, Action, Target, Outcome string
		Remote                         string `json:"remote_addr"`
	} `json:"entries"`
	Next string `json:"next"`
}

// TestAuditLogOfTheRealServer: the binary records actions, keeps them
// across a restart, and applies a lowered CUSTOMSTREAM_AUDIT_MAX_ENTRIES
// at start.
func TestAuditLogOfTheRealServer(t *testing.T) {
	integration(t)
	t.Parallel()
	all := startServer(t, "all", t.TempDir(), testToken, "")
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range 120 {
		req, err := http.NewRequest(http.MethodDelete, fmt.Sprintf("%s/api/images/gone-%d", all.Base(), i), nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
	}
	resp, err := client.PostForm(all.Base()+"/login", url.Values{"user": {"admin"}, "password": {"not the password"}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	read := func() auditPage {
		var page auditPage
		getJSON(t, client, all.Base()+"/api/audit?limit=1000", testToken, &page)
		return page
	}
	page := read()
	require.Len(t, page.Entries, 121)
	assert.Equal(t, "session.login", page.Entries[0].Action)
	assert.Equal(t, "failed", page.Entries[0].Outcome)
	assert.Equal(t, "127.0.0.1", page.Entries[0].Remote)
	assert.Equal(t, "image.delete", page.Entries[1].Action)
	assert.Equal(t, "token:CUSTOMSTREAM_API_TOKEN", page.Entries[1].Actor)
	assert.True(t, strings.HasSuffix(page.Entries[1].Target, "gone-119"), page.Entries[1].Target)

	all.proc.stop(t)
	all.extra = append(all.extra, "CUSTOMSTREAM_AUDIT_MAX_ENTRIES=100")
	all.start(t)
	page = read()
	require.Len(t, page.Entries, 100, "pruned at start")
	assert.Equal(t, "session.login", page.Entries[0].Action, "the newest stay")
	assert.True(t, strings.HasSuffix(page.Entries[99].Target, "gone-21"), page.Entries[99].Target)
}
