// Package httpfile serves files from disk over Fiber with ranges, conditional requests and bounded memory.
//
// It exists because the stock options do not fit multi-GB image files:
// fasthttp's file handler (and Fiber's static/filesystem middleware) keeps
// files open for ~10 s, so a replaced file is served stale, and it lacks
// If-Range and ETag; Fiber's etag middleware and c.Body()-style helpers load
// whole bodies into memory.
//
// Do not mount Fiber's compress middleware on routes that call Serve:
// fasthttp treats application/* as compressible, would drop Content-Length
// and compress the (partial) bodies, which breaks resumed downloads.
package httpfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/metrics"
)

// File describes one file to serve.
type File struct {
	Path         string // on-disk path, opened per request (never cached)
	ETag         string // strong validator without quotes (we pass the sha256 hex); "" means none
	ContentType  string // "" means application/octet-stream
	CacheControl string // copied into Cache-Control when not ""
	// Data, when not nil, is the content, served from memory instead of
	// Path (small documents read on every poll), with ModTime as its date.
	Data    []byte
	ModTime time.Time
}

const defaultContentType = "application/octet-stream"

// Serve answers GET and HEAD for f. It opens the file per request, so a replaced file is served at once.
func Serve(c *fiber.Ctx, f File) error {
	method := c.Method()
	if method != fiber.MethodGet && method != fiber.MethodHead {
		c.Set(fiber.HeaderAllow, "GET, HEAD")
		return fiber.ErrMethodNotAllowed
	}

	if f.Data != nil {
		return serve(c, f, int64(len(f.Data)), f.ModTime, func(start, length int64) error {
			metrics.ServedBytes.Add(length)
			c.Response().SetBodyRaw(f.Data[start : start+length])
			return nil
		})
	}

	file, err := os.Open(f.Path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return fiber.ErrNotFound
		}
		return fmt.Errorf("httpfile: %w", err)
	}
	// The file is closed here unless it was handed to fasthttp as the body
	// stream, which closes it once the response is written.
	handedOff := false
	defer func() {
		if !handedOff {
			_ = file.Close()
		}
	}()

	// Stat the open descriptor, not the path, so size and mtime describe
	// exactly the bytes we are about to send even if the path is replaced.
	info, err := file.Stat()
	if err != nil {
		return fmt.Errorf("httpfile: stat %s: %w", f.Path, err)
	}
	if !info.Mode().IsRegular() {
		return fiber.ErrNotFound
	}
	return serve(c, f, info.Size(), info.ModTime(), func(start, length int64) error {
		if start > 0 {
			if _, err := file.Seek(start, io.SeekStart); err != nil {
				return fmt.Errorf("httpfile: seek %s to %d: %w", f.Path, start, err)
			}
		}
		body := &fileBody{file: file}
		body.limited = io.LimitedReader{R: file, N: length}
		c.Context().SetBodyStream(body, int(length))
		handedOff = true
		return nil
	})
}

