package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/mirror"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
)

// fileServer is an upstream serving in-memory files, counting GETs.
type fileServer struct {
	*httptest.Server
	mu    sync.Mutex
	files map[string][]byte
	gets  []string
}

func newFileServer(t *testing.T) *fileServer {
	s := &fileServer{files: map[string][]byte{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		data, ok := s.files[r.URL.Path]
		s.gets = append(s.gets, r.URL.Path)
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *fileServer) version(name string, shared map[string]string) images.MirrorVersion {
	v := images.MirrorVersion{Root: s.URL + "/", ContentID: "com.ubuntu.maas:stable:v3:download",
		ProductID: "com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04", Kind: store.KindBoot, VersionName: name,
		Fields: map[string]string{"os": "ubuntu", "release": "jammy", "arch": "amd64", "subarch": "ga-22.04",
			"subarches": "generic", "label": "stable", "version": "22.04", "release_title": "22.04 LTS",
			"kflavor": "generic", "krel": "jammy", "release_codename": "Jammy Jellyfish", "support_eol": "2027-04-21"}}
	for _, key := range []string{"boot-kernel", "boot-initrd", "squashfs", "manifest"} {
		content := strings.Repeat(key+" "+name+" ", 1000)
		if c, ok := shared[key]; ok {
			content = c
		}
		path := "jammy/amd64/" + name + "/" + key
		s.mu.Lock()
		s.files["/"+path] = []byte(content)
		s.mu.Unlock()
		sum := sha256.Sum256([]byte(content))
		v.Items = append(v.Items, images.MirrorItem{Name: key, FType: key, Path: path, URL: s.URL + "/" + path,
			Size: int64(len(content)), SHA256: hex.EncodeToString(sum[:])})
	}
	return v
}

func (s *fileServer) takeGets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.gets
	s.gets = nil
	return g
}

func (e *env) mirrorHandler(client *http.Client) *MirrorHandler {
	return &MirrorHandler{Downloader: &mirror.Downloader{Client: client, Blobs: e.Blobs, Parallel: 2, Log: e.Log},
		Progress: e.Progress, Results: e.Queue, Log: e.Log}
}

// queueMirror records and enqueues the mirror job of v.
func (e *env) queueMirror(t *testing.T, v images.MirrorVersion) (*store.Image, *store.Job) {
	t.Helper()
	img, job, err := e.Images.CreateMirror(v, func(img *store.Image) (*store.Job, error) {
		return NewMirrorJob(images.NewID(), img)
	})
	require.NoError(t, err)
	require.NoError(t, Enqueue(context.Background(), e.Queue, *job))
	return img, job
}

func TestMirrorJobDownloadsDedupsAndPublishes(t *testing.T) {
	e := newEnv(t)
	up := newFileServer(t)
	h := e.mirrorHandler(up.Client())
	run := func(v images.MirrorVersion) *store.Image {
		img, job := e.queueMirror(t, v)
		require.NoError(t, e.runPending(t, QueueMirror, job.ID, h))
		require.NoError(t, e.runPending(t, QueueResults, resultTaskID(job.ID), e.results))
		got, err := e.Store.GetImage(img.ID)
		require.NoError(t, err)
		return got
	}

	first := run(up.version("20250615", nil))
	require.Equal(t, store.StatusReady, first.Status, first.Error)
	assert.Len(t, up.takeGets(), 4)

	// The next version shares its squashfs and manifest: only two files move.
	shared := map[string]string{}
	for _, key := range []string{"squashfs", "manifest"} {
		shared[key] = strings.Repeat(key+" 20250615 ", 1000)
	}
	second := run(up.version("20250718", shared))
	require.Equal(t, store.StatusReady, second.Status, second.Error)
	assert.ElementsMatch(t, []string{"/jammy/amd64/20250718/boot-kernel", "/jammy/amd64/20250718/boot-initrd"}, up.takeGets())

	rep, err := simplestreams.Validate(simplestreams.DirSource(e.Publisher.Dir()), "streams/v1/index.json")
	require.NoError(t, err)
	for _, p := range rep.Problems {
		t.Log(p.String())
	}
	require.True(t, rep.OK())
	require.Len(t, rep.Items, 8)
	for _, it := range rep.Items {
		assert.True(t, strings.HasPrefix(it.Path, "mirror/127.0.0.1_"), it.Path)
		info, err := os.Stat(filepath.Join(e.Publisher.Dir(), it.Path))
		require.NoError(t, err)
		assert.Equal(t, it.Size, info.Size())
	}
}

func TestMirrorJobChecksumMismatchFails(t *testing.T) {
	e := newEnv(t)
	up := newFileServer(t)
	h := e.mirrorHandler(up.Client())
	v := up.version("20250615", nil)
	v.Items[2].SHA256 = strings.Repeat("0", 64)
	img, job := e.queueMirror(t, v)
	// Called directly there is no retry left: the failure is reported.
	require.Error(t, e.runPending(t, QueueMirror, job.ID, h))
	require.NoError(t, e.runPending(t, QueueResults, resultTaskID(job.ID), e.results))
	got, err := e.Store.GetImage(img.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusFailed, got.Status)
	assert.Contains(t, got.Error, "does not match the upstream metadata")
	_, ok := e.Publisher.Lookup(got.Items[0].Path)
	assert.False(t, ok, "nothing unverified is published")
}
