package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/blobs"
)

// upstream serves files with Range support and can drop a connection
// part-way, as a flaky CDN does.
type upstream struct {
	*httptest.Server
	mu       sync.Mutex
	files    map[string][]byte
	dropAt   map[string]int // bytes after which the next full GET is cut
	noRange  bool
	requests []string // "path range"
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{files: map[string][]byte{}, dropAt: map[string]int{}}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	data, ok := u.files[r.URL.Path]
	drop, dropping := u.dropAt[r.URL.Path]
	if dropping {
		delete(u.dropAt, r.URL.Path)
	}
	u.requests = append(u.requests, r.URL.Path+" "+r.Header.Get("Range"))
	noRange := u.noRange
	u.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if noRange {
		r.Header.Del("Range")
	}
	if dropping {
		// Promise the whole file, send part of it, then hang up.
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data[:drop])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(data))
}

func (u *upstream) add(path string, size int, seed int64) Item {
	data := make([]byte, size)
	rand.New(rand.NewSource(seed)).Read(data)
	u.mu.Lock()
	u.files[path] = data
	u.mu.Unlock()
	sum := sha256.Sum256(data)
	return Item{Name: filepath.Base(path), URL: u.URL + path, Size: int64(size), SHA256: hex.EncodeToString(sum[:])}
}

func (u *upstream) log() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.requests...)
}

func newDownloader(t *testing.T) (*Downloader, *blobs.Store) {
	b, err := blobs.Open(t.TempDir())
	require.NoError(t, err)
	return &Downloader{Client: http.DefaultClient, Blobs: b, Parallel: 3, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, b
}

func blobContent(t *testing.T, b *blobs.Store, sum string) []byte {
	t.Helper()
	data, err := os.ReadFile(b.Path(sum))
	require.NoError(t, err)
	return data
}

func TestFetchDownloadsVerifiesAndReuses(t *testing.T) {
	u := newUpstream(t)
	d, b := newDownloader(t)
	items := []Item{u.add("/a/squashfs", 300_000, 1), u.add("/a/kernel", 5000, 2), u.add("/a/initrd", 7000, 3)}
	var last, total int64
	st, err := d.Fetch(context.Background(), items, func(done, tot int64) { last, total = done, tot })
	require.NoError(t, err)
	assert.Equal(t, 3, st.Downloaded)
	assert.Equal(t, int64(312_000), st.Bytes)
	assert.Equal(t, int64(312_000), total)
	assert.Equal(t, total, last)
	for _, it := range items {
		sum := sha256.Sum256(blobContent(t, b, it.SHA256))
		assert.Equal(t, it.SHA256, hex.EncodeToString(sum[:]))
	}
	dir, err := b.StagingDir(StagingDir)
	require.NoError(t, err)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "no partial file stays")

	// A second version sharing two files downloads only the new one.
	items2 := []Item{items[0], items[1], u.add("/b/initrd", 6000, 4)}
	items2[0].URL = u.URL + "/b/squashfs-same-content"
	before := len(u.log())
	st, err = d.Fetch(context.Background(), items2, nil)
	require.NoError(t, err)
	assert.Equal(t, 2, st.Reused)
	assert.Equal(t, 1, st.Downloaded)
	assert.Equal(t, []string{"/b/initrd "}, u.log()[before:])
}

func TestFetchResumesAfterDroppedConnection(t *testing.T) {
	u := newUpstream(t)
	d, b := newDownloader(t)
	it := u.add("/big/squashfs", 1<<20, 7)
	u.dropAt["/big/squashfs"] = 400_000

	_, err := d.Fetch(context.Background(), []Item{it}, nil)
	require.Error(t, err, "the first attempt is cut off")
	_, ok := b.Has(it.SHA256)
	assert.False(t, ok, "nothing unverified enters the blob store")

	st, err := d.Fetch(context.Background(), []Item{it}, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(400_000), st.Resumed, "the retry keeps what it had")
	assert.Equal(t, int64(1<<20-400_000), st.Bytes, "and fetches only the rest")
	log := u.log()
	assert.Equal(t, "/big/squashfs bytes=400000-", log[len(log)-1])
	sum := sha256.Sum256(blobContent(t, b, it.SHA256))
	assert.Equal(t, it.SHA256, hex.EncodeToString(sum[:]))
}

