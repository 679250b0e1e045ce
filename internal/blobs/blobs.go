// Package blobs is the content-addressed file store: every file is kept once,
// named by its sha256, and enters the store only from staging on the same
// filesystem, so a commit is a link and never a copy.
package blobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Store keeps blobs under DIR/blobs/sha256/ab/abcdef… and staging under DIR/staging.
type Store struct {
	blobDir    string
	stagingDir string
}

// Open creates the directories under dataDir when missing.
func Open(dataDir string) (*Store, error) {
	s := &Store{
		blobDir:    filepath.Join(dataDir, "blobs", "sha256"),
		stagingDir: filepath.Join(dataDir, "staging"),
	}
	for _, d := range []string{s.blobDir, s.stagingDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("blobs: %w", err)
		}
	}
	return s, nil
}

// ValidSum reports whether sum is 64 lowercase hex digits.
func ValidSum(sum string) bool {
	if len(sum) != 64 {
		return false
	}
	for _, r := range sum {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

// Path is where the blob with this sha256 lives (it may not exist).
func (s *Store) Path(sum string) string {
	return filepath.Join(s.blobDir, sum[:2], sum)
}

// Has returns the blob's size when it is in the store.
func (s *Store) Has(sum string) (int64, bool) {
	if !ValidSum(sum) {
		return 0, false
	}
	fi, err := os.Stat(s.Path(sum))
	if err != nil || !fi.Mode().IsRegular() {
		return 0, false
	}
	return fi.Size(), true
}

// StagingDir returns (and creates) staging/sub, where one kind of work keeps
// its partial files.
func (s *Store) StagingDir(sub string) (string, error) {
	d := filepath.Join(s.stagingDir, sub)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("staging: %w", err)
	}
	return d, nil
}

// Commit links a staged file whose sha256 the caller has computed into the
// store. The staged file stays, so a retried job can commit it again; an
// existing blob with the same sum is kept as it is.
func (s *Store) Commit(stagedPath, sum string) error {
	if !ValidSum(sum) {
		return fmt.Errorf("commit %s: invalid sha256 %q", stagedPath, sum)
	}
	if _, ok := s.Has(sum); ok {
		return nil
	}
	dst := s.Path(sum)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("commit %s: %w", sum, err)
	}
	// Blobs are shared by every version and hard-linked into publish/:
	// read-only guards them against an accidental write through any link.
	if err := os.Chmod(stagedPath, 0o444); err != nil {
		return fmt.Errorf("commit %s: %w", sum, err)
	}
	if err := os.Link(stagedPath, dst); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("commit %s: %w", sum, err)
	}
	return nil
}

// FileID tells one blob file from a later one at the same path.
type FileID struct {
	Inode   uint64 `json:"inode,omitempty"`
	ModTime int64  `json:"mod_time,omitempty"` // Unix nanoseconds
}

// IDOf returns the identity of an opened file.
func IDOf(fi fs.FileInfo) FileID {
	id := FileID{ModTime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Inode = st.Ino
	}
	return id
}

// RemoveDamaged removes the blob file a check found damaged, if it is still
// that file (a zero id: the blob was missing), and reports whether the blob
// is gone now. A different file at the path is a fresh copy: it stays, and
// the answer is false.
func (s *Store) RemoveDamaged(sum string, id FileID) (bool, error) {
	if !ValidSum(sum) {
		return false, fmt.Errorf("remove: invalid sha256 %q", sum)
	}
	fi, err := os.Stat(s.Path(sum))
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("remove blob %s: %w", sum, err)
	}
	if id == (FileID{}) || IDOf(fi) != id {
		return false, nil
	}
	if err := s.Remove(sum); err != nil {
		return false, err
	}
	return true, nil
}

// Remove deletes the blob; a missing blob is not an error.
func (s *Store) Remove(sum string) error {
	if !ValidSum(sum) {
		return fmt.Errorf("remove: invalid sha256 %q", sum)
	}
	if err := os.Remove(s.Path(sum)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove blob %s: %w", sum, err)
	}
	return nil
}

