package web

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/sys/unix"

	"github.com/customstream/customstream/internal/blobs"
	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/metrics"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/units"
	"github.com/customstream/customstream/jobs"
)

// Limits of the non-file parts of an upload, so memory stays bounded
// whatever a client sends.
const (
	maxFieldSize  = 4 << 10
	maxParts      = 64
	copyBufferLen = 1 << 20
)

// uploadError is a refused upload: a status, a message and, for
// validation problems, the fields concerned.
type uploadError struct {
	status int
	msg    string
	fields images.ValidationError
}

func (e *uploadError) Error() string {
	if len(e.fields) > 0 {
		return e.fields.Error()
	}
	return e.msg
}

func badUpload(format string, args ...any) *uploadError {
	return &uploadError{status: fiber.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// receivedUpload is the parsed form: metadata and the staged files.
type receivedUpload struct {
	form  map[string]string
	meta  images.Metadata
	files []images.StagedFile
	paths []string // the staged files' full paths
}

// remove deletes the staged files of a refused upload.
func (r *receivedUpload) remove() {
	for _, p := range r.paths {
		os.Remove(p)
	}
	r.files, r.paths = nil, nil
}

// requestBody is the request body as a stream: fasthttp streams large bodies
// (StreamRequestBody) and has small ones in memory already. A streamed body
// may stall at most BodyIdleTimeout between reads: an upload of many
// gigabytes takes as long as it needs, but a client that stops sending
// cannot hold a connection and a staging file for ever.
func (h *handler) requestBody(c *fiber.Ctx) io.Reader {
	if body := c.Context().RequestBodyStream(); body != nil {
		if conn := c.Context().Conn(); conn != nil {
			return &idleReader{r: body, conn: conn, idle: h.BodyIdleTimeout}
		}
		return body
	}
	return bytes.NewReader(c.Body())
}

// idleReader moves the connection's read deadline forward as data comes in,
// replacing the header deadline fasthttp set (ReadTimeout).
type idleReader struct {
	r     io.Reader
	conn  net.Conn
	idle  time.Duration
	moved time.Time
}

func (d *idleReader) Read(p []byte) (int, error) {
	// Moving the deadline costs a timer update: at most once a second.
	if now := time.Now(); now.Sub(d.moved) > time.Second {
		if err := d.conn.SetReadDeadline(now.Add(d.idle)); err != nil {
			return 0, err
		}
		d.moved = now
	}
	return d.r.Read(p)
}

// receive reads a multipart upload from the request body stream, writing each
// file part straight to staging, so memory stays bounded at any size. A
// refused upload comes back with the fields read, its files removed.
func (h *handler) receive(c *fiber.Ctx) (*receivedUpload, *uploadError) {
	mediaType, params, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err != nil || mediaType != fiber.MIMEMultipartForm || params["boundary"] == "" {
		return nil, badUpload("send the image as multipart/form-data (curl -F field=value -F rootfs=@FILE)")
	}
	// A body that cannot fit is refused before a byte is written; a chunked
	// one is stopped when the disk fills (ENOSPC, below).
	if size := int64(c.Request().Header.ContentLength()); size > 0 {
		if free, err := blobs.FreeSpace(h.Config.DataDir); err == nil && size > free {
			c.Context().SetConnectionClose()
			return nil, &uploadError{status: fiber.StatusInsufficientStorage, msg: fmt.Sprintf(
				"not enough space: the upload is %s, the data directory has %s free", units.Bytes(size), units.Bytes(free))}
		}
	}
	body := h.requestBody(c)
	r := &receivedUpload{form: map[string]string{}}
	if uerr := h.readParts(multipart.NewReader(body, params["boundary"]), r); uerr != nil {
		r.remove()
		// Part of the body may be unread: the connection cannot carry
		// another request.
		c.Context().SetConnectionClose()
		return r, uerr
	}
	// fasthttp does not read what the handler left of a streamed body (the
	// epilogue, a chunked body's last chunk), which would then be taken for
	// the next request on the connection.
	if n, _ := io.Copy(io.Discard, io.LimitReader(body, maxFieldSize+1)); n > maxFieldSize {
		c.Context().SetConnectionClose()
	}
	return r, nil
}

// readParts reads every part. After the first refusal it goes on reading
// and discarding the rest, so the client gets a clean answer instead of a
// connection reset in the middle of its upload; a broken stream or an
// oversized file ends it at once.
func (h *handler) readParts(mr *multipart.Reader, r *receivedUpload) *uploadError {
	seen := map[string]bool{}
	var refused *uploadError
	refuse := func(e *uploadError) {
		if refused == nil {
			refused = e
			r.remove()
		}
	}
	for n := 0; ; n++ {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			return refused
		}
		if err != nil {
			return badUpload("the upload was interrupted or is not valid multipart data: %v", err)
		}
		name := part.FormName()
		switch {
		case n >= maxParts:
			return badUpload("too many form fields (at most %d)", maxParts)
		case name == "":
			refuse(badUpload("a form part has no field name"))
		case seen[name]:
			refuse(badUpload("%s: given twice", name))
		}
		seen[name] = true
		if refused != nil {
			if _, err := io.Copy(io.Discard, part); err != nil {
				return badUpload("the upload was interrupted: %v", err)
			}
			continue
		}
		if images.IsFileField(name) {
			// Text fields usually come first (browsers send them in form
			// order): refuse bad metadata before storing gigabytes.
			if verr := r.meta.Preview(); len(verr) > 0 && len(r.files) == 0 {
				refuse(&uploadError{status: fiber.StatusBadRequest, fields: verr})
				if _, err := io.Copy(io.Discard, part); err != nil {
					return badUpload("the upload was interrupted: %v", err)
				}
				continue
			}
			f, path, uerr := h.stageFile(name, part)
			if uerr != nil {
				r.remove()
				return uerr
			}
			r.files = append(r.files, *f)
			r.paths = append(r.paths, path)
			continue
		}
		value, err := io.ReadAll(io.LimitReader(part, maxFieldSize+1))
		if err != nil {
			return badUpload("the upload was interrupted: %v", err)
		}
		if len(value) > maxFieldSize {
			refuse(badUpload("%s: longer than %d bytes", name, maxFieldSize))
			continue
		}
		r.form[name] = string(value)
		if ferr := r.meta.Set(name, string(value)); ferr != nil {
			refuse(&uploadError{status: fiber.StatusBadRequest, fields: images.ValidationError{*ferr}})
		}
	}
}

// writeBehindChunk is how much of an upload may wait in the page cache
// before its write to disk starts.
const writeBehindChunk = 32 << 20

// writeBehind starts writing each chunk to disk as soon as it is complete,
// so the fsync before the answer waits for the last chunk, not the whole
// upload: receiving and writing overlap (measured: issue 7's upload row).
type writeBehind struct {
	f                *os.File
	written, started int64
}

func (w *writeBehind) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.written += int64(n)
	if w.written-w.started >= writeBehindChunk {
		// Only queues the pages for writing; the fsync still waits for them.
		_ = unix.SyncFileRange(int(w.f.Fd()), w.started, w.written-w.started, unix.SYNC_FILE_RANGE_WRITE)
		w.started = w.written
	}
	return n, err
}

