package transfer

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/customstream/customstream/internal/blobs"
	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/signing"
	"github.com/customstream/customstream/internal/simplestreams"
)

// snapshotAttempts bounds how often Export reads the documents again when a
// publish changes them under it.
const snapshotAttempts = 10

// ExportOptions configure Export.
type ExportOptions struct {
	Progress Progress // bytes written of documents, keyring and files
}

// Result says what an archive holds.
type Result struct {
	Fingerprint string // of the key that signed the documents
	Documents   int
	Versions    int
	Files       int   // distinct files
	Bytes       int64 // of the distinct files
}

// exporter reads one data directory.
type exporter struct {
	publishDir string
	blobs      *blobs.Store
	signer     *signing.Signer
	// wait pauses before the next read of a snapshot that did not verify.
	wait func(ctx context.Context, attempt int) error
}

// Export writes the stream published in dataDir to w as a tar archive:
// index.json and index.sjson, each product file (.json, then .sjson), the
// public keyring, then every item file once (the same content under two
// paths travels once). It reads only the published tree and the key, not the
// database, so it runs beside the server; a publish during the export either
// happens before its snapshot of the documents (read again until the whole
// tree verifies) or leaves the files it needs in place (they are hard links
// to immutable blobs, read from the blob store when the tree dropped them).
// A file gone from both is an error: the archive never disagrees with its
// own documents.
func Export(ctx context.Context, w io.Writer, dataDir string, o ExportOptions) (*Result, error) {
	e, err := newExporter(dataDir)
	if err != nil {
		return nil, err
	}
	docs, c, err := e.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return e.write(ctx, w, docs, c, o)
}

func newExporter(dataDir string) (*exporter, error) {
	keyFile := filepath.Join(dataDir, signing.KeyFile)
	if _, err := os.Stat(keyFile); err != nil {
		return nil, fmt.Errorf("export: no signing key (%w): start the server on %s once, so that it signs its stream", err, dataDir)
	}
	signer, err := signing.Open(dataDir, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	b, err := blobs.Open(dataDir)
	if err != nil {
		return nil, err
	}
	return &exporter{publishDir: filepath.Join(dataDir, "publish"), blobs: b, signer: signer, wait: backoff}, nil
}

// backoff waits a little longer after each attempt: a publish takes
// moments.
func backoff(ctx context.Context, attempt int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		return nil
	}
}

// write writes the archive of a snapshot.
func (e *exporter) write(ctx context.Context, w io.Writer, docs map[string][]byte, c *contents, o ExportOptions) (*Result, error) {
	keyring := e.signer.PublicKeyring()
	m := &meter{total: int64(len(keyring)) + c.bytes, report: o.Progress}
	for _, p := range c.docs {
		m.total += int64(len(docs[p]))
	}
	tw := tar.NewWriter(w)
	now := time.Now()
	for _, p := range c.docs {
		if err := writeBytes(tw, p, docs[p], now, m); err != nil {
			return nil, err
		}
	}
	if err := writeBytes(tw, KeyringPath, keyring, now, m); err != nil {
		return nil, err
	}
	for _, f := range c.files {
		if err := e.writeFile(ctx, tw, f, m); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return &Result{Fingerprint: c.fingerprint, Documents: len(c.docs), Versions: len(c.versions), Files: len(c.files), Bytes: c.bytes}, nil
}

// ExportFile writes the archive to file through file.part, renamed once
// complete and synced; a failed export leaves no file behind.
func ExportFile(ctx context.Context, file, dataDir string, o ExportOptions) (*Result, error) {
	part := file + ".part"
	f, err := os.Create(part)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	bw := bufio.NewWriterSize(f, copyBufSize)
	res, err := Export(ctx, bw, dataDir, o)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(part, file)
	}
	if err != nil {
		os.Remove(part)
		return nil, fmt.Errorf("export to %s: %w", file, err)
	}
	return res, nil
}

