package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/auth"
	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/jobs"
)

// auditEntries returns every audit entry, newest first.
func (e *testEnv) auditEntries(t *testing.T) []store.AuditEntry {
	t.Helper()
	entries, _, err := e.Store.ListAudit(store.AuditQuery{Limit: 1 << 20})
	require.NoError(t, err)
	return entries
}

// anonymous sends a form without a session, as a browser at the login page.
func (e *testEnv) anonymous(t *testing.T, method, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cookie", "other=1")
	return doRaw(t, e.app, req)
}

// TestAuditRecordsEveryAction drives each admin action through its real
// route, from the portal and from the API, and checks that it writes one
// entry naming who did what to what, and how it ended.
func TestAuditRecordsEveryAction(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	tree, srv := newUpstream(t)
	index := srv.URL + "/streams/v1/index.json"
	products := bootProducts(tree)
	require.GreaterOrEqual(t, len(products), 2)
	const admin, token = auth.AdminUser, "token:" + envTokenName

	// What earlier steps made, for later ones.
	var portalImage, apiImage uploadAnswer
	var mirrorJob, retriedJob, apiTokenValue string
	decode := func(body string, v any) { require.NoError(t, json.Unmarshal([]byte(body), v), body) }
	api := func(method, path string) (*http.Response, string) {
		return e.do(t, withToken(httptest.NewRequest(method, path, nil)))
	}
	failMirror := func(jobID *string) func() {
		return func() {
			require.NoError(t, e.Images.RecordResult(*jobID, images.JobResult{Error: "upstream said 503"}))
		}
	}
	jammy := append([]part{{"os", "ubuntu"}, {"release", "jammy"}, {"arch", "amd64"}}, part{"version", "22.04"})

	steps := []struct {
		name    string
		prepare func()
		do      func() (*http.Response, string)
		status  int
		// The entry: actor, action and outcome exactly; target and detail
		// contain these.
		actor, action, outcome, target, detail string
	}{
		{name: "upload from the portal", do: func() (*http.Response, string) {
			resp, body := e.upload(t, "/images/upload", bootFields(), bootFileParts(), "HX-Request", "true")
			imgs, err := e.Store.ListImages()
			require.NoError(t, err)
			require.Len(t, imgs, 1)
			portalImage.Image.ID, portalImage.Job.ID = imgs[0].ID, imgs[0].JobID
			return resp, body
		}, status: 202, actor: admin, action: auditUpload, outcome: store.AuditOK, target: "noble", detail: "files"},
		{name: "upload through the API", do: func() (*http.Response, string) {
			resp, body := e.upload(t, "/api/images/upload", jammy, bootFileParts())
			decode(body, &apiImage)
			return resp, body
		}, status: 202, actor: token, action: auditUpload, outcome: store.AuditOK, target: "jammy", detail: "image "},
		{name: "upload refused", do: func() (*http.Response, string) {
			return e.upload(t, "/api/images/upload", append(bootFields()[:3], part{"version", "bad version"}), bootFileParts())
		}, status: 400, actor: token, action: auditUpload, outcome: store.AuditRefused, target: "ubuntu noble amd64 bad version", detail: "version"},
		{name: "cancel a job from the portal", do: func() (*http.Response, string) {
			return e.postForm(t, "/jobs/"+apiImage.Job.ID+"/cancel", nil)
		}, status: 200, actor: admin, action: auditJobCancel, outcome: store.AuditOK, target: "jammy", detail: "Canceled"},
		{name: "remove a job through the API", do: func() (*http.Response, string) {
			return api(http.MethodDelete, "/api/jobs/"+apiImage.Job.ID)
		}, status: 200, actor: token, action: auditJobRemove, outcome: store.AuditOK, target: "jammy", detail: "Removed"},
		{name: "cancel a job through the API", do: func() (*http.Response, string) {
			return api(http.MethodPost, "/api/jobs/"+portalImage.Job.ID+"/cancel")
		}, status: 200, actor: token, action: auditJobCancel, outcome: store.AuditOK, target: "noble", detail: "Canceled"},
		{name: "remove a job from the portal", do: func() (*http.Response, string) {
			return e.postForm(t, "/jobs/"+portalImage.Job.ID+"/delete", nil)
		}, status: 200, actor: admin, action: auditJobRemove, outcome: store.AuditOK, target: "noble", detail: "Removed"},
		{name: "job action refused", do: func() (*http.Response, string) {
			return api(http.MethodPost, "/api/jobs/nope/cancel")
		}, status: 404, actor: token, action: auditJobCancel, outcome: store.AuditRefused, target: "job nope", detail: "no job"},
		{name: "mirror from the portal", do: func() (*http.Response, string) {
			return e.postForm(t, "/upstream/mirror", url.Values{"url": {index}, "product_id": {products[0]}})
		}, status: 200, actor: admin, action: auditMirror, outcome: store.AuditOK, target: index, detail: products[0]},
		{name: "mirror through the API", do: func() (*http.Response, string) {
			resp, body := e.postJSON(t, "/api/images/mirror", `{"url": "`+index+`", "product_ids": ["`+products[1]+`"], "bootloaders": false}`)
			var ans struct{ Jobs []jobs.Started }
			decode(body, &ans)
			require.Len(t, ans.Jobs, 1)
			mirrorJob = ans.Jobs[0].ID
			return resp, body
		}, status: 202, actor: token, action: auditMirror, outcome: store.AuditOK, target: index, detail: "1 started"},
		{name: "retry through the API", prepare: failMirror(&mirrorJob), do: func() (*http.Response, string) {
			resp, body := api(http.MethodPost, "/api/jobs/"+mirrorJob+"/retry")
			img, err := e.Store.ListImages()
			require.NoError(t, err)
			for _, i := range img {
				if i.ProductID == products[1] {
					retriedJob = i.JobID
				}
			}
			return resp, body
		}, status: 200, actor: token, action: auditJobRetry, outcome: store.AuditOK, target: products[1], detail: "Retrying"},
		{name: "retry from the portal", prepare: failMirror(&retriedJob), do: func() (*http.Response, string) {
			return e.postForm(t, "/jobs/"+retriedJob+"/retry", nil)
		}, status: 200, actor: admin, action: auditJobRetry, outcome: store.AuditOK, target: products[1], detail: "Retrying"},
		{name: "delete from the portal", do: func() (*http.Response, string) {
			return e.postForm(t, "/images/"+portalImage.Image.ID+"/delete", nil)
		}, status: 200, actor: admin, action: auditDelete, outcome: store.AuditOK, target: "noble", detail: "image "},
		{name: "delete through the API", do: func() (*http.Response, string) {
			return api(http.MethodDelete, "/api/images/"+apiImage.Image.ID)
		}, status: 200, actor: token, action: auditDelete, outcome: store.AuditOK, target: "jammy", detail: "image "},
		{name: "delete refused", do: func() (*http.Response, string) {
			return api(http.MethodDelete, "/api/images/"+apiImage.Image.ID)
		}, status: 404, actor: token, action: auditDelete, outcome: store.AuditRefused, target: "image ", detail: "deleted already"},
		{name: "sync rule created", do: func() (*http.Response, string) {
			return e.postForm(t, "/upstream/sync-rules", url.Values{"url": {index}, "filters": {"arch=amd64 release~noble"}, "bootloaders": {"1"}})
		}, status: 200, actor: admin, action: auditSyncRuleCreate, outcome: store.AuditOK, target: index, detail: "filters: arch=amd64 release~noble; with bootloaders"},
		{name: "sync now", do: func() (*http.Response, string) {
			return e.postForm(t, "/upstream/sync", nil)
		}, status: 200, actor: admin, action: auditSyncRun, outcome: store.AuditOK, target: "every sync rule"},
		{name: "sync rule deleted", do: func() (*http.Response, string) {
			rules, err := e.Store.ListSyncRules()
			require.NoError(t, err)
			require.Len(t, rules, 1)
			return e.postForm(t, "/upstream/sync-rules/"+rules[0].ID+"/delete", nil)
		}, status: 200, actor: admin, action: auditSyncRuleDelete, outcome: store.AuditOK, target: index, detail: "release~noble"},
		{name: "token created", do: func() (*http.Response, string) {
			resp, body := e.postForm(t, "/tokens", url.Values{"name": {"ci pipeline"}})
			apiTokenValue = between(body, `id="new-token" readonly value="`, `"`)
			require.NotEmpty(t, apiTokenValue)
			return resp, body
		}, status: 200, actor: admin, action: auditTokenCreate, outcome: store.AuditOK, target: "ci pipeline", detail: "starts with cst_"},
		{name: "a portal token acts under its name", do: func() (*http.Response, string) {
			req := httptest.NewRequest(http.MethodDelete, "/api/images/nope", nil)
			req.Header.Set("Authorization", "Bearer "+apiTokenValue)
			return doRaw(t, e.app, req)
		}, status: 404, actor: "token:ci pipeline", action: auditDelete, outcome: store.AuditRefused, target: "nope"},
		{name: "token revoked", do: func() (*http.Response, string) {
			tokens, err := e.Store.ListAPITokens()
			require.NoError(t, err)
			require.Len(t, tokens, 1)
			return e.postForm(t, "/tokens/"+tokens[0].ID+"/delete", nil)
		}, status: 200, actor: admin, action: auditTokenRevoke, outcome: store.AuditOK, target: "ci pipeline"},
		{name: "settings changed", do: func() (*http.Response, string) {
			return e.postForm(t, "/settings", url.Values{"job_retention_days": {"14"}})
		}, status: 200, actor: admin, action: auditSettings, outcome: store.AuditOK, target: "job history retention", detail: "14 days, was 30"},
		{name: "settings refused", do: func() (*http.Response, string) {
			return e.postForm(t, "/settings", url.Values{"job_retention_days": {"0"}})
		}, status: 400, actor: admin, action: auditSettings, outcome: store.AuditRefused, target: "job history retention", detail: "0 days"},
		{name: "scrub from the portal", do: func() (*http.Response, string) {
			return e.postForm(t, "/jobs/scrub", nil)
		}, status: 200, actor: admin, action: auditScrub, outcome: store.AuditOK, target: "Re-hash"},
		{name: "scrub again through the API", do: func() (*http.Response, string) {
			return api(http.MethodPost, "/api/scrub")
		}, status: 200, actor: token, action: auditScrub, outcome: store.AuditRefused, target: "Re-hash", detail: "already queued"},
		{name: "log out", do: func() (*http.Response, string) {
			id, sess, err := (&auth.Sessions{Store: e.Store, Admin: e.admin}).Open(auth.AdminUser, "192.0.2.9")
			require.NoError(t, err)
			req := httptest.NewRequest(http.MethodPost, "/logout", nil)
			req.Header.Set("Cookie", sessionCookie+"="+id)
			req.Header.Set(csrfHeader, sess.CSRF)
			return doRaw(t, e.app, req)
		}, status: 303, actor: admin, action: auditLogout, outcome: store.AuditOK, target: admin},
		{name: "log in", do: func() (*http.Response, string) {
			return e.anonymous(t, http.MethodPost, "/login", url.Values{"user": {"admin"}, "password": {testPassword}})
		}, status: 303, actor: admin, action: auditLogin, outcome: store.AuditOK, target: admin},
		{name: "log in with a wrong password", do: func() (*http.Response, string) {
			return e.anonymous(t, http.MethodPost, "/login", url.Values{"user": {"admin"}, "password": {"guess-0-wrong"}})
		}, status: 401, actor: "", action: auditLogin, outcome: store.AuditFailed, target: admin, detail: "wrong user name or password"},
		{name: "log in refused after too many failures", prepare: func() {
			for i := 1; i < loginFailures; i++ {
				resp, _ := e.anonymous(t, http.MethodPost, "/login", url.Values{"user": {"root"}, "password": {fmt.Sprint("guess-", i, "-wrong")}})
				require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			}
		}, do: func() (*http.Response, string) {
			return e.anonymous(t, http.MethodPost, "/login", url.Values{"user": {"admin"}, "password": {testPassword}})
		}, status: 429, actor: "", action: auditLogin, outcome: store.AuditRefused, target: admin, detail: "too many failed logins"},
	}
	seen := map[string]bool{}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.prepare != nil {
				st.prepare()
			}
			before := len(e.auditEntries(t))
			resp, body := st.do()
			require.Equal(t, st.status, resp.StatusCode, body)
			entries := e.auditEntries(t)
			require.Len(t, entries, before+1, "one entry per action")
			got := entries[0]
			assert.Equal(t, st.actor, got.Actor)
			assert.Equal(t, st.action, got.Action)
			assert.Equal(t, st.outcome, got.Outcome)
			assert.Contains(t, got.Target, st.target)
			assert.Contains(t, got.Detail, st.detail)
			assert.NotEmpty(t, got.Remote, "the client's address")
			assert.WithinDuration(t, time.Now(), got.Time, time.Minute)
			seen[got.Action] = true
		})
	}

	// Further refusals in the same lock-out are not recorded one by one.
	before := len(e.auditEntries(t))
	for range 3 {
		resp, _ := e.anonymous(t, http.MethodPost, "/login", url.Values{"user": {"admin"}, "password": {testPassword}})
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	}
	assert.Len(t, e.auditEntries(t), before, "a flood of refused logins cannot push the log out")

	// Every action the audit page offers is covered here (the password
	// change by its own test).
	for _, g := range auditGroups {
		for _, a := range g.Actions {
			if a.Value != auditPasswordChanged {
				assert.True(t, seen[a.Value], "no step records %s", a.Value)
			}
		}
	}
	// No secret is recorded: not the password, not a token.
	all, err := json.Marshal(e.auditEntries(t))
	require.NoError(t, err)
	for _, secret := range []string{testPassword, testToken, apiTokenValue, "guess-"} {
		assert.NotContains(t, string(all), secret)
	}
}

