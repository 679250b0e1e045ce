package httpfile

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	testETag = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	mib      = 1 << 20
)

// testModTime has a sub-second part on purpose: HTTP dates drop it.
var testModTime = time.Date(2024, 5, 1, 12, 30, 45, 500_000_000, time.UTC)

// lastModified is the Last-Modified value Serve must send for testModTime.
var lastModified = "Wed, 01 May 2024 12:30:45 GMT"

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(t testing.TB, n int, seed int64) []byte {
	t.Helper()
	data := make([]byte, n)
	_, err := rand.New(rand.NewSource(seed)).Read(data)
	require.NoError(t, err)
	return data
}

// writeFile writes data to dir/name with mtime testModTime and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, data, 0o644))
	require.NoError(t, os.Chtimes(p, testModTime, testModTime))
	return p
}

// newApp returns a Fiber app serving f at GET (and so HEAD) /f.
func newApp(f File) *fiber.App {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/f", func(c *fiber.Ctx) error { return Serve(c, f) })
	return app
}

// do sends one request through app.Test and returns the response and its body.
func do(t *testing.T, app *fiber.App, method string, headers map[string]string) (*http.Response, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, "/f", nil)
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	res, err := app.Test(req, -1)
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	return res, body
}

// startServer serves app on a loopback listener and returns its address.
func startServer(t testing.TB, app *fiber.App) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = app.Listener(ln)
	}()
	t.Cleanup(func() {
		_ = app.Shutdown()
		<-done
	})
	return ln.Addr().String()
}

func TestServeFullGet(t *testing.T) {
	dir := t.TempDir()
	data := randomBytes(t, mib, 1)
	path := writeFile(t, dir, "img", data)

	tests := []struct {
		name            string
		file            File
		wantType        string
		wantETag        string
		wantCacheHeader string
	}{
		{
			name:     "defaults",
			file:     File{Path: path},
			wantType: "application/octet-stream",
		},
		{
			name:            "all fields",
			file:            File{Path: path, ETag: testETag, ContentType: "application/x-xz", CacheControl: "public, max-age=3600"},
			wantType:        "application/x-xz",
			wantETag:        `"` + testETag + `"`,
			wantCacheHeader: "public, max-age=3600",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := newApp(tt.file)
			// A client that accepts compression must still get the raw bytes.
			res, body := do(t, app, http.MethodGet, map[string]string{"Accept-Encoding": "gzip, deflate, br"})
			assert.Equal(t, http.StatusOK, res.StatusCode)
			assert.Equal(t, strconv.Itoa(len(data)), res.Header.Get("Content-Length"))
			assert.Equal(t, int64(len(data)), res.ContentLength)
			assert.True(t, bytes.Equal(data, body), "body differs from file")
			assert.Equal(t, lastModified, res.Header.Get("Last-Modified"))
			assert.Equal(t, "bytes", res.Header.Get("Accept-Ranges"))
			assert.Equal(t, tt.wantType, res.Header.Get("Content-Type"))
			assert.Equal(t, tt.wantETag, res.Header.Get("ETag"))
			assert.Equal(t, tt.wantCacheHeader, res.Header.Get("Cache-Control"))
			assert.Empty(t, res.Header.Values("Content-Encoding"))
			assert.Empty(t, res.Header.Get("Content-Range"))
		})
	}
}

func TestServeNotFound(t *testing.T) {
	dir := t.TempDir()
	regular := writeFile(t, dir, "regular", []byte("x"))
	tests := []struct {
		name string
		path string
	}{
		{name: "missing file", path: filepath.Join(dir, "missing")},
		{name: "directory", path: dir},
		{name: "below a regular file", path: filepath.Join(regular, "child")},
		{name: "empty path", path: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := newApp(File{Path: tt.path, ETag: testETag})
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				res, _ := do(t, app, method, nil)
				assert.Equal(t, http.StatusNotFound, res.StatusCode, method)
				assert.Empty(t, res.Header.Get("ETag"), method)
			}
		})
	}
}

