package web

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/store"
)

// publicRoutes are the routes anyone may use: they only read (and log in).
var publicRoutes = map[string]bool{
	"GET /streams/v1/:doc": true, "GET /uploads/*": true, "GET /mirror/*": true,
	"GET /keyring.gpg": true, "GET /keyring.asc": true, "GET /healthz": true, "GET /metrics": true,
	"GET /login": true, "POST /login": true,
}

// routePath fills a route's parameters with something that matches.
func routePath(p string) string {
	p = strings.ReplaceAll(p, ":doc", "index.json")
	p = strings.ReplaceAll(p, ":id", "some-id")
	return strings.ReplaceAll(p, "*", "some/file")
}

// snapshot lists every file of the data directory but the database (whose
// pages move on reads) with its size and content, and every record the
// store lists: what a request could change.
func snapshot(t *testing.T, e *testEnv) string {
	t.Helper()
	var b strings.Builder
	require.NoError(t, filepath.WalkDir(e.Dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if d.IsDir() || strings.HasSuffix(p, ".db") {
			return nil
		}
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		fmt.Fprintf(&b, "%s %d %x\n", strings.TrimPrefix(p, e.Dir), len(data), sha256.Sum256(data))
		return nil
	}))
	imgs, err := e.Store.ListImages()
	require.NoError(t, err)
	for i := range imgs {
		fmt.Fprintf(&b, "image %s %s %s %d items\n", imgs[i].ID, imgs[i].ProductID, imgs[i].Status, len(imgs[i].Items))
	}
	rules, err := e.Store.ListSyncRules()
	require.NoError(t, err)
	tokens, err := e.Store.ListAPITokens()
	require.NoError(t, err)
	jobs, err := e.Store.UnfinishedJobs()
	require.NoError(t, err)
	audit, _, err := e.Store.ListAudit(store.AuditQuery{Limit: 1 << 20})
	require.NoError(t, err)
	fmt.Fprintf(&b, "rules %+v\ntokens %+v\njobs %d\naudit entries %d\n", rules, tokens, len(jobs), len(audit))
	return b.String()
}

// TestEveryRouteNeedsAccess walks the route table: every route that is not
// public refuses a request without a session or token, and every portal
// route that changes state refuses a session's request without its CSRF
// token; none of these requests changes anything.
func TestEveryRouteNeedsAccess(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	e.readyBootImage(t)
	rule := &store.SyncRule{ID: "some-id", URL: "http://example.com/streams/v1/index.json", Filters: []string{"arch=amd64"}}
	require.NoError(t, e.Store.PutSyncRule(rule))
	imgs, err := e.Store.ListImages()
	require.NoError(t, err)
	require.Len(t, imgs, 1)
	before := snapshot(t, e)

	routes := e.app.GetRoutes(true)
	var walked []string
	for _, r := range routes {
		key := r.Method + " " + r.Path
		if r.Method == http.MethodHead {
			continue // Fiber's HEAD twin of a GET: checked with the GET.
		}
		walked = append(walked, key)
		path := strings.ReplaceAll(routePath(r.Path), "some-id", imgs[0].ID)
		if strings.Contains(r.Path, "sync-rules") {
			path = routePath(r.Path)
		}
		if publicRoutes[key] {
			assert.Contains(t, []string{http.MethodGet, "POST /login"}, map[bool]string{true: key, false: r.Method}[r.Method == http.MethodPost],
				"%s is public but changes state", key)
			continue
		}
		t.Run(key, func(t *testing.T) {
			for _, who := range []string{"nobody", "stale cookie", "wrong token"} {
				req := httptest.NewRequest(r.Method, path, strings.NewReader("name=x&url=http://example.com/"))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				switch who {
				case "nobody":
					req.Header.Set("Cookie", "other=1")
				case "stale cookie":
					req.Header.Set("Cookie", sessionCookie+"=not-a-session")
					req.Header.Set(csrfHeader, e.csrf)
				case "wrong token":
					req.Header.Set("Cookie", "other=1")
					req.Header.Set("Authorization", "Bearer cst_not-a-token-at-all")
				}
				resp, body := doRaw(t, e.app, req)
				if strings.HasPrefix(r.Path, "/api/") {
					assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s: %s", who, body)
				} else if r.Method == http.MethodGet {
					assert.Equal(t, http.StatusSeeOther, resp.StatusCode, "%s: %s", who, body)
					assert.True(t, strings.HasPrefix(resp.Header.Get("Location"), "/login?next="), resp.Header.Get("Location"))
				} else {
					assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s: %s", who, body)
				}
			}
			if r.Method != http.MethodGet && !strings.HasPrefix(r.Path, "/api/") {
				for _, token := range []string{"", "wrong-" + e.csrf} {
					req := httptest.NewRequest(r.Method, path, strings.NewReader("name=x&"+csrfField+"="+token))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.Header.Set("Cookie", e.cookie)
					resp, body := doRaw(t, e.app, req)
					assert.Equal(t, http.StatusForbidden, resp.StatusCode, "CSRF token %q: %s", token, body)
				}
			}
		})
	}
	assert.Equal(t, before, snapshot(t, e), "a refused request changed the data")
	// The walk must cover the portal, the API and the public routes.
	sort.Strings(walked)
	for _, want := range []string{"POST /images/upload", "DELETE /api/images/:id", "POST /tokens", "GET /streams/v1/:doc", "POST /logout"} {
		assert.Contains(t, walked, want)
	}
}