// Sums lists every blob in the store.
func (s *Store) Sums() ([]string, error) {
	var sums []string
	err := filepath.WalkDir(s.blobDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && ValidSum(d.Name()) {
			sums = append(sums, d.Name())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	return sums, nil
}

// GC removes every blob that used does not name and returns how many bytes it freed.
func (s *Store) GC(used map[string]bool) (int64, error) {
	sums, err := s.Sums()
	if err != nil {
		return 0, err
	}
	var freed int64
	for _, sum := range sums {
		if used[sum] {
			continue
		}
		if size, ok := s.Has(sum); ok {
			freed += size
		}
		if err := s.Remove(sum); err != nil {
			return freed, err
		}
	}
	return freed, nil
}

// CleanStaging removes files in staging/sub for which keep (given the name
// StagedRel returns) is false: the leftovers of interrupted uploads.
func (s *Store) CleanStaging(sub string, keep func(rel string) bool) (int, error) {
	dir, err := s.StagingDir(sub)
	if err != nil {
		return 0, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("clean staging: %w", err)
	}
	removed := 0
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if keep(sub + "/" + e.Name()) {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return removed, fmt.Errorf("clean staging: %w", err)
		}
		removed++
	}
	return removed, nil
}

// StagedRel names a staging file relative to the staging directory: job
// payloads carry that, so a worker whose data directory is mounted at
// another place (or that runs in another directory) finds the same file.
func (s *Store) StagedRel(abs string) (string, error) {
	rel, err := filepath.Rel(s.stagingDir, filepath.Clean(abs))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return "", fmt.Errorf("%s is not in the staging directory", abs)
	}
	return filepath.ToSlash(rel), nil
}

// StagedPath resolves a name from StagedRel; a name that would leave the
// staging directory is an error, so a payload cannot point anywhere else.
func (s *Store) StagedPath(rel string) (string, error) {
	clean := filepath.Clean(filepath.FromSlash(rel))
	if rel == "" || filepath.IsAbs(clean) || clean == "." || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) || strings.ContainsRune(rel, 0) {
		return "", fmt.Errorf("%q is not a staging file", rel)
	}
	return filepath.Join(s.stagingDir, clean), nil
}

// hashBufSize is large enough that sha256 (SHA-NI, ~1 GB/s) and not the
// syscalls dominates.
const hashBufSize = 1 << 20

// HashFile returns the sha256 and size of the file at path, calling progress
// with the bytes read so far (progress may be nil).
func HashFile(path string, progress func(done int64)) (string, int64, error) {
	return HashFileContext(context.Background(), path, progress)
}

// HashFileContext is HashFile that stops, with ctx's error, once ctx ends
// (a worker shutting down); the file is left as it was.
func HashFileContext(ctx context.Context, path string, progress func(done int64)) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("hash: %w", err)
	}
	defer f.Close()
	sum, n, err := HashReader(ctx, f, progress)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	return sum, n, nil
}

// HashReader returns the sha256 and length of what r holds, calling
// progress (which may be nil) with the bytes read so far; it stops with
// ctx's error once ctx ends. The next buffer is read while the last is
// hashed: copying a buffer out of the page cache is about a tenth of the
// time to hash it, and a second core does it meanwhile.
func HashReader(ctx context.Context, r io.Reader, progress func(done int64)) (string, int64, error) {
	type chunk struct {
		buf []byte
		n   int
		err error
	}
	free := make(chan []byte, hashBuffers)
	for range hashBuffers {
		free <- make([]byte, hashBufSize)
	}
	full := make(chan chunk, hashBuffers)
	stop := make(chan struct{})
	var reading sync.WaitGroup
	defer reading.Wait()
	defer close(stop)
	reading.Go(func() {
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			n, err := io.ReadFull(r, buf)
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			select {
			case full <- chunk{buf, n, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	})
	h := sha256.New()
	var done int64
	for {
		if err := ctx.Err(); err != nil {
			return "", 0, err
		}
		var c chunk
		select {
		case c = <-full:
		case <-ctx.Done():
			return "", 0, ctx.Err()
		}
		if c.n > 0 {
			h.Write(c.buf[:c.n])
			done += int64(c.n)
			if progress != nil {
				progress(done)
			}
		}
		if c.err == io.EOF {
			break
		}
		if c.err != nil {
			return "", 0, c.err
		}
		free <- c.buf
	}
	return hex.EncodeToString(h.Sum(nil)), done, nil
}

// hashBuffers is how many buffers HashReader reads ahead into.
const hashBuffers = 3

// FreeSpace returns the bytes an unprivileged process may still write on the
// filesystem holding dir.
func FreeSpace(dir string) (int64, error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return int64(fs.Bavail) * fs.Bsize, nil
}