func TestServeMethodNotAllowed(t *testing.T) {
	path := writeFile(t, t.TempDir(), "img", []byte("content"))
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.All("/f", func(c *fiber.Ctx) error { return Serve(c, File{Path: path}) })
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		t.Run(method, func(t *testing.T) {
			res, _ := do(t, app, method, nil)
			assert.Equal(t, http.StatusMethodNotAllowed, res.StatusCode)
			assert.Equal(t, "GET, HEAD", res.Header.Get("Allow"))
		})
	}
}

func TestServeRange(t *testing.T) {
	data := randomBytes(t, mib, 2)
	size := int64(len(data))
	path := writeFile(t, t.TempDir(), "img", data)
	app := newApp(File{Path: path, ETag: testETag})

	s := strconv.FormatInt(size, 10)
	tests := []struct {
		name       string
		rangeValue string
		wantStatus int
		wantStart  int64 // for 206
		wantEnd    int64 // inclusive, for 206
	}{
		{name: "open-ended", rangeValue: "bytes=100-", wantStatus: 206, wantStart: 100, wantEnd: size - 1},
		{name: "open-ended from zero", rangeValue: "bytes=0-", wantStatus: 206, wantStart: 0, wantEnd: size - 1},
		{name: "last byte open-ended", rangeValue: "bytes=" + strconv.FormatInt(size-1, 10) + "-", wantStatus: 206, wantStart: size - 1, wantEnd: size - 1},
		{name: "closed", rangeValue: "bytes=10-19", wantStatus: 206, wantStart: 10, wantEnd: 19},
		{name: "single byte", rangeValue: "bytes=5-5", wantStatus: 206, wantStart: 5, wantEnd: 5},
		{name: "end past size clamped", rangeValue: "bytes=1000-99999999", wantStatus: 206, wantStart: 1000, wantEnd: size - 1},
		{name: "end overflowing int64 clamped", rangeValue: "bytes=7-99999999999999999999999", wantStatus: 206, wantStart: 7, wantEnd: size - 1},
		{name: "suffix", rangeValue: "bytes=-500", wantStatus: 206, wantStart: size - 500, wantEnd: size - 1},
		{name: "suffix longer than file", rangeValue: "bytes=-" + strconv.FormatInt(size+1, 10), wantStatus: 206, wantStart: 0, wantEnd: size - 1},
		{name: "unit is case-insensitive", rangeValue: "Bytes=0-9", wantStatus: 206, wantStart: 0, wantEnd: 9},
		{name: "optional whitespace", rangeValue: "bytes= 0-9 ", wantStatus: 206, wantStart: 0, wantEnd: 9},
		{name: "empty list elements skipped", rangeValue: "bytes=,0-9,", wantStatus: 206, wantStart: 0, wantEnd: 9},

		{name: "start at size", rangeValue: "bytes=" + s + "-", wantStatus: 416},
		{name: "start past size", rangeValue: "bytes=" + strconv.FormatInt(size+10, 10) + "-" + strconv.FormatInt(size+20, 10), wantStatus: 416},
		{name: "start overflowing int64", rangeValue: "bytes=99999999999999999999999-", wantStatus: 416},
		{name: "suffix of zero", rangeValue: "bytes=-0", wantStatus: 416},

		{name: "no equals", rangeValue: "bytes", wantStatus: 200},
		{name: "empty set", rangeValue: "bytes=", wantStatus: 200},
		{name: "no dash", rangeValue: "bytes=5", wantStatus: 200},
		{name: "dash only", rangeValue: "bytes=-", wantStatus: 200},
		{name: "letters", rangeValue: "bytes=abc-", wantStatus: 200},
		{name: "hex", rangeValue: "bytes=0x10-", wantStatus: 200},
		{name: "negative", rangeValue: "bytes=--5", wantStatus: 200},
		{name: "end before start", rangeValue: "bytes=10-5", wantStatus: 200},
		{name: "three parts", rangeValue: "bytes=1-2-3", wantStatus: 200},
		{name: "other unit", rangeValue: "items=0-5", wantStatus: 200},
		{name: "several ranges", rangeValue: "bytes=0-1,5-6", wantStatus: 200},
		{name: "several ranges with spaces", rangeValue: "bytes=0-1, 5-6", wantStatus: 200},
		{name: "several unsatisfiable ranges", rangeValue: "bytes=" + s + "-," + s + "-", wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := do(t, app, http.MethodGet, map[string]string{"Range": tt.rangeValue})
			require.Equal(t, tt.wantStatus, res.StatusCode)
			assert.Equal(t, "bytes", res.Header.Get("Accept-Ranges"))
			switch tt.wantStatus {
			case http.StatusPartialContent:
				want := data[tt.wantStart : tt.wantEnd+1]
				assert.Equal(t, fmt.Sprintf("bytes %d-%d/%d", tt.wantStart, tt.wantEnd, size), res.Header.Get("Content-Range"))
				assert.Equal(t, strconv.Itoa(len(want)), res.Header.Get("Content-Length"))
				assert.True(t, bytes.Equal(want, body), "body differs from file[%d:%d]", tt.wantStart, tt.wantEnd+1)
			case http.StatusRequestedRangeNotSatisfiable:
				assert.Equal(t, "bytes */"+s, res.Header.Get("Content-Range"))
			case http.StatusOK:
				assert.Empty(t, res.Header.Get("Content-Range"))
				assert.Equal(t, s, res.Header.Get("Content-Length"))
				assert.True(t, bytes.Equal(data, body), "body differs from file")
			}
		})
	}
}