// serve answers with the headers, validators and range of content of size
// bytes, and has body send the chosen window on a GET.
func serve(c *fiber.Ctx, f File, size int64, modTime time.Time, body func(start, length int64) error) error {
	method := c.Method()
	// HTTP dates have one-second resolution; compare validators at that resolution.
	modTime = modTime.UTC().Truncate(time.Second)

	h := &c.Response().Header
	h.Set(fiber.HeaderLastModified, modTime.Format(http.TimeFormat))
	if f.ETag != "" {
		h.Set(fiber.HeaderETag, `"`+f.ETag+`"`)
	}
	if f.CacheControl != "" {
		h.Set(fiber.HeaderCacheControl, f.CacheControl)
	}
	h.Set(fiber.HeaderAcceptRanges, "bytes")
	// Image files are sent as stored: never compressed, whatever ran before us.
	h.Del(fiber.HeaderContentEncoding)

	if notModified(c, f.ETag, modTime) {
		// No body and no Content-Type: fasthttp drops the body of a 304 itself.
		c.Status(fiber.StatusNotModified)
		return nil
	}

	contentType := f.ContentType
	if contentType == "" {
		contentType = defaultContentType
	}
	h.Set(fiber.HeaderContentType, contentType)

	start, length := int64(0), size
	status := fiber.StatusOK
	if rangeHeader := c.Get(fiber.HeaderRange); rangeHeader != "" &&
		ifRangeHolds(c.Get(fiber.HeaderIfRange), f.ETag, modTime) {
		r, result := parseRange(rangeHeader, size)
		switch result {
		case rangeUnsatisfiable:
			h.Set(fiber.HeaderContentRange, "bytes */"+strconv.FormatInt(size, 10))
			return fiber.ErrRequestedRangeNotSatisfiable
		case rangeSatisfiable:
			start, length = r.start, r.length
			status = fiber.StatusPartialContent
			h.Set(fiber.HeaderContentRange, fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, size))
		case rangeIgnored:
			// Malformed, another unit, or several ranges: send the whole file.
		}
	}

	// fasthttp counts the body length in int; refuse rather than overflow on 32-bit hosts.
	if int64(int(length)) != length {
		return fmt.Errorf("httpfile: %s: %d bytes do not fit in an int", f.Path, length)
	}

	// The status must be set before the length: fasthttp ignores
	// SetContentLength while the status is one without a body (e.g. 304).
	c.Status(status)

	if method == fiber.MethodHead {
		// No file handed over for HEAD. With an empty body fasthttp writes no
		// Content-Length at all, so set it explicitly; it keeps an explicit
		// length when it skips the body (Response.Write, SkipBody).
		c.Response().SkipBody = true
		h.SetContentLength(int(length))
		return nil
	}

	return body(start, length)
}

// fileBody is the response body stream: a window of an open file that
// fasthttp closes after writing the response (it closes io.Closer streams).
type fileBody struct {
	limited io.LimitedReader
	file    *os.File
}

// fasthttp must see Close to release the file, and io.Copy must see WriteTo to reach sendfile.
var (
	_ io.ReadCloser = (*fileBody)(nil)
	_ io.WriterTo   = (*fileBody)(nil)
)

// Read reads from the window.
func (b *fileBody) Read(p []byte) (int, error) {
	n, err := b.limited.Read(p)
	metrics.ServedBytes.Add(int64(n))
	return n, err
}

// WriteTo hands the *io.LimitedReader over the *os.File to the destination
// so that bufio.Writer.ReadFrom -> net.TCPConn.ReadFrom can use sendfile;
// a plain Read loop would copy every byte through user space.
func (b *fileBody) WriteTo(w io.Writer) (int64, error) {
	n, err := io.Copy(w, &b.limited)
	metrics.ServedBytes.Add(n)
	return n, err
}

// Close closes the file.
func (b *fileBody) Close() error {
	return b.file.Close()
}

// notModified evaluates If-None-Match, or If-Modified-Since when there is no
// If-None-Match (RFC 9110 13.2.2 steps 3 and 4).
func notModified(c *fiber.Ctx, etag string, modTime time.Time) bool {
	if inm := c.Get(fiber.HeaderIfNoneMatch); inm != "" {
		return noneMatchHits(inm, etag)
	}
	ims := c.Get(fiber.HeaderIfModifiedSince)
	if ims == "" {
		return false
	}
	since, err := http.ParseTime(ims)
	if err != nil {
		return false // an invalid date is ignored (RFC 9110 13.1.3)
	}
	return !modTime.After(since)
}

// noneMatchHits reports whether an If-None-Match list matches etag with the
// weak comparison: W/ prefixes are ignored on both sides.
func noneMatchHits(list, etag string) bool {
	for {
		list = trimOWS(list)
		if list == "" {
			return false
		}
		if list[0] == ',' {
			list = list[1:]
			continue
		}
		if list[0] == '*' {
			return true // we always have a current representation
		}
		opaque, _, rest, ok := scanETag(list)
		if !ok {
			return false
		}
		if etag != "" && opaque == etag {
			return true
		}
		list = rest
	}
}