// TestAuditNoticesPasswordChange: a password changed outside the portal
// shows when a session opened before it comes back.
func TestAuditNoticesPasswordChange(t *testing.T) {
	e := newTestEnv(t, 1<<20, func(d *Deps) {
		admin, err := auth.LoadAdmin(d.Config.DataDir, "", d.Log)
		require.NoError(t, err)
		d.Admin = admin
	})
	resp, _ := e.get(t, "/images")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, e.auditEntries(t))

	require.NoError(t, auth.SetPassword(e.Dir, "a new long password"))
	resp, _ = e.get(t, "/images")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "the session has ended")
	entries := e.auditEntries(t)
	require.Len(t, entries, 1)
	assert.Equal(t, auditPasswordChanged, entries[0].Action)
	assert.Equal(t, auth.AdminUser, entries[0].Target)
	assert.Empty(t, entries[0].Actor, "who changed it is not known")
	resp, _ = e.get(t, "/images")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Len(t, e.auditEntries(t), 1, "noticed once per session")
}

// brokenAudit fails every write.
type brokenAudit struct{}

func (brokenAudit) AppendAudit(*store.AuditEntry) error { return errors.New("disk on fire") }

// syncBuffer is a log the handlers write while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestAuditFailureDoesNotFailTheAction: an audit log that cannot be
// written is logged at ERROR, and the action goes on.
func TestAuditFailureDoesNotFailTheAction(t *testing.T) {
	var logs syncBuffer
	e := newTestEnv(t, 1<<20, func(d *Deps) {
		d.Audit = brokenAudit{}
		d.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	resp, body := e.upload(t, "/api/images/upload", bootFields(), bootFileParts())
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	var ans uploadAnswer
	require.NoError(t, json.Unmarshal([]byte(body), &ans))
	imgs, err := e.Store.ListImages()
	require.NoError(t, err)
	assert.Len(t, imgs, 1, "the upload is recorded")

	resp, body = e.postForm(t, "/tokens", url.Values{"name": {"ci"}})
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, body, `id="new-token"`)
	resp, body = e.anonymous(t, http.MethodPost, "/login", url.Values{"user": {"admin"}, "password": {testPassword}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	resp, body = e.do(t, withToken(httptest.NewRequest(http.MethodDelete, "/api/images/"+ans.Image.ID, nil)))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)

	out := logs.String()
	assert.Equal(t, 4, strings.Count(out, `level=ERROR msg="Unable to record an audit entry"`), out)
	assert.Contains(t, out, "action=token.create")
	assert.Contains(t, out, "disk on fire")
	assert.NotContains(t, out, testPassword)
}

// TestAuditPage: the portal page and its regions, filtered and paged.
func TestAuditPage(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	resp, body := e.get(t, "/audit")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "Nothing recorded yet", "an empty state that says what comes here")
	assert.Contains(t, body, `href="/audit">Audit log</a>`, "in the navigation")
	assert.Contains(t, body, "keeps 365 days and at most\n100,000 entries")

	now := time.Now().UTC()
	add := func(e *testEnv, entry store.AuditEntry) {
		require.NoError(t, e.Store.AppendAudit(&entry))
	}
	for i := range 60 {
		add(e, store.AuditEntry{Time: now.Add(time.Duration(i-70) * time.Minute), Actor: "admin", Action: auditUpload, Outcome: store.AuditOK,
			Target: fmt.Sprintf("custom:ubuntu:noble v%02d", i), Remote: "192.0.2.7"})
	}
	add(e, store.AuditEntry{Time: now.Add(-3 * time.Hour), Actor: "", Action: auditLogin, Outcome: store.AuditFailed,
		Target: hostile, Detail: "wrong user name or password", Remote: "198.51.100.4"})
	add(e, store.AuditEntry{Time: now.Add(-2 * time.Hour), Actor: "token:" + hostile, Action: auditTokenRevoke, Outcome: store.AuditOK,
		Target: "ci", Detail: hostile, Remote: "192.0.2.7"})

	t.Run("newest first, a page at a time", func(t *testing.T) {
		resp, body := e.get(t, "/audit")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		_, body, _ = strings.Cut(body, `id="audit-rows"`)
		assert.Equal(t, auditPageSize, strings.Count(body, "<tr>")-1, "a page of rows under the header")
		assert.Contains(t, body, "token.revoke")
		assert.Less(t, strings.Index(body, "token.revoke"), strings.Index(body, "session.login"), "newest first")
		assert.Contains(t, body, "v59")
		assert.NotContains(t, body, "v09", "on the next page")
		assert.Contains(t, body, now.Add(-2*time.Hour).Format("2006-01-02 15:04:05"), "the time in UTC")
		assert.Contains(t, body, "2 hours ago")
		assert.Contains(t, body, "not logged in")
		more := between(body, `id="audit-more"`, `hx-target`)
		more = between(more, `hx-get="`, `"`)
		require.Contains(t, more, "/audit/rows?")
		more = strings.ReplaceAll(more, "&amp;", "&")

		resp, rows := e.get(t, more, "HX-Request", "true")
		require.Equal(t, http.StatusOK, resp.StatusCode, rows)
		assert.NotContains(t, rows, `id="audit-rows"`, "only the next rows")
		assert.NotContains(t, rows, "<html")
		assert.Equal(t, 12, strings.Count(rows, "<tr>"))
		assert.Contains(t, rows, "v00")
		assert.NotContains(t, rows, "v59")
		assert.NotContains(t, rows, `id="audit-more"`, "the last page")

		resp, page := e.get(t, strings.Replace(more, "/audit/rows", "/audit", 1))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, page, "<html", "without JavaScript the link opens the older page")
		assert.Contains(t, page, "v00")
	})

	t.Run("markup is shown as text", func(t *testing.T) {
		_, body := e.get(t, "/audit?q="+url.QueryEscape("<script>"))
		assert.NotContains(t, body, "<script>alert")
		assert.NotContains(t, body, "<img src=x")
		assert.Contains(t, body, "&lt;script&gt;alert(1)&lt;/script&gt;")
		assert.Equal(t, 2, strings.Count(body, "<tr>")-1)
	})

	tests := []struct {
		name, query string
		status      int
		want, not   []string
	}{
		{"an action", "action=" + auditTokenRevoke, 200, []string{"token.revoke"}, []string{"session.login", "image.upload"}},
		{"a group", "action=session", 200, []string{"session.login"}, []string{"token.revoke"}},
		{"free text", "q=198.51.100", 200, []string{"session.login"}, []string{"token.revoke"}},
		{"nothing matches", "action=job&q=x", 200, []string{"No entry matches", `href="/audit">show every entry`}, []string{"<table"}},
		{"a bad action", "action=" + url.QueryEscape("<b>"), 400, []string{"action: want an action"}, nil},
		{"a bad cursor", "before=zz", 400, []string{"before, after: want the id of an entry"}, nil},
		{"a long search", "q=" + strings.Repeat("x", 201), 400, []string{"at most 200"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.get(t, "/audit/rows?"+tt.query, "HX-Request", "true")
			assert.Equal(t, tt.status, resp.StatusCode, body)
			assert.NotContains(t, body, "<html")
			for _, w := range tt.want {
				assert.Contains(t, body, w)
			}
			for _, n := range tt.not {
				assert.NotContains(t, body, n)
			}
		})
	}
}

