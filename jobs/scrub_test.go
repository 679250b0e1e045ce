package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/store"
)

func (e *env) scrubHandler() *ScrubHandler {
	return &ScrubHandler{Blobs: e.Blobs, Progress: e.Progress, Results: e.Queue, Log: e.Log}
}

// overwrite replaces a blob's content in place, as a failing disk or a
// careless hand would.
func overwrite(t *testing.T, path string, data []byte) {
	t.Helper()
	require.NoError(t, os.Chmod(path, 0o644))
	require.NoError(t, os.WriteFile(path, data, 0o644))
}

// scrubResult runs a scrub job on the worker side and returns what it
// reported.
func (e *env) scrubResult(t *testing.T, job *store.Job) ResultPayload {
	t.Helper()
	require.NoError(t, e.runPending(t, QueueMaintenance, job.ID, e.scrubHandler()))
	info, err := e.Inspector.GetTaskInfo(QueueResults, resultTaskID(job.ID))
	require.NoError(t, err)
	var p ResultPayload
	require.NoError(t, json.Unmarshal(info.Payload, &p))
	return p
}

func TestScrubHandlerFindsDamage(t *testing.T) {
	tests := []struct {
		name string
		// damage changes the squashfs blob's file.
		damage      func(t *testing.T, path string)
		wantProblem string
	}{
		{"clean", func(*testing.T, string) {}, ""},
		{"corrupted", func(t *testing.T, path string) {
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			data[len(data)/2] ^= 0xff
			overwrite(t, path, data)
		}, "sha256 mismatch"},
		{"missing", func(t *testing.T, path string) { require.NoError(t, os.Remove(path)) }, "missing"},
		{"short", func(t *testing.T, path string) {
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			overwrite(t, path, data[:len(data)-100])
		}, "size mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			up := newFileServer(t)
			img := e.mirrorReady(t, up, "20250615", nil)
			squashfs := img.Items[2]
			require.Equal(t, "squashfs", squashfs.Name)
			tt.damage(t, e.Blobs.Path(squashfs.SHA256))

			job, started, err := StartScrub(context.Background(), e.Images, e.Queue, e.Log)
			require.NoError(t, err)
			require.True(t, started)
			assert.Equal(t, img.Size(), job.Total)
			assert.Contains(t, job.Title, "Re-hash 4 files")
			p := e.scrubResult(t, job)
			require.NotNil(t, p.Scrub)
			assert.Empty(t, p.Error)
			assert.Equal(t, 4, p.Scrub.Files)
			if tt.wantProblem == "" {
				assert.Empty(t, p.Scrub.Damaged)
				assert.Equal(t, img.Size(), p.Scrub.Bytes)
				return
			}
			require.Len(t, p.Scrub.Damaged, 1)
			assert.Equal(t, squashfs.SHA256, p.Scrub.Damaged[0].SHA256)
			assert.Contains(t, p.Scrub.Damaged[0].Problem, tt.wantProblem)
			_, live, err := e.Progress.Get(context.Background(), job.ID)
			require.NoError(t, err)
			assert.False(t, live, "the progress record goes once the result is reported")
		})
	}
}

// mirrorReady mirrors version name from up and records its result.
func (e *env) mirrorReady(t *testing.T, up *fileServer, name string, shared map[string]string) *store.Image {
	t.Helper()
	img, job := e.queueMirror(t, up.version(name, shared))
	require.NoError(t, e.runPending(t, QueueMirror, job.ID, e.mirrorHandler(up.Client())))
	require.NoError(t, e.runPending(t, QueueResults, resultTaskID(job.ID), e.results))
	got, err := e.Store.GetImage(img.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusReady, got.Status, got.Error)
	return got
}

// publishedVersions reads the published stream as MAAS would: the index,
// then each product document it names, and returns product → versions.
func (e *env) publishedVersions(t *testing.T) map[string][]string {
	t.Helper()
	var index struct {
		Index map[string]struct {
			Path     string   `json:"path"`
			Products []string `json:"products"`
		} `json:"index"`
	}
	readJSON(t, filepath.Join(e.Publisher.Dir(), "streams/v1/index.json"), &index)
	out := map[string][]string{}
	for _, entry := range index.Index {
		var doc struct {
			Products map[string]struct {
				Versions map[string]json.RawMessage `json:"versions"`
			} `json:"products"`
		}
		readJSON(t, filepath.Join(e.Publisher.Dir(), entry.Path), &doc)
		for _, id := range entry.Products {
			for name := range doc.Products[id].Versions {
				out[id] = append(out[id], name)
			}
		}
	}
	return out
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, v))
}