func TestFetchRestartsWhenServerIgnoresRange(t *testing.T) {
	u := newUpstream(t)
	d, b := newDownloader(t)
	it := u.add("/big/root-tgz", 500_000, 8)
	u.dropAt["/big/root-tgz"] = 100_000
	_, err := d.Fetch(context.Background(), []Item{it}, nil)
	require.Error(t, err)
	u.noRange = true
	st, err := d.Fetch(context.Background(), []Item{it}, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(500_000), st.Bytes)
	_, ok := b.Has(it.SHA256)
	assert.True(t, ok)
}

func TestFetchRefusesMismatches(t *testing.T) {
	tests := []struct {
		name   string
		mangle func(it *Item)
	}{
		{"wrong sha256", func(it *Item) { it.SHA256 = "00" + it.SHA256[2:] }},
		{"upstream file shorter than stated", func(it *Item) { it.Size += 10 }},
		{"upstream file longer than stated", func(it *Item) { it.Size -= 10 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newUpstream(t)
			d, b := newDownloader(t)
			it := u.add("/x/file", 50_000, 9)
			tt.mangle(&it)
			_, err := d.Fetch(context.Background(), []Item{it}, nil)
			require.ErrorIs(t, err, ErrMismatch)
			_, ok := b.Has(it.SHA256)
			assert.False(t, ok)
			dir, err := b.StagingDir(StagingDir)
			require.NoError(t, err)
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			assert.Empty(t, entries, "a file that does not verify is not kept")
		})
	}
}

func TestFetchErrors(t *testing.T) {
	u := newUpstream(t)
	d, _ := newDownloader(t)
	missing := Item{Name: "gone", URL: u.URL + "/missing", Size: 10, SHA256: hex.EncodeToString(make([]byte, 32))}
	_, err := d.Fetch(context.Background(), []Item{missing}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "404 Not Found")

	bad := Item{Name: "bad", URL: u.URL + "/x", Size: 1, SHA256: "not-a-sum"}
	_, err = d.Fetch(context.Background(), []Item{bad}, nil)
	require.ErrorIs(t, err, ErrMismatch)

	huge := Item{Name: "huge", URL: u.URL + "/x", Size: 1 << 60, SHA256: hex.EncodeToString(make([]byte, 32))}
	_, err = d.Fetch(context.Background(), []Item{huge}, nil)
	require.ErrorIs(t, err, ErrNoSpace)
	assert.Contains(t, err.Error(), "EiB")
}

// TestFetchDropsPartsWithoutSpace: a download that cannot fit removes what
// it staged, except a part another worker holds locked.
func TestFetchDropsPartsWithoutSpace(t *testing.T) {
	d, b := newDownloader(t)
	dir, err := b.StagingDir(StagingDir)
	require.NoError(t, err)
	mine := Item{Name: "mine", URL: "http://127.0.0.1:1/mine", Size: 1 << 60, SHA256: hex.EncodeToString(bytes.Repeat([]byte{1}, 32))}
	theirs := Item{Name: "theirs", URL: "http://127.0.0.1:1/theirs", Size: 1 << 60, SHA256: hex.EncodeToString(bytes.Repeat([]byte{2}, 32))}
	for _, it := range []Item{mine, theirs} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, it.SHA256+".part"), []byte("partial"), 0o644))
	}
	held, err := os.Open(filepath.Join(dir, theirs.SHA256+".part"))
	require.NoError(t, err)
	defer held.Close()
	require.NoError(t, syscall.Flock(int(held.Fd()), syscall.LOCK_EX))

	_, err = d.Fetch(context.Background(), []Item{mine, theirs}, nil)
	require.ErrorIs(t, err, ErrNoSpace)
	assert.NoFileExists(t, filepath.Join(dir, mine.SHA256+".part"), "a part of a download without space is removed")
	assert.FileExists(t, filepath.Join(dir, theirs.SHA256+".part"), "a part another worker holds stays")
}

func TestRangeStart(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"bytes 100-199/200", 100, true},
		{"bytes 0-0/1", 0, true},
		{"bytes */200", 0, false},
		{"items 1-2/3", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := rangeStart(tt.in)
		assert.Equal(t, tt.ok, ok, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
}