// stageFile copies one file part to a new staging file, enforcing the size
// limit, and returns it with its full path.
func (h *handler) stageFile(field string, part io.Reader) (*images.StagedFile, string, *uploadError) {
	unwritable := &uploadError{status: fiber.StatusInternalServerError, msg: "staging is not writable: see the server log"}
	dir, err := h.Blobs.StagingDir(images.UploadsStaging)
	if err != nil {
		return nil, "", unwritable
	}
	f, err := os.CreateTemp(dir, "upload-"+field+"-*")
	if err != nil {
		h.Log.Error("Unable to create a staging file", slog.Any("error", err))
		return nil, "", unwritable
	}
	path := f.Name()
	limit := h.Config.MaxUploadSize
	// The multipart reader hands out a few KiB at a time: gather them into
	// large writes. writeBehind hides the file's ReadFrom, which would get
	// the copy in small pieces.
	w := bufio.NewWriterSize(&writeBehind{f: f}, copyBufferLen)
	n, err := w.ReadFrom(io.LimitReader(part, limit+1))
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	// On disk before the hash job reads it and the blob store keeps it.
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	fail := func(uerr *uploadError) (*images.StagedFile, string, *uploadError) {
		os.Remove(path)
		return nil, "", uerr
	}
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return fail(&uploadError{status: fiber.StatusInsufficientStorage, msg: fmt.Sprintf("%s: not enough space left in the data directory", field)})
	case err != nil:
		return fail(badUpload("%s: the upload was interrupted: %v", field, err))
	case n > limit:
		return fail(badUpload("%s: larger than the %s limit (CUSTOMSTREAM_MAX_UPLOAD)", field, units.Bytes(limit)))
	case n == 0:
		return fail(badUpload("%s: the file is empty", field))
	}
	rel, err := h.Blobs.StagedRel(path)
	if err != nil {
		h.Log.Error("Staging file outside staging", slog.Any("error", err))
		return fail(unwritable)
	}
	metrics.UploadedBytes.Add(n)
	return &images.StagedFile{Field: field, Path: rel, Size: n}, path, nil
}