func TestScrubResultTakesDamageOutOfTheStream(t *testing.T) {
	e := newEnv(t)
	up := newFileServer(t)
	shared := map[string]string{"squashfs": strings.Repeat("squashfs shared ", 1000)}
	first := e.mirrorReady(t, up, "20250615", shared)
	second := e.mirrorReady(t, up, "20250718", shared)
	uploaded, hashJob := e.upload(t, bootFiles(), bootMeta())
	require.NoError(t, e.runPending(t, QueueHash, hashJob.ID, e.hash))
	require.NoError(t, e.runPending(t, QueueResults, resultTaskID(hashJob.ID), e.results))
	uploaded, err := e.Store.GetImage(uploaded.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusReady, uploaded.Status)
	before := e.publishedVersions(t)
	require.Len(t, before, 2)
	require.Len(t, before[first.ProductID], 2)

	// The squashfs both mirrored versions share (one blob: dedup) and the
	// upload's rootfs go bad.
	sharedSum := first.Items[2].SHA256
	require.Equal(t, sharedSum, second.Items[2].SHA256)
	good, err := os.ReadFile(e.Blobs.Path(sharedSum))
	require.NoError(t, err)
	bad := append([]byte(nil), good...)
	bad[0] ^= 1
	overwrite(t, e.Blobs.Path(sharedSum), bad)
	var rootfs store.Item
	for _, it := range uploaded.Items {
		if it.Name == "squashfs" {
			rootfs = it
		}
	}
	require.NotEmpty(t, rootfs.SHA256)
	overwrite(t, e.Blobs.Path(rootfs.SHA256), []byte(strings.Repeat("x", int(rootfs.Size))))

	job, _, err := StartScrub(context.Background(), e.Images, e.Queue, e.Log)
	require.NoError(t, err)
	p := e.scrubResult(t, job)
	require.Len(t, p.Scrub.Damaged, 2)
	require.NoError(t, e.runPending(t, QueueResults, resultTaskID(job.ID), e.results))

	// At once: nothing damaged is published, the index and product
	// documents no longer name those versions.
	assert.Empty(t, e.publishedVersions(t), "every version used a damaged file")
	for _, v := range []*store.Image{first, second} {
		got, err := e.Store.GetImage(v.ID)
		require.NoError(t, err)
		assert.Equal(t, store.StatusDownloading, got.Status)
		assert.Contains(t, got.Error, "damaged: sha256 mismatch on squashfs")
		assert.NotEqual(t, v.JobID, got.JobID, "a new download job")
		info, err := e.Inspector.GetTaskInfo(QueueMirror, got.JobID)
		require.NoError(t, err, "the download is enqueued")
		assert.Equal(t, TypeMirrorImage, info.Type)
	}
	got, err := e.Store.GetImage(uploaded.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusDamaged, got.Status)
	assert.Contains(t, got.Error, "damaged: sha256 mismatch on squashfs")
	assert.Equal(t, hashJob.ID, got.JobID, "an upload gets no new job")
	_, ok := e.Blobs.Has(sharedSum)
	assert.False(t, ok, "the bad copy is removed, so the download does not reuse it")

	scrub, err := e.Store.GetJob(job.ID)
	require.NoError(t, err)
	assert.Equal(t, store.JobFailed, scrub.State)
	assert.Regexp(t, `^\d+ files, .+ checked, 2 damaged$`, scrub.Result)
	assert.Contains(t, scrub.Error, first.ProductID+" 20250615 (sha256 mismatch on squashfs; downloading it again)")
	assert.Contains(t, scrub.Error, uploaded.ProductID+" "+uploaded.VersionName+" (sha256 mismatch on squashfs; out of the stream)")

	// The downloads bring both versions back with the right bytes.
	up.takeGets()
	for _, v := range []*store.Image{first, second} {
		got, err := e.Store.GetImage(v.ID)
		require.NoError(t, err)
		require.NoError(t, e.runPending(t, QueueMirror, got.JobID, e.mirrorHandler(up.Client())))
		require.NoError(t, e.runPending(t, QueueResults, resultTaskID(got.JobID), e.results))
		got, err = e.Store.GetImage(v.ID)
		require.NoError(t, err)
		assert.Equal(t, store.StatusReady, got.Status)
		assert.Empty(t, got.Error)
	}
	assert.Equal(t, []string{"/jammy/amd64/20250615/squashfs"}, up.takeGets(), "only the damaged file, once")
	data, err := os.ReadFile(e.Blobs.Path(sharedSum))
	require.NoError(t, err)
	assert.Equal(t, good, data)
	after := e.publishedVersions(t)
	assert.ElementsMatch(t, []string{"20250615", "20250718"}, after[first.ProductID])
	assert.NotContains(t, after, uploaded.ProductID, "the damaged upload stays out")

	// A second delivery of the same result changes nothing.
	require.NoError(t, e.results.ProcessTask(context.Background(), asynq.NewTask(TypeJobResult, mustJSON(t, p))))
	got, err = e.Store.GetImage(first.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusReady, got.Status)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	require.NoError(t, err)
	return data
}