func TestServeIfRange(t *testing.T) {
	data := randomBytes(t, mib, 3)
	path := writeFile(t, t.TempDir(), "img", data)
	withETag := newApp(File{Path: path, ETag: testETag})
	withoutETag := newApp(File{Path: path})
	lm := testModTime.Truncate(time.Second)

	tests := []struct {
		name       string
		app        *fiber.App
		headers    map[string]string
		wantStatus int
	}{
		{name: "strong etag match", app: withETag, headers: map[string]string{"Range": "bytes=10-19", "If-Range": `"` + testETag + `"`}, wantStatus: 206},
		{name: "weak etag never matches", app: withETag, headers: map[string]string{"Range": "bytes=10-19", "If-Range": `W/"` + testETag + `"`}, wantStatus: 200},
		{name: "other etag", app: withETag, headers: map[string]string{"Range": "bytes=10-19", "If-Range": `"other"`}, wantStatus: 200},
		{name: "etag list is not an etag", app: withETag, headers: map[string]string{"Range": "bytes=10-19", "If-Range": `"` + testETag + `", "x"`}, wantStatus: 200},
		{name: "etag without configured etag", app: withoutETag, headers: map[string]string{"Range": "bytes=10-19", "If-Range": `"` + testETag + `"`}, wantStatus: 200},
		{name: "date equal to last-modified", app: withETag, headers: map[string]string{"Range": "bytes=10-19", "If-Range": lastModified}, wantStatus: 206},
		{name: "same date in RFC 850 form", app: withoutETag, headers: map[string]string{"Range": "bytes=10-19", "If-Range": lm.Format(time.RFC850)}, wantStatus: 206},
		{name: "earlier date", app: withETag, headers: map[string]string{"Range": "bytes=10-19", "If-Range": lm.Add(-time.Second).Format(http.TimeFormat)}, wantStatus: 200},
		{name: "later date", app: withETag, headers: map[string]string{"Range": "bytes=10-19", "If-Range": lm.Add(time.Second).Format(http.TimeFormat)}, wantStatus: 200},
		{name: "garbage", app: withETag, headers: map[string]string{"Range": "bytes=10-19", "If-Range": "yesterday"}, wantStatus: 200},
		{name: "if-range without range is ignored", app: withETag, headers: map[string]string{"If-Range": `"other"`}, wantStatus: 200},
		{name: "stale if-range beats an unsatisfiable range", app: withETag, headers: map[string]string{"Range": "bytes=99999999-", "If-Range": `"other"`}, wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := do(t, tt.app, http.MethodGet, tt.headers)
			require.Equal(t, tt.wantStatus, res.StatusCode)
			if tt.wantStatus == http.StatusPartialContent {
				assert.Equal(t, fmt.Sprintf("bytes 10-19/%d", len(data)), res.Header.Get("Content-Range"))
				assert.Equal(t, data[10:20], body)
				return
			}
			assert.Empty(t, res.Header.Get("Content-Range"))
			assert.True(t, bytes.Equal(data, body), "body differs from file")
		})
	}
}