// snapshot reads the documents until they verify together and every file
// they name is there: a publish may be replacing them right now.
func (e *exporter) snapshot(ctx context.Context) (map[string][]byte, *contents, error) {
	var err error
	for attempt := 1; ; attempt++ {
		var docs map[string][]byte
		var c *contents
		if docs, err = e.readDocuments(); err == nil {
			if c, err = verifyDocuments(docs, e.signer.Keyring()); err == nil {
				if err = e.allFilesThere(c); err == nil {
					return docs, c, nil
				}
			}
		}
		if attempt == snapshotAttempts || errors.Is(err, ErrEmpty) {
			break
		}
		if err := e.wait(ctx, attempt); err != nil {
			return nil, nil, err
		}
	}
	switch {
	case errors.Is(err, ErrEmpty):
		return nil, nil, fmt.Errorf("export: %w", err)
	case errors.Is(err, simplestreams.ErrUnknownKey):
		return nil, nil, fmt.Errorf("export: %w: the server signs with another key than keys/ holds (a rotated or imported key takes effect at its next start)", err)
	}
	return nil, nil, fmt.Errorf("export: the published tree does not verify (%d reads): %w", snapshotAttempts, err)
}

// readDocuments reads both indexes and the product files the signed index names.
func (e *exporter) readDocuments() (map[string][]byte, error) {
	docs := map[string][]byte{}
	for _, p := range []string{publish.IndexPath, publish.SignedIndexPath} {
		data, err := os.ReadFile(filepath.Join(e.publishDir, filepath.FromSlash(p)))
		if err != nil {
			return nil, err
		}
		docs[p] = data
	}
	payload, _, err := simplestreams.VerifyClearsigned(docs[publish.SignedIndexPath], e.signer.Keyring())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", publish.SignedIndexPath, err)
	}
	var index simplestreams.Index
	if err := unmarshal(publish.SignedIndexPath, payload, &index); err != nil {
		return nil, err
	}
	for _, entry := range index.Index {
		for _, p := range []string{entry.Path, strings.TrimSuffix(entry.Path, ".sjson") + ".json"} {
			if err := checkDocPath(p); err != nil {
				return nil, fmt.Errorf("%s: %w", publish.SignedIndexPath, err)
			}
			data, err := os.ReadFile(filepath.Join(e.publishDir, filepath.FromSlash(p)))
			if err != nil {
				return nil, err
			}
			docs[p] = data
		}
	}
	return docs, nil
}

// open opens a file's content: its first path in the tree, or its blob.
func (e *exporter) open(f *file) (*os.File, error) {
	file, err := os.Open(filepath.Join(e.publishDir, filepath.FromSlash(f.first())))
	if errors.Is(err, fs.ErrNotExist) {
		file, err = os.Open(e.blobs.Path(f.sha))
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s (sha256 %s) is gone from the tree and the blob store: its version was deleted during the export; export again", f.first(), f.sha)
	}
	return file, err
}

// allFilesThere checks that every file can be opened with its size.
func (e *exporter) allFilesThere(c *contents) error {
	for _, f := range c.files {
		file, err := e.open(f)
		if err != nil {
			return err
		}
		info, err := file.Stat()
		file.Close()
		if err != nil {
			return err
		}
		if info.Size() != f.size {
			return fmt.Errorf("%s is %d bytes, listed %d", f.first(), info.Size(), f.size)
		}
	}
	return nil
}

// writeFile copies one file into the archive, hashing it on the way: what
// the archive holds is what its documents say.
func (e *exporter) writeFile(ctx context.Context, tw *tar.Writer, f *file, m *meter) error {
	file, err := e.open(f)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer file.Close()
	info, err := file.Stat()
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if info.Size() != f.size {
		return fmt.Errorf("export: %s is %d bytes, listed %d", f.first(), info.Size(), f.size)
	}
	if err := tw.WriteHeader(header(f.first(), f.size, info.ModTime())); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	h := sha256.New()
	src := &meteredReader{ctx: ctx, r: io.LimitReader(file, f.size), m: m}
	n, err := io.CopyBuffer(io.MultiWriter(tw, h), src, make([]byte, copyBufSize))
	if err != nil {
		return fmt.Errorf("export %s: %w", f.first(), err)
	}
	if n != f.size {
		return fmt.Errorf("export %s: read %d of %d bytes", f.first(), n, f.size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != f.sha {
		return fmt.Errorf("export %s: its sha256 is %s, listed %s: the file is damaged", f.first(), sum, f.sha)
	}
	return nil
}

func writeBytes(tw *tar.Writer, p string, data []byte, mtime time.Time, m *meter) error {
	if err := tw.WriteHeader(header(p, int64(len(data)), mtime)); err != nil {
		return fmt.Errorf("export %s: %w", p, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("export %s: %w", p, err)
	}
	m.add(int64(len(data)))
	return nil
}

// header is a regular file's header: size known up front, no owner.
func header(p string, size int64, mtime time.Time) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: p, Size: size, Mode: 0o644, ModTime: mtime}
}