// createImage validates a received upload, records it and enqueues its hash
// job; the accepted upload and the refused one are audited.
func (h *handler) createImage(c *fiber.Ctx) (*store.Image, *store.Job, *receivedUpload, *uploadError) {
	img, job, r, uerr := h.createImageUnaudited(c)
	if uerr != nil {
		outcome := store.AuditRefused
		if uerr.status >= 500 {
			outcome = store.AuditFailed
		}
		target := "upload"
		if r != nil {
			target = uploadTarget(r.form)
		}
		h.auditOutcome(c, auditUpload, outcome, target, uerr.Error())
		return nil, nil, r, uerr
	}
	h.audit(c, auditUpload, imageTarget(img), fmt.Sprintf("image %s, %d files, %s", img.ID, len(img.Items), units.Bytes(img.Size())))
	return img, job, r, nil
}

// uploadTarget names a refused upload by the fields it sent.
func uploadTarget(form map[string]string) string {
	var parts []string
	for _, f := range []string{"os", "release", "arch", "subarch", "version"} {
		if v := strings.TrimSpace(form[f]); v != "" {
			parts = append(parts, v)
		}
	}
	if len(parts) == 0 {
		return "upload"
	}
	return strings.Join(parts, " ")
}

// createImageUnaudited is createImage without the audit entry.
func (h *handler) createImageUnaudited(c *fiber.Ctx) (*store.Image, *store.Job, *receivedUpload, *uploadError) {
	r, uerr := h.receive(c)
	if uerr != nil {
		return nil, nil, r, uerr
	}
	up, err := images.PrepareUpload(r.meta, r.files)
	if err == nil {
		var img *store.Image
		var job *store.Job
		img, job, err = h.Images.Create(up, func(img *store.Image) (*store.Job, error) {
			return jobs.NewHashJob(images.NewID(), img)
		})
		if err == nil {
			jobs.EnqueueRecorded(c.Context(), h.Queue, *job, h.Log)
			return img, job, r, nil
		}
	}
	r.remove()
	var verr images.ValidationError
	if errors.As(err, &verr) {
		return nil, nil, r, &uploadError{status: fiber.StatusBadRequest, fields: verr}
	}
	h.Log.Error("Unable to record an upload", slog.Any("error", err))
	return nil, nil, r, &uploadError{status: fiber.StatusInternalServerError, msg: "the upload could not be recorded: see the server log"}
}

// uploadFromAPI is POST /api/images/upload.
func (h *handler) uploadFromAPI(c *fiber.Ctx) error {
	img, job, _, uerr := h.createImage(c)
	if uerr != nil {
		body := fiber.Map{"error": uerr.Error()}
		if len(uerr.fields) > 0 {
			body["fields"] = uerr.fields
		}
		return c.Status(uerr.status).JSON(body)
	}
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{
		"image": fiber.Map{"id": img.ID, "product_id": img.ProductID, "version_name": img.VersionName, "status": img.Status},
		"job":   fiber.Map{"id": job.ID},
	})
}

// uploadFromPortal is the upload form's POST: on success htmx is sent to
// the images page, on failure each message lands next to its field.
func (h *handler) uploadFromPortal(c *fiber.Ctx) error {
	img, _, _, uerr := h.createImage(c)
	if uerr != nil {
		errs := uerr.fields.ByField()
		fields := make([]string, 0, len(errs))
		for f := range errs {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		msg := uerr.msg
		if len(errs) > 0 {
			msg = ""
		}
		c.Status(uerr.status)
		return h.partial(c, "upload_errors", fiber.Map{"Message": msg, "Errors": errs, "Fields": fields})
	}
	c.Set("HX-Redirect", "/images?uploaded="+img.ID)
	return c.Status(fiber.StatusAccepted).SendString("")
}