func TestServeConditional(t *testing.T) {
	data := randomBytes(t, 64*1024, 4)
	path := writeFile(t, t.TempDir(), "img", data)
	cache := "public, max-age=60"
	withETag := newApp(File{Path: path, ETag: testETag, CacheControl: cache})
	withoutETag := newApp(File{Path: path, CacheControl: cache})
	lm := testModTime.Truncate(time.Second)
	quoted := `"` + testETag + `"`

	tests := []struct {
		name       string
		app        *fiber.App
		headers    map[string]string
		wantStatus int
	}{
		{name: "etag match", app: withETag, headers: map[string]string{"If-None-Match": quoted}, wantStatus: 304},
		{name: "weak etag match", app: withETag, headers: map[string]string{"If-None-Match": "W/" + quoted}, wantStatus: 304},
		{name: "list match", app: withETag, headers: map[string]string{"If-None-Match": `"a", W/"b", ` + quoted}, wantStatus: 304},
		{name: "list without spaces", app: withETag, headers: map[string]string{"If-None-Match": `"a",` + quoted}, wantStatus: 304},
		{name: "comma inside an etag", app: withETag, headers: map[string]string{"If-None-Match": `"a,b", ` + quoted}, wantStatus: 304},
		{name: "star", app: withETag, headers: map[string]string{"If-None-Match": "*"}, wantStatus: 304},
		{name: "star without etag", app: withoutETag, headers: map[string]string{"If-None-Match": "*"}, wantStatus: 304},
		{name: "other etag", app: withETag, headers: map[string]string{"If-None-Match": `"other"`}, wantStatus: 200},
		{name: "prefix of etag", app: withETag, headers: map[string]string{"If-None-Match": `"` + testETag[:10] + `"`}, wantStatus: 200},
		{name: "unquoted etag", app: withETag, headers: map[string]string{"If-None-Match": testETag}, wantStatus: 200},
		{name: "etag when none configured", app: withoutETag, headers: map[string]string{"If-None-Match": quoted}, wantStatus: 200},
		{
			name:       "if-none-match miss overrides if-modified-since",
			app:        withETag,
			headers:    map[string]string{"If-None-Match": `"other"`, "If-Modified-Since": lm.Add(time.Hour).Format(http.TimeFormat)},
			wantStatus: 200,
		},
		{
			name:       "if-none-match hit beats a range",
			app:        withETag,
			headers:    map[string]string{"If-None-Match": quoted, "Range": "bytes=0-9"},
			wantStatus: 304,
		},
		{name: "modified-since equal", app: withETag, headers: map[string]string{"If-Modified-Since": lastModified}, wantStatus: 304},
		{name: "modified-since later", app: withoutETag, headers: map[string]string{"If-Modified-Since": lm.Add(time.Hour).Format(http.TimeFormat)}, wantStatus: 304},
		{name: "modified-since earlier", app: withETag, headers: map[string]string{"If-Modified-Since": lm.Add(-time.Second).Format(http.TimeFormat)}, wantStatus: 200},
		{name: "modified-since invalid", app: withETag, headers: map[string]string{"If-Modified-Since": "not a date"}, wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				res, body := do(t, tt.app, method, tt.headers)
				require.Equal(t, tt.wantStatus, res.StatusCode, method)
				assert.Equal(t, lastModified, res.Header.Get("Last-Modified"), method)
				assert.Equal(t, cache, res.Header.Get("Cache-Control"), method)
				if tt.app == withETag {
					assert.Equal(t, quoted, res.Header.Get("ETag"), method)
				} else {
					assert.Empty(t, res.Header.Get("ETag"), method)
				}
				switch {
				case tt.wantStatus == http.StatusNotModified:
					assert.Empty(t, body, method)
				case method == http.MethodGet:
					assert.True(t, bytes.Equal(data, body), "body differs from file")
				}
			}
		})
	}
}