func TestStartScrubNeverTwice(t *testing.T) {
	e := newEnv(t)
	up := newFileServer(t)
	e.mirrorReady(t, up, "20250615", nil)
	first, started, err := StartScrub(context.Background(), e.Images, e.Queue, e.Log)
	require.NoError(t, err)
	require.True(t, started)
	again, started, err := StartScrub(context.Background(), e.Images, e.Queue, e.Log)
	require.NoError(t, err)
	assert.False(t, started)
	assert.Equal(t, first.ID, again.ID)
	pending, err := e.Inspector.ListPendingTasks(QueueMaintenance)
	require.NoError(t, err)
	assert.Len(t, pending, 1)
	info, err := e.Inspector.GetTaskInfo(QueueMaintenance, first.ID)
	require.NoError(t, err)
	assert.Equal(t, 3, info.MaxRetry)

	// Once it has finished, the next one starts.
	e.scrubResult(t, first)
	require.NoError(t, e.runPending(t, QueueResults, resultTaskID(first.ID), e.results))
	done, err := e.Store.GetJob(first.ID)
	require.NoError(t, err)
	assert.Equal(t, store.JobSucceeded, done.State)
	assert.Regexp(t, `^4 files, .+ checked, 0 damaged$`, done.Result)
	next, started, err := StartScrub(context.Background(), e.Images, e.Queue, e.Log)
	require.NoError(t, err)
	assert.True(t, started)
	assert.NotEqual(t, first.ID, next.ID)
}

func TestScrubStopsOnCancelAndShutdown(t *testing.T) {
	e := newEnv(t)
	up := newFileServer(t)
	e.mirrorReady(t, up, "20250615", nil)

	job, _, err := StartScrub(context.Background(), e.Images, e.Queue, e.Log)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = e.scrubHandler().ProcessTask(ctx, mustTask(t, e, job))
	require.ErrorIs(t, err, context.Canceled, "a shutdown stops the scrub; asynq runs it again")
	_, err = e.Inspector.GetTaskInfo(QueueResults, resultTaskID(job.ID))
	assert.ErrorIs(t, err, asynq.ErrTaskNotFound, "nothing is reported")

	require.NoError(t, e.Progress.Cancel(context.Background(), job.ID))
	err = e.scrubHandler().ProcessTask(context.Background(), mustTask(t, e, job))
	require.ErrorIs(t, err, asynq.SkipRetry)
}

func mustTask(t *testing.T, e *env, job *store.Job) *asynq.Task {
	t.Helper()
	task, err := TaskFor(*job)
	require.NoError(t, err)
	return task
}

