// Package mirror downloads upstream items into the blob store: resumed with
// HTTP Range after a crash or a dropped connection, checked against the
// upstream size and sha256, committed only when they match, and skipped when
// the blob store already holds the same content.
package mirror

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/customstream/customstream/internal/blobs"
	"github.com/customstream/customstream/internal/metrics"
	"github.com/customstream/customstream/internal/units"
)

// StagingDir is the staging sub-directory of downloads, owned by workers.
const StagingDir = "mirror"

// Item is one file to fetch.
type Item struct {
	Name   string
	URL    string
	Size   int64
	SHA256 string
}

// Stats says what a Fetch did.
type Stats struct {
	Downloaded int   // items fetched (in whole or in part)
	Reused     int   // items already in the blob store
	Bytes      int64 // bytes received over the network
	Resumed    int64 // bytes a partial file already held
}

// ErrMismatch marks an item whose size or sha256 differs from the upstream
// metadata; nothing of it is kept.
var ErrMismatch = errors.New("does not match the upstream metadata")

// ErrNoSpace marks a download the data directory has no room for.
var ErrNoSpace = errors.New("not enough space")

// Downloader fetches items with a bounded number of parallel downloads.
type Downloader struct {
	Client   *http.Client
	Blobs    *blobs.Store
	Parallel int
	Log      *slog.Logger
}

// Progress receives the bytes done out of the bytes to download; it is
// called from one goroutine at a time.
type Progress func(done, total int64)