func TestServeHeadMatchesGet(t *testing.T) {
	data := randomBytes(t, mib, 5)
	path := writeFile(t, t.TempDir(), "img", data)
	app := newApp(File{Path: path, ETag: testETag, ContentType: "application/x-xz", CacheControl: "no-cache"})

	tests := []struct {
		name       string
		headers    map[string]string
		wantStatus int
		wantLength int64
	}{
		{name: "whole file", wantStatus: 200, wantLength: mib},
		{name: "range", headers: map[string]string{"Range": "bytes=1000-"}, wantStatus: 206, wantLength: mib - 1000},
		{name: "suffix range", headers: map[string]string{"Range": "bytes=-10"}, wantStatus: 206, wantLength: 10},
		{name: "several ranges", headers: map[string]string{"Range": "bytes=0-1,5-6"}, wantStatus: 200, wantLength: mib},
		{name: "unsatisfiable range", headers: map[string]string{"Range": "bytes=99999999-"}, wantStatus: 416},
		{name: "stale if-range", headers: map[string]string{"Range": "bytes=0-9", "If-Range": `"other"`}, wantStatus: 200, wantLength: mib},
		{name: "not modified", headers: map[string]string{"If-None-Match": `"` + testETag + `"`}, wantStatus: 304},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getRes, getBody := do(t, app, http.MethodGet, tt.headers)
			headRes, headBody := do(t, app, http.MethodHead, tt.headers)
			require.Equal(t, tt.wantStatus, getRes.StatusCode)
			assert.Equal(t, getRes.StatusCode, headRes.StatusCode)
			assert.Empty(t, headBody)

			getRes.Header.Del("Date")
			headRes.Header.Del("Date")
			assert.Equal(t, getRes.Header, headRes.Header)
			if tt.wantStatus == http.StatusOK || tt.wantStatus == http.StatusPartialContent {
				assert.Equal(t, strconv.FormatInt(tt.wantLength, 10), headRes.Header.Get("Content-Length"))
				assert.Equal(t, tt.wantLength, headRes.ContentLength)
				assert.Len(t, getBody, int(tt.wantLength))
			}
		})
	}
}

// TestServeHeadOnTheWire checks the raw bytes: app.Test's http.ReadResponse
// never reads a HEAD body, so a body sent by mistake would go unnoticed there.
func TestServeHeadOnTheWire(t *testing.T) {
	data := randomBytes(t, mib, 6)
	path := writeFile(t, t.TempDir(), "img", data)
	addr := startServer(t, newApp(File{Path: path, ETag: testETag}))

	for _, rangeLine := range []string{"", "Range: bytes=24-\r\n"} {
		t.Run(fmt.Sprintf("range=%q", rangeLine), func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer conn.Close()
			// A deadline only so that a server bug cannot hang the test.
			require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
			_, err = io.WriteString(conn, "HEAD /f HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"+rangeLine+"\r\n")
			require.NoError(t, err)
			raw, err := io.ReadAll(conn)
			require.NoError(t, err)

			head, rest, found := bytes.Cut(raw, []byte("\r\n\r\n"))
			require.True(t, found, "no end of header in %q", raw)
			assert.Empty(t, rest, "HEAD response carries a body")
			wantLength := len(data)
			if rangeLine != "" {
				wantLength -= 24
			}
			assert.Contains(t, string(head), "\r\nContent-Length: "+strconv.Itoa(wantLength)+"\r\n")
		})
	}
}

func TestServeStreamsBody(t *testing.T) {
	data := randomBytes(t, mib, 7)
	path := writeFile(t, t.TempDir(), "img", data)

	var streamed bool
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Use(func(c *fiber.Ctx) error {
		err := c.Next()
		// IsBodyStream, not Body(): Body() would read the stream into memory.
		streamed = c.Response().IsBodyStream()
		return err
	})
	app.Get("/f", func(c *fiber.Ctx) error { return Serve(c, File{Path: path}) })

	for _, rangeValue := range []string{"", "bytes=10-"} {
		t.Run("range="+rangeValue, func(t *testing.T) {
			streamed = false
			res, body := do(t, app, http.MethodGet, map[string]string{"Range": rangeValue})
			assert.Contains(t, []int{200, 206}, res.StatusCode)
			assert.True(t, streamed, "GET body was not a stream")
			assert.NotEmpty(t, body)
		})
	}
}

