package upstreamtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/simplestreams"
)

// served generates the default tree and serves it.
func served(t *testing.T) (*Tree, *Server) {
	t.Helper()
	dir := t.TempDir()
	tr, err := Generate(dir, DefaultOptions())
	require.NoError(t, err)
	return tr, NewServer(t, dir)
}

// squashfsPath is a big item of the default tree.
const squashfsPath = "jammy/amd64/20250718/squashfs"

func get(t *testing.T, s *Server, path string, header http.Header) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL+"/"+path, nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := s.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestServerServesTree(t *testing.T) {
	tr, s := served(t)
	// The whole tree validates over HTTP.
	report, err := simplestreams.Validate(simplestreams.HTTPSource(s.URL, s.Client()), IndexPath)
	require.NoError(t, err)
	assert.Empty(t, report.Errors())

	resp, body, err := get(t, s, squashfsPath, nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, tr.Files[squashfsPath], FileInfo{Size: int64(len(body)), SHA256: sum(body)})
	assert.Empty(t, resp.Header.Get("Content-Encoding"))

	resp, _, err = get(t, s, IndexPath, nil)
	require.NoError(t, err)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))

	for _, missing := range []string{"jammy/amd64/nope", "jammy/amd64", "", "../etc/passwd"} {
		resp, _, err := get(t, s, missing, nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, missing)
	}
}

func TestServerRangeAndHead(t *testing.T) {
	tr, s := served(t)
	full, err := os.ReadFile(filepath.Join(tr.Dir, squashfsPath))
	require.NoError(t, err)

	tests := []struct {
		rangeHeader string
		want        []byte
	}{
		{"bytes=1000-", full[1000:]},
		{"bytes=0-99", full[:100]},
		{"bytes=-10", full[len(full)-10:]},
	}
	for _, tt := range tests {
		t.Run(tt.rangeHeader, func(t *testing.T) {
			resp, body, err := get(t, s, squashfsPath, http.Header{"Range": {tt.rangeHeader}})
			require.NoError(t, err)
			assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
			assert.Equal(t, tt.want, body)
		})
	}

	resp, err := s.Client().Head(s.URL + "/" + squashfsPath)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, int64(len(full)), resp.ContentLength)

	reqs := s.Requests()
	require.Len(t, reqs, 4)
	assert.Equal(t, Request{Method: http.MethodGet, Path: squashfsPath, Range: "bytes=1000-"}, reqs[0])
	assert.Equal(t, Request{Method: http.MethodHead, Path: squashfsPath}, reqs[3])
	s.ResetRequests()
	assert.Empty(t, s.Requests())
}

func TestServerDropAfter(t *testing.T) {
	tests := []struct {
		name        string
		rangeHeader string
	}{
		{"plain GET", ""},
		{"ranged GET", "bytes=100-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, s := served(t)
			info := tr.Files[squashfsPath]
			s.DropAfter("/"+squashfsPath, 5000) // a leading slash is fine

			header := http.Header{}
			if tt.rangeHeader != "" {
				header.Set("Range", tt.rangeHeader)
			}
			_, body, err := get(t, s, squashfsPath, header)
			require.Error(t, err, "the connection is dropped mid-body")
			assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
			assert.Len(t, body, 5000)

			// Once: resuming from where it stopped completes the file.
			resp, rest, err := get(t, s, squashfsPath, http.Header{"Range": {"bytes=5000-"}})
			require.NoError(t, err)
			assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
			if tt.rangeHeader == "" {
				assert.Equal(t, info.SHA256, sum(append(body, rest...)))
			}
			_, whole, err := get(t, s, squashfsPath, nil)
			require.NoError(t, err)
			assert.Equal(t, info.SHA256, sum(whole))
		})
	}
}

func TestServerDropAfterEdges(t *testing.T) {
	tr, s := served(t)
	info := tr.Files[squashfsPath]

	// Zero bytes: headers only, then the connection closes.
	s.DropAfter(squashfsPath, 0)
	_, body, err := get(t, s, squashfsPath, nil)
	require.Error(t, err)
	assert.Empty(t, body)

	// HEAD does not consume the drop; a body no longer than n is sent whole.
	s.DropAfter(squashfsPath, info.Size)
	resp, err := s.Client().Head(s.URL + "/" + squashfsPath)
	require.NoError(t, err)
	resp.Body.Close()
	_, body, err = get(t, s, squashfsPath, nil)
	require.NoError(t, err)
	assert.Equal(t, info.SHA256, sum(body))
}