// Fetch makes every item available in the blob store. It checks free space
// first, then downloads the missing items in parallel.
func (d *Downloader) Fetch(ctx context.Context, items []Item, progress Progress) (Stats, error) {
	var st Stats
	var todo []Item
	seen := map[string]bool{}
	var total int64
	for _, it := range items {
		if !blobs.ValidSum(it.SHA256) {
			return st, fmt.Errorf("item %s: upstream sha256 %q is not valid: %w", it.Name, it.SHA256, ErrMismatch)
		}
		if size, ok := d.Blobs.Has(it.SHA256); ok && size == it.Size {
			st.Reused++
			continue
		}
		// Two items with the same content are downloaded once.
		if seen[it.SHA256] {
			continue
		}
		seen[it.SHA256] = true
		todo = append(todo, it)
		total += it.Size
	}
	dir, err := d.Blobs.StagingDir(StagingDir)
	if err != nil {
		return st, err
	}
	if err := checkSpace(dir, todo); err != nil {
		d.dropParts(dir, todo)
		return st, err
	}
	counter := &counter{total: total, report: progress}
	parallel := max(d.Parallel, 1)
	sem := make(chan struct{}, parallel)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, it := range todo {
		sem <- struct{}{}
		if ctx.Err() != nil {
			<-sem
			break
		}
		wg.Add(1)
		go func(it Item) {
			defer wg.Done()
			defer func() { <-sem }()
			got, resumed, err := d.fetchOne(ctx, dir, it, counter)
			mu.Lock()
			defer mu.Unlock()
			st.Bytes += got
			st.Resumed += resumed
			if err != nil {
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				return
			}
			st.Downloaded++
		}(it)
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if errors.Is(firstErr, ErrNoSpace) {
		d.dropParts(dir, todo)
	}
	return st, firstErr
}

// dropParts removes the partial files of items after running out of space:
// kept for a resume, they would hold the space that uploads and other jobs
// need, while the download cannot finish anyway. A part another worker is
// writing (it holds the lock) stays.
func (d *Downloader) dropParts(dir string, items []Item) {
	for _, it := range items {
		part := filepath.Join(dir, it.SHA256+".part")
		f, err := os.OpenFile(part, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			if err := os.Remove(part); err != nil {
				d.Log.Warn("Unable to remove a partial download", slog.String("path", part), slog.Any("error", err))
			}
		}
		f.Close()
	}
}

// counter adds up bytes from parallel downloads for one progress figure.
type counter struct {
	mu     sync.Mutex
	done   int64
	total  int64
	report Progress
}

func (c *counter) add(n int64) {
	if c.report == nil || n == 0 {
		return
	}
	// Reporting under the lock keeps the figures in order and spares
	// the callback any locking of its own.
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done += n
	c.report(c.done, c.total)
}

// fetchOne downloads one item into staging/mirror/SHA256.part, resuming what
// a previous attempt left, and commits it when it verifies.
func (d *Downloader) fetchOne(ctx context.Context, dir string, it Item, c *counter) (got, resumed int64, err error) {
	part := filepath.Join(dir, it.SHA256+".part")
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return 0, 0, fmt.Errorf("item %s: %w", it.Name, err)
	}
	defer f.Close()
	// Another worker on this host may be fetching the same content.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return 0, 0, fmt.Errorf("item %s: lock: %w", it.Name, err)
	}
	if size, ok := d.Blobs.Has(it.SHA256); ok && size == it.Size {
		os.Remove(part)
		return 0, 0, nil
	}
	h := sha256.New()
	have, err := hashPrefix(f, h, it.Size)
	if err != nil {
		return 0, 0, fmt.Errorf("item %s: %w", it.Name, err)
	}
	c.add(have)
	if have < it.Size {
		got, err = d.download(ctx, f, h, have, it, c)
		if err != nil {
			return got, have, err
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	info, err := f.Stat()
	if err != nil {
		return got, have, fmt.Errorf("item %s: %w", it.Name, err)
	}
	if info.Size() != it.Size || sum != it.SHA256 {
		os.Remove(part)
		return got, have, fmt.Errorf("item %s from %s: got %d bytes with sha256 %s, upstream says %d bytes with %s: %w",
			it.Name, it.URL, info.Size(), sum, it.Size, it.SHA256, ErrMismatch)
	}
	if err := d.Blobs.Commit(part, sum); err != nil {
		return got, have, fmt.Errorf("item %s: %w", it.Name, err)
	}
	os.Remove(part)
	return got, have, nil
}

// hashPrefix feeds what the partial file holds into h; a file longer than
// the item is cut back to nothing, since it cannot be right.
func hashPrefix(f *os.File, h hash.Hash, size int64) (int64, error) {
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if info.Size() > size {
		if err := f.Truncate(0); err != nil {
			return 0, err
		}
		_, err := f.Seek(0, io.SeekStart)
		return 0, err
	}
	n, err := io.CopyBuffer(h, f, make([]byte, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("read partial file: %w", err)
	}
	return n, nil
}

// download appends the rest of the item to f, asking for a Range when f
// already holds a prefix.
func (d *Downloader) download(ctx context.Context, f *os.File, h hash.Hash, have int64, it Item, c *counter) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, it.URL, nil)
	if err != nil {
		return 0, fmt.Errorf("item %s: %w", it.Name, err)
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := d.Client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("item %s: %w", it.Name, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		if start, ok := rangeStart(resp.Header.Get("Content-Range")); !ok || start != have {
			return 0, fmt.Errorf("item %s from %s: the server answered range %q to a request from byte %d",
				it.Name, it.URL, resp.Header.Get("Content-Range"), have)
		}
		d.Log.Info("Resuming download", slog.String("url", it.URL), slog.Int64("from", have))
	case resp.StatusCode == http.StatusOK:
		// No range support (or nothing to resume): start over.
		if have > 0 {
			if err := f.Truncate(0); err != nil {
				return 0, err
			}
			h.Reset()
			c.add(-have)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return 0, err
		}
	default:
		return 0, fmt.Errorf("item %s from %s: %s", it.Name, it.URL, resp.Status)
	}
	// Never read more than the metadata promises: a larger file is wrong.
	limit := it.Size - have
	if resp.StatusCode == http.StatusOK {
		limit = it.Size
	}
	w := &progressWriter{w: io.MultiWriter(f, h), add: c.add}
	n, err := io.CopyBuffer(w, io.LimitReader(resp.Body, limit+1), make([]byte, 1<<20))
	if errors.Is(err, syscall.ENOSPC) {
		return n, fmt.Errorf("item %s: %w in the data directory", it.Name, ErrNoSpace)
	}
	if err != nil {
		return n, fmt.Errorf("item %s from %s: download interrupted after %d bytes: %w", it.Name, it.URL, n, err)
	}
	return n, nil
}

// rangeStart reads the first byte position of "bytes START-END/SIZE".
func rangeStart(cr string) (int64, bool) {
	rest, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, false
	}
	start, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(start, 10, 64)
	return n, err == nil
}

type progressWriter struct {
	w   io.Writer
	add func(int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	metrics.DownloadedBytes.Add(int64(n))
	p.add(int64(n))
	return n, err
}

// checkSpace refuses to start when the filesystem cannot hold what is left
// to download, and says how much is needed.
func checkSpace(dir string, items []Item) error {
	var need int64
	for _, it := range items {
		need += it.Size
		if info, err := os.Stat(filepath.Join(dir, it.SHA256+".part")); err == nil {
			need -= min(info.Size(), it.Size)
		}
	}
	free, err := blobs.FreeSpace(dir)
	if err != nil {
		return err
	}
	if need > free {
		return fmt.Errorf("%w: the download needs %s, the data directory has %s free", ErrNoSpace, units.Bytes(need), units.Bytes(free))
	}
	return nil
}