// openFDsTo counts this process's descriptors open on path (Linux /proc only).
func openFDsTo(t *testing.T, path string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd on this system")
	}
	n := 0
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && target == path {
			n++
		}
	}
	return n
}

func TestServeClosesFile(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	data := randomBytes(t, mib, 8)
	path := writeFile(t, dir, "img", data)
	app := newApp(File{Path: path, ETag: testETag})

	requests := []struct {
		method  string
		headers map[string]string
	}{
		{method: http.MethodGet},
		{method: http.MethodGet, headers: map[string]string{"Range": "bytes=100-200"}},
		{method: http.MethodGet, headers: map[string]string{"Range": "bytes=99999999-"}},
		{method: http.MethodGet, headers: map[string]string{"If-None-Match": "*"}},
		{method: http.MethodHead},
		{method: http.MethodHead, headers: map[string]string{"Range": "bytes=-5"}},
	}
	for _, r := range requests {
		t.Run(fmt.Sprintf("%s %v", r.method, r.headers), func(t *testing.T) {
			before := openFDsTo(t, path)
			_, _ = do(t, app, r.method, r.headers)
			// app.Test returns once the response is written, and fasthttp
			// closes the body stream right after writing it.
			assert.LessOrEqual(t, openFDsTo(t, path), before, "file left open")
		})
	}
}

func TestServeReplacedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "img")
	app := newApp(File{Path: path})

	replacements := []struct {
		name    string
		replace func(t *testing.T, data []byte)
	}{
		{
			name: "renamed over",
			replace: func(t *testing.T, data []byte) {
				tmp := writeFile(t, dir, "img.tmp", data)
				require.NoError(t, os.Rename(tmp, path))
			},
		},
		{
			name: "rewritten in place",
			replace: func(t *testing.T, data []byte) {
				require.NoError(t, os.WriteFile(path, data, 0o644))
			},
		},
	}
	for i, rp := range replacements {
		t.Run(rp.name, func(t *testing.T) {
			oldData := randomBytes(t, 300_000, int64(10+i))
			newData := randomBytes(t, 200_000, int64(20+i))
			writeFile(t, dir, "img", oldData)

			_, body := do(t, app, http.MethodGet, nil)
			require.True(t, bytes.Equal(oldData, body), "first body differs from first file")

			rp.replace(t, newData)

			res, body := do(t, app, http.MethodGet, nil)
			assert.Equal(t, strconv.Itoa(len(newData)), res.Header.Get("Content-Length"))
			assert.True(t, bytes.Equal(newData, body), "second body is not the new file")

			res, body = do(t, app, http.MethodGet, map[string]string{"Range": "bytes=-100"})
			assert.Equal(t, fmt.Sprintf("bytes %d-%d/%d", len(newData)-100, len(newData)-1, len(newData)), res.Header.Get("Content-Range"))
			assert.Equal(t, newData[len(newData)-100:], body)
		})
	}
}

func TestServeEmptyFile(t *testing.T) {
	path := writeFile(t, t.TempDir(), "empty", nil)
	app := newApp(File{Path: path, ETag: testETag})

	tests := []struct {
		name             string
		method           string
		rangeValue       string
		wantStatus       int
		wantContentRange string
	}{
		{name: "get", method: http.MethodGet, wantStatus: 200},
		{name: "head", method: http.MethodHead, wantStatus: 200},
		{name: "open range", method: http.MethodGet, rangeValue: "bytes=0-", wantStatus: 416, wantContentRange: "bytes */0"},
		{name: "suffix range", method: http.MethodGet, rangeValue: "bytes=-5", wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := do(t, app, tt.method, map[string]string{"Range": tt.rangeValue})
			require.Equal(t, tt.wantStatus, res.StatusCode)
			assert.Equal(t, tt.wantContentRange, res.Header.Get("Content-Range"))
			if tt.wantStatus == http.StatusOK {
				assert.Equal(t, "0", res.Header.Get("Content-Length"))
				assert.Empty(t, body)
			}
		})
	}
}