func TestServerCorrupt(t *testing.T) {
	tr, s := served(t)
	info := tr.Files[squashfsPath]
	s.Corrupt(squashfsPath)

	_, body, err := get(t, s, squashfsPath, nil)
	require.NoError(t, err)
	assert.Len(t, body, int(info.Size), "same length")
	assert.NotEqual(t, info.SHA256, sum(body), "different sha256")

	resp, part, err := get(t, s, squashfsPath, http.Header{"Range": {"bytes=10-19"}})
	require.NoError(t, err)
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, body[10:20], part, "ranges of the corrupt file are consistent")

	s.Clear(squashfsPath)
	_, body, err = get(t, s, squashfsPath, nil)
	require.NoError(t, err)
	assert.Equal(t, info.SHA256, sum(body))
}

func TestServerFail(t *testing.T) {
	for _, status := range []int{http.StatusNotFound, http.StatusInternalServerError, http.StatusServiceUnavailable} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			_, s := served(t)
			s.Fail(IndexPath, status)
			resp, _, err := get(t, s, IndexPath, nil)
			require.NoError(t, err)
			assert.Equal(t, status, resp.StatusCode)

			// Other paths are unaffected; Clear restores the path.
			resp, _, err = get(t, s, squashfsPath, nil)
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			s.Clear(IndexPath)
			resp, _, err = get(t, s, IndexPath, nil)
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
		})
	}
}

func TestServerRedirect(t *testing.T) {
	tr, s := served(t)
	_, mirror := served(t)
	s.Redirect(squashfsPath, mirror.URL+"/"+squashfsPath)

	resp, body, err := get(t, s, squashfsPath, nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, mirror.URL+"/"+squashfsPath, resp.Request.URL.String(), "the client followed the redirect")
	assert.Len(t, body, int(tr.Files[squashfsPath].Size))
	assert.Equal(t, []Request{{Method: http.MethodGet, Path: squashfsPath}}, s.Requests())
	assert.Equal(t, []Request{{Method: http.MethodGet, Path: squashfsPath}}, mirror.Requests())

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.Get(s.URL + "/" + squashfsPath)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusFound, resp.StatusCode)
	assert.Equal(t, mirror.URL+"/"+squashfsPath, resp.Header.Get("Location"))
}

func TestServerThrottle(t *testing.T) {
	tr, s := served(t)
	s.Throttle(4 << 20) // fast enough to keep the test short; only correctness is checked
	_, body, err := get(t, s, squashfsPath, nil)
	require.NoError(t, err)
	assert.Equal(t, tr.Files[squashfsPath].SHA256, sum(body))

	full, err := os.ReadFile(filepath.Join(tr.Dir, squashfsPath))
	require.NoError(t, err)
	resp, part, err := get(t, s, squashfsPath, http.Header{"Range": {"bytes=60000-"}})
	require.NoError(t, err)
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, full[60000:], part)

	// Throttled drops still drop at the right byte.
	s.DropAfter(squashfsPath, 1234)
	_, body, err = get(t, s, squashfsPath, nil)
	require.Error(t, err)
	assert.Len(t, body, 1234)

	s.Throttle(0)
	_, body, err = get(t, s, squashfsPath, nil)
	require.NoError(t, err)
	assert.Equal(t, tr.Files[squashfsPath].SHA256, sum(body))
}

func TestServerSignedTree(t *testing.T) {
	dir := t.TempDir()
	tr, err := Generate(dir, DefaultOptions())
	require.NoError(t, err)
	require.NoError(t, tr.Sign(FakeClearsign))
	s := NewServer(t, dir)
	report, err := simplestreams.Validate(simplestreams.HTTPSource(s.URL, s.Client()), SignedIndexPath)
	require.NoError(t, err)
	assert.Empty(t, report.Errors())
	assert.Contains(t, s.Requests(), Request{Method: http.MethodGet, Path: "streams/v1/" + BootContentID + ".sjson"})
}

func TestServerMethodNotAllowed(t *testing.T) {
	_, s := served(t)
	resp, err := s.Client().Post(s.URL+"/"+IndexPath, "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}
