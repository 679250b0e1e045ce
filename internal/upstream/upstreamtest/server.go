package upstreamtest

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Request is one request the Server received.
type Request struct {
	Method string
	Path   string // relative to the mirror root, as in the metadata: "streams/v1/index.json"
	Range  string // the Range header, "" if none
}

// Server serves a directory over real HTTP with net/http's file semantics
// (Range, HEAD, If-Modified-Since; no directory listings, no compression),
// records every request and injects faults. Hook paths are relative to the
// mirror root; a leading "/" is ignored.
type Server struct {
	*httptest.Server
	dir string

	mu        sync.Mutex
	requests  []Request
	drops     map[string]int64
	corrupt   map[string]bool
	fails     map[string]int
	redirects map[string]string
	rate      int64
}

// NewServer serves dir until the test ends.
func NewServer(t testing.TB, dir string) *Server {
	s := &Server{
		dir:       dir,
		drops:     make(map[string]int64),
		corrupt:   make(map[string]bool),
		fails:     make(map[string]int),
		redirects: make(map[string]string),
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// Requests returns a copy of the requests received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	copy(out, s.requests)
	return out
}

// ResetRequests forgets the requests received so far.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// DropAfter makes the next GET of path, with or without Range, send n body
// bytes and then close the connection (a dropped download), once. A body of
// n bytes or fewer is sent whole.
func (s *Server) DropAfter(path string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drops[hookKey(path)] = max(n, 0)
}

// Corrupt serves wrong bytes of the same length for path (every byte
// flipped), until Clear, for checksum-mismatch tests.
func (s *Server) Corrupt(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.corrupt[hookKey(path)] = true
}

// Fail makes path answer status (e.g. 404, 500) until Clear.
func (s *Server) Fail(path string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails[hookKey(path)] = status
}

// Redirect makes path answer 302 Found to target (a URL) until Clear.
func (s *Server) Redirect(path, target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redirects[hookKey(path)] = target
}

// Clear removes every hook set on path.
func (s *Server) Clear(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := hookKey(path)
	delete(s.drops, k)
	delete(s.corrupt, k)
	delete(s.fails, k)
	delete(s.redirects, k)
}

// Throttle limits every response body to bytesPerSecond (0 = unlimited).
// Requests on one connection are sequential, so this is also the rate per connection.
func (s *Server) Throttle(bytesPerSecond int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rate = max(bytesPerSecond, 0)
}

// hookKey normalises a path to the form Request.Path uses.
func hookKey(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

// plan is what one request should get, read under the lock.
type plan struct {
	failStatus int
	redirectTo string
	corrupt    bool
	dropAfter  int64 // < 0: no drop
	rate       int64
}

func (s *Server) planFor(r *http.Request, p string) plan {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: p, Range: r.Header.Get("Range")})
	pl := plan{
		failStatus: s.fails[p],
		redirectTo: s.redirects[p],
		corrupt:    s.corrupt[p],
		dropAfter:  -1,
		rate:       s.rate,
	}
	if n, ok := s.drops[p]; ok && r.Method == http.MethodGet {
		pl.dropAfter = n
		delete(s.drops, p) // once
	}
	return pl
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	p := hookKey(r.URL.Path)
	pl := s.planFor(r, p)
	switch {
	case pl.failStatus != 0:
		http.Error(w, http.StatusText(pl.failStatus), pl.failStatus)
		return
	case pl.redirectTo != "":
		http.Redirect(w, r, pl.redirectTo, http.StatusFound)
		return
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	f, info, err := s.open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			http.NotFound(w, r)
			return
		}
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()

	var content io.ReadSeeker = f
	if pl.corrupt {
		content = flipReader{f}
	}
	out := w
	if pl.dropAfter >= 0 || pl.rate > 0 {
		out = &faultWriter{ResponseWriter: w, ctx: r.Context(), remaining: pl.dropAfter, rate: pl.rate, start: time.Now()}
	}
	http.ServeContent(out, r, path.Base(p), info.ModTime(), content)
}

// open opens a regular file below s.dir; os.Root keeps requests inside it.
func (s *Server) open(p string) (*os.File, os.FileInfo, error) {
	if p == "" {
		return nil, nil, fs.ErrNotExist
	}
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		return nil, nil, err
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(p))
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, nil, fs.ErrNotExist // no directory listings: only files exist
	}
	return f, info, nil
}

// flipReader serves a file with every byte inverted: same length, wrong sha256.
type flipReader struct{ f *os.File }

func (fr flipReader) Read(p []byte) (int, error) {
	n, err := fr.f.Read(p)
	for i := range p[:n] {
		p[i] ^= 0xff
	}
	return n, err
}

func (fr flipReader) Seek(offset int64, whence int) (int64, error) { return fr.f.Seek(offset, whence) }

// faultWriter paces the body to rate bytes/s and aborts the connection
// after remaining bytes (remaining < 0: never).
type faultWriter struct {
	http.ResponseWriter
	ctx       context.Context
	remaining int64
	rate      int64
	start     time.Time
	written   int64
}

func (fw *faultWriter) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		chunk := p
		if fw.remaining >= 0 && int64(len(chunk)) > fw.remaining {
			chunk = chunk[:fw.remaining]
		}
		if step := fw.rate / 20; fw.rate > 0 && int64(len(chunk)) > max(step, 1) {
			chunk = chunk[:max(step, 1)] // about 20 writes a second
		}
		if len(chunk) > 0 {
			n, err := fw.ResponseWriter.Write(chunk)
			total += n
			fw.written += int64(n)
			if fw.remaining >= 0 {
				fw.remaining -= int64(n)
			}
			p = p[n:]
			if err != nil {
				return total, err
			}
			if err := fw.pace(); err != nil {
				return total, err
			}
		}
		if fw.remaining == 0 && len(p) > 0 {
			// Send what was written, then make net/http close the
			// connection without finishing the body.
			_ = http.NewResponseController(fw.ResponseWriter).Flush()
			panic(http.ErrAbortHandler)
		}
	}
	return total, nil
}

// pace sleeps until the bytes written so far are due at the configured rate.
func (fw *faultWriter) pace() error {
	if fw.rate <= 0 {
		return nil
	}
	_ = http.NewResponseController(fw.ResponseWriter).Flush()
	due := fw.start.Add(time.Duration(float64(fw.written) / float64(fw.rate) * float64(time.Second)))
	wait := time.Until(due)
	if wait <= 0 {
		return nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-fw.ctx.Done():
		return fw.ctx.Err()
	}
}