func TestLoginAndLogout(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	anon := func(method, path, body string, headers ...string) (*http.Response, string) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		if req.Header.Get("Cookie") == "" {
			req.Header.Set("Cookie", "other=1")
		}
		return doRaw(t, e.app, req)
	}

	resp, _ := anon("GET", "/upstream?url=x", "")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/login?next="+url.QueryEscape("/upstream?url=x"), resp.Header.Get("Location"))
	resp, body := anon("GET", "/images/rows", "", "HX-Request", "true")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Equal(t, "/login", resp.Header.Get("HX-Redirect"), "htmx loads the login page")

	resp, body = anon("GET", "/login", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, `name="password"`)
	assert.NotContains(t, body, `href="/upstream"`, "no portal navigation before login")

	tests := []struct {
		name, form string
		status     int
		want       string
	}{
		{"wrong password", "user=admin&password=nope", http.StatusUnauthorized, "Wrong user name or password."},
		{"wrong user", "user=root&password=" + url.QueryEscape(testPassword), http.StatusUnauthorized, "Wrong user name or password."},
		{"empty", "", http.StatusUnauthorized, "Wrong user name or password."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := anon("POST", "/login", tt.form+"&next=/setup")
			assert.Equal(t, tt.status, resp.StatusCode)
			assert.Contains(t, body, tt.want)
			assert.Empty(t, resp.Header.Get("Set-Cookie"))
		})
	}

	for _, tt := range []struct {
		name, next, proto, location string
		secure                      bool
	}{
		{"plain http", "/setup", "", "/setup", false},
		{"behind an HTTPS proxy", "//evil.example/x", "https", "/", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := anon("POST", "/login", "user=admin&password="+url.QueryEscape(testPassword)+"&next="+url.QueryEscape(tt.next),
				"X-Forwarded-Proto", tt.proto)
			require.Equal(t, http.StatusSeeOther, resp.StatusCode)
			assert.Equal(t, tt.location, resp.Header.Get("Location"), "only local pages after login")
			cookie := resp.Header.Get("Set-Cookie")
			assert.Contains(t, cookie, sessionCookie+"=")
			assert.Contains(t, cookie, "HttpOnly")
			assert.Contains(t, strings.ToLower(cookie), "samesite=lax")
			assert.Equal(t, tt.secure, strings.Contains(cookie, "secure"), cookie)

			session := strings.SplitN(cookie, ";", 2)[0]
			resp, page := anon("GET", "/setup", "", "Cookie", session)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Contains(t, page, `hx-headers='{"X-CSRF-Token": "`, "htmx sends the CSRF token")
			assert.Contains(t, page, `action="/logout"`)

			resp, _ = anon("POST", "/logout", "csrf_token=wrong", "Cookie", session)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			csrf := between(page, `name="csrf_token" value="`, `"`)
			resp, _ = anon("POST", "/logout", "csrf_token="+csrf, "Cookie", session)
			require.Equal(t, http.StatusSeeOther, resp.StatusCode)
			assert.Equal(t, "/login", resp.Header.Get("Location"))
			resp, _ = anon("GET", "/setup", "", "Cookie", session)
			assert.Equal(t, http.StatusSeeOther, resp.StatusCode, "the session is over")
		})
	}
}