func TestServeLargeFile(t *testing.T) {
	data := randomBytes(t, 20*mib, 9)
	path := writeFile(t, t.TempDir(), "big", data)
	app := newApp(File{Path: path, ETag: testETag})
	addr := startServer(t, app)
	const offset = 7*mib + 123

	t.Run("app.Test", func(t *testing.T) {
		res, body := do(t, app, http.MethodGet, nil)
		require.Equal(t, http.StatusOK, res.StatusCode)
		assert.True(t, bytes.Equal(data, body), "body differs from file")
	})

	// Over a real TCP connection the body goes through WriteTo and sendfile.
	tests := []struct {
		name       string
		rangeValue string
		wantStatus int
		want       []byte
	}{
		{name: "listener whole file", wantStatus: 200, want: data},
		{name: "listener resume", rangeValue: "bytes=" + strconv.Itoa(offset) + "-", wantStatus: 206, want: data[offset:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/f", nil)
			require.NoError(t, err)
			if tt.rangeValue != "" {
				req.Header.Set("Range", tt.rangeValue)
			}
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			require.NoError(t, err)
			require.Equal(t, tt.wantStatus, res.StatusCode)
			assert.Equal(t, int64(len(tt.want)), res.ContentLength)
			assert.True(t, bytes.Equal(tt.want, body), "body differs from file")
		})
	}
}

func TestParseRangeSaturates(t *testing.T) {
	n, ok := parseDigits(strings.Repeat("9", 40))
	require.True(t, ok)
	assert.Equal(t, int64(1<<63-1), n)
}

// BenchmarkServe shows that allocations per request do not grow with the
// file size: compare allocs/op of the 1 MiB and 64 MiB cases.
func BenchmarkServe(b *testing.B) {
	dir := b.TempDir()
	for _, size := range []int{mib, 64 * mib} {
		b.Run(fmt.Sprintf("%dMiB", size/mib), func(b *testing.B) {
			path := writeFile(b, dir, fmt.Sprintf("img-%d", size), randomBytes(b, size, 42))
			addr := startServer(b, newApp(File{Path: path, ETag: testETag}))
			client := &http.Client{Transport: &http.Transport{}}
			b.Cleanup(client.CloseIdleConnections)
			url := "http://" + addr + "/f"

			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				res, err := client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
				if err != nil {
					b.Fatal(err)
				}
				if n != int64(size) {
					b.Fatalf("got %d bytes, want %d", n, size)
				}
			}
		})
	}
}

// TestServeFromMemory: a document served from memory answers exactly as
// the same bytes on disk do.
func TestServeFromMemory(t *testing.T) {
	data := randomBytes(t, 64<<10, 9)
	path := writeFile(t, t.TempDir(), "doc", data)
	info, err := os.Stat(path)
	require.NoError(t, err)
	disk := newApp(File{Path: path, ETag: testETag, ContentType: "application/json"})
	memory := newApp(File{Path: "/nonexistent", ETag: testETag, ContentType: "application/json", Data: data, ModTime: info.ModTime()})
	tests := []struct {
		name    string
		method  string
		headers map[string]string
	}{
		{"get", http.MethodGet, nil},
		{"head", http.MethodHead, nil},
		{"range", http.MethodGet, map[string]string{"Range": "bytes=100-199"}},
		{"suffix range", http.MethodGet, map[string]string{"Range": "bytes=-10"}},
		{"unsatisfiable", http.MethodGet, map[string]string{"Range": "bytes=999999-"}},
		{"if-none-match", http.MethodGet, map[string]string{"If-None-Match": `"` + testETag + `"`}},
		{"if-modified-since", http.MethodGet, map[string]string{"If-Modified-Since": info.ModTime().UTC().Format(http.TimeFormat)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, wantBody := do(t, disk, tt.method, tt.headers)
			got, gotBody := do(t, memory, tt.method, tt.headers)
			assert.Equal(t, want.StatusCode, got.StatusCode)
			assert.Equal(t, wantBody, gotBody)
			for _, h := range []string{"Content-Length", "Content-Range", "Content-Type", "ETag", "Last-Modified", "Accept-Ranges"} {
				assert.Equal(t, want.Header.Get(h), got.Header.Get(h), h)
			}
		})
	}
}