// TestAuditAPI: GET /api/audit pages through the same filters as JSON.
func TestAuditAPI(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	get := func(query string) (*http.Response, string) {
		return e.do(t, withToken(httptest.NewRequest(http.MethodGet, "/api/audit?"+query, nil)))
	}
	var page struct {
		Entries []store.AuditEntry `json:"entries"`
		Next    string             `json:"next"`
	}
	resp, body := get("")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.NoError(t, json.Unmarshal([]byte(body), &page))
	assert.Empty(t, page.Entries)
	assert.Contains(t, body, `"entries":[]`, "an empty list, not null")

	for i := range 5 {
		resp, body := e.postForm(t, "/tokens", url.Values{"name": {fmt.Sprint("token-", i)}})
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
	}
	// follow reads the pages of query from the cursor's first value, each
	// next passed as the cursor, and returns their entries' targets.
	follow := func(query, cursor, from string) []string {
		var targets []string
		for next := from; ; {
			q := query
			if next != "" {
				q += "&" + cursor + "=" + next
			}
			resp, body := get(q)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			page.Next = ""
			require.NoError(t, json.Unmarshal([]byte(body), &page))
			for _, en := range page.Entries {
				targets = append(targets, en.Target)
				assert.Equal(t, "admin", en.Actor)
				assert.Equal(t, store.AuditOK, en.Outcome)
				assert.NotEmpty(t, en.Remote)
			}
			if page.Next == "" {
				return targets
			}
			next = page.Next
		}
	}
	assert.Equal(t, []string{"token-4", "token-3", "token-2", "token-1", "token-0"}, follow("limit=2&action=token", "before", ""))
	resp, body = get("limit=1000")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, body, `"remote_addr"`)
	require.NoError(t, json.Unmarshal([]byte(body), &page))
	require.Len(t, page.Entries, 5)

	// A collector reads forward from the last entry it has, oldest first.
	have := page.Entries[2].ID // token-2
	names := follow("limit=1", "after", have)
	assert.Equal(t, []string{"token-3", "token-4"}, names)
	resp, body = e.postForm(t, "/tokens", url.Values{"name": {"token-5"}})
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	resp, body = get("after=" + page.Entries[len(page.Entries)-1].ID)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.NoError(t, json.Unmarshal([]byte(body), &page))
	require.Len(t, page.Entries, 1, "only what came since")
	assert.Equal(t, "token-5", page.Entries[0].Target)

	both := "before=" + page.Entries[0].ID + "&after=" + page.Entries[0].ID
	for _, bad := range []string{"limit=0", "limit=1001", "limit=x", "before=xyz", "after=00", both, "action=" + url.QueryEscape("a b")} {
		resp, body := get(bad)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, bad)
		assert.Contains(t, body, `"error"`)
	}
}

func TestAuditHidesURLCredentials(t *testing.T) {
	tests := map[string]string{
		"https://user:s3cret@mirror.example/streams/v1/index.json": "https://xxxxx@mirror.example/streams/v1/index.json",
		"1 started from http://token@10.0.0.1:8080/ and more":      "1 started from http://xxxxx@10.0.0.1:8080/ and more",
		"http://mirror.example/a@b":                                "http://mirror.example/a@b",
		"no url, mail admin@example.com":                           "no url, mail admin@example.com",
	}
	for in, want := range tests {
		assert.Equal(t, want, redactURLs(in), in)
	}
}
