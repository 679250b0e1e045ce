package images

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/blobs"
	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/store"
)

type env struct {
	svc   *Service
	store *store.Store
	blobs *blobs.Store
	pub   *publish.Publisher
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "customstream.db"), time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	b, err := blobs.Open(dir)
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pub, err := publish.New(dir, b, log)
	require.NoError(t, err)
	return &env{svc: NewService(st, b, pub, log), store: st, blobs: b, pub: pub}
}

// stage writes an uploaded file into staging/uploads.
func (e *env) stage(t *testing.T, field, content string) StagedFile {
	t.Helper()
	dir, err := e.blobs.StagingDir(UploadsStaging)
	require.NoError(t, err)
	f, err := os.CreateTemp(dir, "upload-"+field+"-*")
	require.NoError(t, err)
	_, err = f.WriteString(content)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	rel, err := e.blobs.StagedRel(f.Name())
	require.NoError(t, err)
	return StagedFile{Field: field, Path: rel, Size: int64(len(content))}
}

// staged resolves a staging name.
func (e *env) staged(t *testing.T, rel string) string {
	t.Helper()
	p, err := e.blobs.StagedPath(rel)
	require.NoError(t, err)
	return p
}

func newJob(img *store.Image) (*store.Job, error) {
	return &store.Job{ID: "job-" + img.ID, Type: "image:hash", ImageID: img.ID, State: store.JobQueued}, nil
}

// hashAll does what the hash job does: hash and commit every staged item.
func (e *env) hashAll(t *testing.T, img *store.Image) JobResult {
	t.Helper()
	var res JobResult
	for _, it := range img.Items {
		content := "generated manifest"
		if it.Staged != "" {
			data, err := os.ReadFile(e.staged(t, it.Staged))
			require.NoError(t, err)
			content = string(data)
		}
		sum := sha256.Sum256([]byte(content))
		hexSum := hex.EncodeToString(sum[:])
		dir, err := e.blobs.StagingDir("hash")
		require.NoError(t, err)
		p := filepath.Join(dir, img.ID+it.Name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		require.NoError(t, e.blobs.Commit(p, hexSum))
		res.Items = append(res.Items, HashedItem{Name: it.Name, SHA256: hexSum, Size: int64(len(content))})
	}
	return res
}

func (e *env) upload(t *testing.T, meta Metadata) (*store.Image, *store.Job) {
	t.Helper()
	up, err := PrepareUpload(meta, []StagedFile{e.stage(t, FileKernel, "k"), e.stage(t, FileInitrd, "i"), e.stage(t, FileRootfs, "root")})
	require.NoError(t, err)
	img, job, err := e.svc.Create(up, newJob)
	require.NoError(t, err)
	return img, job
}

func TestCreateHashPublishDelete(t *testing.T) {
	e := newEnv(t)
	img, job := e.upload(t, bootMeta())
	assert.Equal(t, store.StatusHashing, img.Status)
	require.Len(t, img.Items, 4, "kernel, initrd, squashfs and a manifest to generate")
	assert.Empty(t, img.Items[3].Staged)
	assert.Equal(t, "uploads/boot/ubuntu/noble/amd64/generic/generic/stable/"+img.VersionName+"/squashfs.manifest", img.Items[3].Path)

	require.NoError(t, e.svc.RecordResult(job.ID, e.hashAll(t, img)))
	got, err := e.store.GetImage(img.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusReady, got.Status)
	for _, it := range got.Items {
		assert.Empty(t, it.Staged)
		_, ok := e.pub.Lookup(it.Path)
		assert.True(t, ok, it.Path)
	}
	for _, it := range img.Items {
		if it.Staged != "" {
			assert.NoFileExists(t, e.staged(t, it.Staged), "staged files go once recorded")
		}
	}

	// A late failure report of the same job changes nothing.
	require.NoError(t, e.svc.RecordResult(job.ID, JobResult{Error: "late"}))
	got, err = e.store.GetImage(img.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusReady, got.Status)

	_, err = e.svc.Delete(img.ID)
	require.NoError(t, err)
	for _, it := range got.Items {
		_, ok := e.pub.Lookup(it.Path)
		assert.False(t, ok)
		_, ok = e.blobs.Has(it.SHA256)
		assert.False(t, ok, "blobs no version uses are freed")
	}
}

func TestSecondUploadAddsVersionAndSharedBlobsStay(t *testing.T) {
	e := newEnv(t)
	first, job1 := e.upload(t, bootMeta())
	require.NoError(t, e.svc.RecordResult(job1.ID, e.hashAll(t, first)))
	second, job2 := e.upload(t, bootMeta())
	assert.Greater(t, second.VersionName, first.VersionName)
	require.NoError(t, e.svc.RecordResult(job2.ID, e.hashAll(t, second)))

	_, err := e.svc.Delete(first.ID)
	require.NoError(t, err)
	kept, err := e.store.GetImage(second.ID)
	require.NoError(t, err)
	for _, it := range kept.Items {
		_, ok := e.blobs.Has(it.SHA256)
		assert.True(t, ok, "the same content is still used by the second version")
	}
}

func TestExplicitVersionNameConflict(t *testing.T) {
	e := newEnv(t)
	m := bootMeta()
	m.VersionName = "20250101.01"
	e.upload(t, m)
	up, err := PrepareUpload(m, []StagedFile{e.stage(t, FileKernel, "k"), e.stage(t, FileInitrd, "i"), e.stage(t, FileRootfs, "r")})
	require.NoError(t, err)
	_, _, err = e.svc.Create(up, newJob)
	var verr ValidationError
	require.ErrorAs(t, err, &verr)
	assert.Contains(t, verr.ByField()["version_name"], "already exists")
}

func TestRecordFailures(t *testing.T) {
	tests := []struct {
		name   string
		mangle func(img *store.Image, res *JobResult)
		want   string
	}{
		{"job error", func(_ *store.Image, res *JobResult) { *res = JobResult{Error: "disk on fire"} }, "disk on fire"},
		{"missing item", func(_ *store.Image, res *JobResult) { res.Items = res.Items[:2] }, "did not report item"},
		{"blob not in store", func(_ *store.Image, res *JobResult) { res.Items[0].SHA256 = "ab" + res.Items[0].SHA256[2:] }, "missing from the blob store"},
		{"client checksum differs", func(img *store.Image, res *JobResult) {}, "expected 0000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			m := bootMeta()
			if tt.name == "client checksum differs" {
				m.Expected = map[string]string{FileRootfs: "0000000000000000000000000000000000000000000000000000000000000000"}
			}
			img, job := e.upload(t, m)
			res := e.hashAll(t, img)
			tt.mangle(img, &res)
			require.NoError(t, e.svc.RecordResult(job.ID, res))
			got, err := e.store.GetImage(img.ID)
			require.NoError(t, err)
			assert.Equal(t, store.StatusFailed, got.Status)
			assert.Contains(t, got.Error, tt.want)
			for _, it := range got.Items {
				_, ok := e.pub.Lookup(it.Path)
				assert.False(t, ok, "a failed version is not published")
			}
		})
	}
}