func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, end)
	return v
}

func TestLoginRateLimit(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	login := func(password string) *http.Response {
		req := httptest.NewRequest("POST", "/login", strings.NewReader("user=admin&password="+url.QueryEscape(password)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", "other=1")
		resp, _ := doRaw(t, e.app, req)
		return resp
	}
	for i := 0; i < loginFailures; i++ {
		require.Equal(t, http.StatusUnauthorized, login("guess-"+fmt.Sprint(i)).StatusCode)
	}
	resp := login(testPassword)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "even the right password waits")
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.Empty(t, resp.Header.Get("Set-Cookie"))
}

func TestAPITokensFromPortal(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	resp, body := e.get(t, "/tokens")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "No token yet")

	resp, body = e.postForm(t, "/tokens", url.Values{"name": {"ci pipeline"}})
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	token := between(body, `id="new-token" readonly value="`, `"`)
	require.True(t, strings.HasPrefix(token, "cst_"), body)
	assert.Contains(t, body, "ci pipeline")

	for _, tt := range []struct {
		name   string
		status int
		want   string
	}{
		{"ci pipeline", http.StatusConflict, "exists"},
		{"", http.StatusBadRequest, "Give the token a name"},
		{strings.Repeat("x", 65), http.StatusBadRequest, "too long"},
	} {
		resp, body := e.postForm(t, "/tokens", url.Values{"name": {tt.name}})
		assert.Equal(t, tt.status, resp.StatusCode, tt.name)
		assert.Contains(t, body, tt.want)
		assert.NotContains(t, body, `id="new-token"`)
	}

	list := func(bearer string) int {
		req := httptest.NewRequest(http.MethodGet, "/api/images/list", nil)
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, _ := doRaw(t, e.app, req)
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusOK, list(token))
	assert.Equal(t, http.StatusOK, list(testToken), "CUSTOMSTREAM_API_TOKEN works too")
	tokens, err := e.Store.ListAPITokens()
	require.NoError(t, err)
	require.Len(t, tokens, 1)
	assert.False(t, tokens[0].LastUsedAt.IsZero(), "its use is recorded")

	// Only the hash is stored: the token appears nowhere in the database
	// (bbolt has written every committed page to the file).
	db, err := os.ReadFile(filepath.Join(e.Dir, "customstream.db"))
	require.NoError(t, err)
	assert.False(t, bytes.Contains(db, []byte(token)), "the plain token is in the database")
	assert.False(t, bytes.Contains(db, []byte(testToken)))

	resp, body = e.postForm(t, "/tokens/"+tokens[0].ID+"/delete", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, body, "Revoked ci pipeline")
	assert.Equal(t, http.StatusUnauthorized, list(token), "a revoked token stops working at once")
	resp, _ = e.postForm(t, "/tokens/"+tokens[0].ID+"/delete", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// TestFramingRefused: old browsers that ignore frame-ancestors still refuse
// to frame the portal.
func TestFramingRefused(t *testing.T) {
	e := newTestEnv(t, 1024)
	for _, path := range []string{"/login", "/images", "/streams/v1/index.json"} {
		resp, _ := e.get(t, path)
		assert.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"), path)
	}
}