// ifRangeHolds evaluates If-Range (RFC 9110 13.1.5): the Range applies only
// when the validator still identifies our representation.
func ifRangeHolds(value, etag string, modTime time.Time) bool {
	value = trimOWS(value)
	if value == "" {
		return true
	}
	if value[0] == '"' || strings.HasPrefix(value, "W/") {
		opaque, weak, rest, ok := scanETag(value)
		// A weak tag never matches: If-Range needs the strong comparison.
		return ok && !weak && trimOWS(rest) == "" && etag != "" && opaque == etag
	}
	t, err := http.ParseTime(value)
	return err == nil && t.Equal(modTime)
}

// scanETag reads one entity-tag at the start of s and returns its opaque
// part without quotes, whether it was weak, and the rest of s.
func scanETag(s string) (opaque string, weak bool, rest string, ok bool) {
	if strings.HasPrefix(s, "W/") {
		weak = true
		s = s[2:]
	}
	if len(s) < 2 || s[0] != '"' {
		return "", false, "", false
	}
	for i := 1; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '"':
			return s[1:i], weak, s[i+1:], true
		case ch == 0x21 || (ch >= 0x23 && ch <= 0x7e) || ch >= 0x80:
			// etagc
		default:
			return "", false, "", false
		}
	}
	return "", false, "", false
}

// trimOWS removes optional whitespace (spaces and tabs) around s.
func trimOWS(s string) string {
	return strings.Trim(s, " \t")
}

type byteRange struct {
	start, length int64
}

type rangeResult int

const (
	rangeIgnored rangeResult = iota
	rangeSatisfiable
	rangeUnsatisfiable
)

// parseRange reads a Range header for a file of size bytes.
//
// Only one range is honoured. Several ranges would need a
// multipart/byteranges body, which none of our clients (MAAS, sstream-mirror,
// curl resuming) ask for, so they are ignored and the whole file is sent,
// as RFC 9110 14.2 allows. Malformed headers and other units are ignored too.
func parseRange(header string, size int64) (byteRange, rangeResult) {
	unit, set, ok := strings.Cut(header, "=")
	if !ok || !strings.EqualFold(trimOWS(unit), "bytes") {
		return byteRange{}, rangeIgnored
	}
	var spec string
	specs := 0
	for set != "" {
		var part string
		part, set, _ = strings.Cut(set, ",")
		// Empty list elements are allowed and skipped (RFC 9110 5.6.1).
		if part = trimOWS(part); part != "" {
			spec = part
			specs++
		}
	}
	if specs != 1 {
		return byteRange{}, rangeIgnored
	}

	first, last, ok := strings.Cut(spec, "-")
	if !ok {
		return byteRange{}, rangeIgnored
	}
	if first == "" {
		// Suffix range: the last n bytes.
		n, ok := parseDigits(last)
		switch {
		case !ok:
			return byteRange{}, rangeIgnored
		case n == 0:
			return byteRange{}, rangeUnsatisfiable
		case size == 0:
			// RFC 9110 counts this as satisfiable, but no Content-Range can
			// describe zero bytes: send the (empty) whole file instead.
			return byteRange{}, rangeIgnored
		}
		n = min(n, size)
		return byteRange{start: size - n, length: n}, rangeSatisfiable
	}

	start, ok := parseDigits(first)
	if !ok {
		return byteRange{}, rangeIgnored
	}
	end := int64(math.MaxInt64)
	if last != "" {
		if end, ok = parseDigits(last); !ok || end < start {
			return byteRange{}, rangeIgnored
		}
	}
	if start >= size {
		return byteRange{}, rangeUnsatisfiable
	}
	end = min(end, size-1)
	return byteRange{start: start, length: end - start + 1}, rangeSatisfiable
}

// parseDigits parses a non-empty run of ASCII digits; values past int64
// saturate, since any such position is past the end of any file.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		d := s[i]
		if d < '0' || d > '9' {
			return 0, false
		}
		if n > (math.MaxInt64-int64(d-'0'))/10 {
			n = math.MaxInt64
			continue
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}