func TestCleanStagingKeepsPendingUploads(t *testing.T) {
	e := newEnv(t)
	img, _ := e.upload(t, bootMeta())
	leftover := e.stage(t, FileRootfs, "from an interrupted upload")
	require.NoError(t, e.svc.CleanStaging())
	assert.NoFileExists(t, e.staged(t, leftover.Path))
	for _, it := range img.Items {
		if it.Staged != "" {
			assert.FileExists(t, e.staged(t, it.Staged), "files waiting for their hash job stay")
		}
	}
}

func TestFailedPublishIsRetriedByTheResultRetry(t *testing.T) {
	e := newEnv(t)
	img, job := e.upload(t, bootMeta())
	res := e.hashAll(t, img)
	// A directory (not empty: a publish removes empty ones) where the
	// index goes makes the publish fail.
	index := filepath.Join(e.pub.Dir(), publish.IndexPath)
	require.NoError(t, os.RemoveAll(index))
	require.NoError(t, os.Mkdir(index, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(index, "file"), nil, 0o644))
	require.Error(t, e.svc.RecordResult(job.ID, res))

	require.NoError(t, os.RemoveAll(index))
	require.NoError(t, e.svc.RecordResult(job.ID, res), "asynq retries the result")
	got, err := e.store.GetImage(img.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusReady, got.Status)
	for _, it := range got.Items {
		_, ok := e.pub.Lookup(it.Path)
		assert.True(t, ok, "the retry published %s", it.Path)
	}
	assert.FileExists(t, index)
}

// A blob no record names (a job that failed after committing it) stays
// through publishes that cannot have freed anything, and goes once a job
// ends or a version leaves.
func TestCollectWalksOnlyWhenABlobMayBeUnused(t *testing.T) {
	e := newEnv(t)
	commit := func(content string) string {
		dir, err := e.blobs.StagingDir("hash")
		require.NoError(t, err)
		p := filepath.Join(dir, "orphan")
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		sum := sha256.Sum256([]byte(content))
		require.NoError(t, e.blobs.Commit(p, hex.EncodeToString(sum[:])))
		return hex.EncodeToString(sum[:])
	}
	orphan := commit("committed by a job that then failed")
	require.NoError(t, e.svc.Republish())
	_, ok := e.blobs.Has(orphan)
	assert.False(t, ok, "the first publish of a process walks the blob store")

	first, job1 := e.upload(t, bootMeta())
	require.NoError(t, e.svc.RecordResult(job1.ID, e.hashAll(t, first)))
	orphan = commit("another orphan")
	tests := []struct {
		name   string
		change func()
		gone   bool
	}{
		{"a publish that changed nothing", func() { require.NoError(t, e.svc.Republish()) }, false},
		{"a job that ended", func() {
			second, job2 := e.upload(t, bootMeta())
			require.NoError(t, e.svc.RecordResult(job2.ID, e.hashAll(t, second)))
		}, true},
		{"a publish after the walk", func() {
			orphan = commit("an orphan after the walk")
			require.NoError(t, e.svc.Republish())
		}, false},
		{"a job canceled", func() {
			_, job := e.upload(t, bootMeta())
			require.NoError(t, e.svc.Cancel(job.ID))
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.change()
			_, ok := e.blobs.Has(orphan)
			assert.Equal(t, tt.gone, !ok)
		})
	}

	// A version with a file of its own leaves: its blob and the orphan go.
	up, err := PrepareUpload(bootMeta(), []StagedFile{e.stage(t, FileKernel, "k"), e.stage(t, FileInitrd, "i"), e.stage(t, FileRootfs, "its own root")})
	require.NoError(t, err)
	third, job3, err := e.svc.Create(up, newJob)
	require.NoError(t, err)
	require.NoError(t, e.svc.RecordResult(job3.ID, e.hashAll(t, third)))
	orphan = commit("a third orphan")
	require.NoError(t, e.svc.Republish())
	_, ok = e.blobs.Has(orphan)
	require.True(t, ok)
	_, err = e.svc.Delete(third.ID)
	require.NoError(t, err)
	_, ok = e.blobs.Has(orphan)
	assert.False(t, ok, "a version that left frees its blobs, and the walk finds the orphan")
}