func TestScrubRechecksABlobReplacedWhileRead(t *testing.T) {
	e := newEnv(t)
	up := newFileServer(t)
	img := e.mirrorReady(t, up, "20250615", nil)
	it := img.Items[2]
	path := e.Blobs.Path(it.SHA256)
	good, err := os.ReadFile(path)
	require.NoError(t, err)
	bad := append([]byte(nil), good...)
	bad[3] ^= 1
	overwrite(t, path, bad)

	// While the damaged file is read, a good copy takes its place (as a
	// commit does: a new file renamed over the name).
	var once sync.Once
	replace := func(int64) {
		once.Do(func() {
			tmp := filepath.Join(t.TempDir(), "good")
			require.NoError(t, os.WriteFile(tmp, good, 0o444))
			require.NoError(t, os.Rename(tmp, path))
		})
	}
	problem, _, _, err := e.scrubHandler().check(context.Background(), images.BlobRef{SHA256: it.SHA256, Size: it.Size}, replace, true)
	require.NoError(t, err)
	assert.Empty(t, problem, "the file in place is good: nothing to report")

	overwrite(t, path, bad)
	problem, _, _, err = e.scrubHandler().check(context.Background(), images.BlobRef{SHA256: it.SHA256, Size: it.Size}, nil, true)
	require.NoError(t, err)
	assert.Equal(t, "sha256 mismatch", problem)
}

func TestScrubLoopCountsFromTheLastScrub(t *testing.T) {
	var mu sync.Mutex
	var history []store.Job
	starts := 0
	list := func() ([]store.Job, error) {
		mu.Lock()
		defer mu.Unlock()
		return append([]store.Job(nil), history...), nil
	}
	start := func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		starts++
		history = append(history, store.Job{Type: TypeScrubBlobs, CreatedAt: time.Now()})
		return nil
	}
	// A scrub ran just now (before a restart): the next is due one interval later.
	history = append(history, store.Job{Type: TypeScrubBlobs, CreatedAt: time.Now()})
	history = append(history, store.Job{Type: TypeMirrorImage, CreatedAt: time.Now().Add(-time.Hour)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ScrubLoop(ctx, time.Second, 10*time.Millisecond, time.Now().Add(-time.Hour), list, start, slog.New(slog.DiscardHandler))
	}()
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	assert.Equal(t, 0, starts, "not due yet")
	mu.Unlock()
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return starts == 1 }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	assert.Equal(t, 1, starts, "the new scrub counts as the last one")
	mu.Unlock()
	cancel()
	<-done

	failing := func() ([]store.Job, error) { return nil, errors.New("database closed") }
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	ScrubLoop(ctx, time.Millisecond, 5*time.Millisecond, time.Time{}, failing, func(context.Context) error {
		t.Error("no scrub without the history")
		return nil
	}, slog.New(slog.DiscardHandler))
}

func TestScrubLoopWithNoScrubCountsFromTheScheduleStart(t *testing.T) {
	tests := []struct {
		name   string
		began  time.Duration // before now
		starts bool
	}{
		{"a server first started an interval ago, restarted since", 2 * time.Hour, true},
		{"a server first started just now", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var starts atomic.Int32
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			ScrubLoop(ctx, time.Hour, 5*time.Millisecond, time.Now().Add(-tt.began), func() ([]store.Job, error) { return nil, nil },
				func(context.Context) error { starts.Add(1); cancel(); return nil }, slog.New(slog.DiscardHandler))
			assert.Equal(t, tt.starts, starts.Load() > 0)
		})
	}
}

func TestScrubFreesWhatWasDeletedWhileItRan(t *testing.T) {
	tests := []struct {
		name string
		end  func(t *testing.T, e *env, job *store.Job)
	}{
		{"once the scrub is recorded", func(t *testing.T, e *env, job *store.Job) {
			p := e.scrubResult(t, job)
			assert.Empty(t, p.Scrub.Damaged)
			require.NoError(t, e.runPending(t, QueueResults, resultTaskID(job.ID), e.results))
		}},
		{"once the scrub is canceled", func(t *testing.T, e *env, job *store.Job) {
			require.NoError(t, e.Images.Cancel(job.ID))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			up := newFileServer(t)
			img := e.mirrorReady(t, up, "20250615", nil)
			job, _, err := StartScrub(context.Background(), e.Images, e.Queue, e.Log)
			require.NoError(t, err)
			_, err = e.Images.Delete(img.ID)
			require.NoError(t, err)
			_, ok := e.Blobs.Has(img.Items[0].SHA256)
			require.True(t, ok, "no collection while the scrub may read the file")
			tt.end(t, e, job)
			_, ok = e.Blobs.Has(img.Items[0].SHA256)
			assert.False(t, ok, "freed")
		})
	}
}
