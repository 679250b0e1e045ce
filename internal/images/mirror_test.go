package images

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
)

func TestMirrorPath(t *testing.T) {
	tests := []struct {
		root, path, want string
		ok               bool
	}{
		{"https://images.maas.io/ephemeral-v3/stable/", "jammy/amd64/20250718/squashfs", "mirror/images.maas.io/ephemeral-v3/stable/jammy/amd64/20250718/squashfs", true},
		{"http://127.0.0.1:8080/", "bootloaders/uefi/amd64/20230222.0/grub2-signed.tar.xz", "mirror/127.0.0.1_8080/bootloaders/uefi/amd64/20230222.0/grub2-signed.tar.xz", true},
		{"https://m.example/", "../etc/passwd", "", false},
		{"https://m.example/", "/etc/passwd", "", false},
		{"https://m.example/", "a/./b", "", false},
		{"https://m.example/", "a/b%2f..", "", false},
		{"https://m.example/", "a\x00b", "", false},
		{"https://m.example/", "a\\b", "", false},
		{"https://m.example/", "", "", false},
		{"not a url", "a", "", false},
		{"https://m.example/%2e%2e/", "a", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.root+" "+tt.path, func(t *testing.T) {
			got, err := MirrorPath(tt.root, tt.path)
			if !tt.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

const root1 = "https://images.maas.io/ephemeral-v3/stable/"

func (e *env) mirrorVersion(t *testing.T, root, product, version string) (MirrorVersion, map[string]string) {
	t.Helper()
	content := map[string]string{
		"boot-kernel": "kernel " + version, "boot-initrd": "initrd " + version,
		"squashfs": "squashfs " + version, "manifest": "manifest " + version,
	}
	v := MirrorVersion{Root: root, ContentID: "com.ubuntu.maas:stable:v3:download", ProductID: product, Kind: store.KindBoot,
		VersionName: version, Fields: map[string]string{"os": "ubuntu", "release": "jammy", "arch": "amd64", "subarch": "ga-22.04",
			"subarches": "generic", "label": "stable", "version": "22.04", "release_title": "22.04 LTS", "kflavor": "generic",
			"krel": "jammy", "release_codename": "Jammy Jellyfish", "support_eol": "2027-04-21",
			"support_esm_eol": "2032-04-21"}}
	for name, c := range content {
		sum := sha256.Sum256([]byte(c))
		v.Items = append(v.Items, MirrorItem{Name: name, FType: name, Path: "jammy/amd64/" + version + "/" + name,
			URL: root + "jammy/amd64/" + version + "/" + name, Size: int64(len(c)), SHA256: hex.EncodeToString(sum[:]),
			Extra: map[string]string{"kpackage": "linux-generic"}})
	}
	return v, content
}

// download does what a mirror job does: put each item's content in the blob store.
func (e *env) download(t *testing.T, v MirrorVersion, content map[string]string) JobResult {
	t.Helper()
	var res JobResult
	dir, err := e.blobs.StagingDir("mirror")
	require.NoError(t, err)
	for _, it := range v.Items {
		p := filepath.Join(dir, it.SHA256)
		require.NoError(t, os.WriteFile(p, []byte(content[it.Name]), 0o644))
		require.NoError(t, e.blobs.Commit(p, it.SHA256))
		os.Remove(p)
		res.Items = append(res.Items, HashedItem{Name: it.Name, SHA256: it.SHA256, Size: it.Size})
	}
	return res
}

func TestMirrorCreateRecordAndRetention(t *testing.T) {
	e := newEnv(t)
	e.svc.KeepVersions = 2
	const product = "com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04"
	var ids []string
	for _, version := range []string{"20250615", "20250718", "20250808"} {
		v, content := e.mirrorVersion(t, root1, product, version)
		img, job, err := e.svc.CreateMirror(v, newJob)
		require.NoError(t, err)
		assert.Equal(t, store.StatusDownloading, img.Status)
		assert.Equal(t, root1, img.Origin)
		require.NoError(t, e.svc.RecordResult(job.ID, e.download(t, v, content)))
		got, err := e.store.GetImage(img.ID)
		require.NoError(t, err)
		require.Equal(t, store.StatusReady, got.Status, got.Error)
		ids = append(ids, img.ID)
	}
	_, err := e.store.GetImage(ids[0])
	assert.ErrorIs(t, err, store.ErrNotFound, "the oldest version goes once two newer ones are ready")
	for _, id := range ids[1:] {
		img, err := e.store.GetImage(id)
		require.NoError(t, err)
		for _, it := range img.Items {
			_, ok := e.pub.Lookup(it.Path)
			assert.True(t, ok, it.Path)
		}
	}
	indexData, err := os.ReadFile(filepath.Join(e.pub.Dir(), publish.IndexPath))
	require.NoError(t, err)
	var index simplestreams.Index
	require.NoError(t, json.Unmarshal(indexData, &index))
	data, err := os.ReadFile(filepath.Join(e.pub.Dir(), index.Index["com.ubuntu.maas:stable:v3:download"].Path))
	require.NoError(t, err)
	doc := string(data)
	assert.Contains(t, doc, `"support_esm_eol": "2032-04-21"`, "upstream fields are kept as they are")
	assert.Contains(t, doc, `"kpackage": "linux-generic"`, "so are item fields")
	assert.NotContains(t, doc, "20250615")
}

func TestMirrorRefusals(t *testing.T) {
	e := newEnv(t)
	const product = "com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04"
	v, content := e.mirrorVersion(t, root1, product, "20250615")
	img, job, err := e.svc.CreateMirror(v, newJob)
	require.NoError(t, err)

	_, _, err = e.svc.CreateMirror(v, newJob)
	assert.ErrorIs(t, err, ErrAlreadyMirrored, "a version on its way is not queued twice")

	other, _ := e.mirrorVersion(t, "http://other.example/", product, "20250718")
	_, _, err = e.svc.CreateMirror(other, newJob)
	assert.ErrorIs(t, err, store.ErrConflict, "one product comes from one upstream")

	bad := v
	bad.ContentID = "../../index"
	_, _, err = e.svc.CreateMirror(bad, newJob)
	assert.Error(t, err)
	bad = v
	bad.Items = append([]MirrorItem(nil), v.Items...)
	bad.Items[0].Path = "../../../customstream.db"
	bad.VersionName = "20250101"
	_, _, err = e.svc.CreateMirror(bad, newJob)
	assert.Error(t, err)

	// A failed attempt makes way for a new one.
	require.NoError(t, e.svc.RecordResult(job.ID, JobResult{Error: "sha256 mismatch"}))
	failed, err := e.store.GetImage(img.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusFailed, failed.Status)
	again, job2, err := e.svc.CreateMirror(v, newJob)
	require.NoError(t, err)
	require.NoError(t, e.svc.RecordResult(job2.ID, e.download(t, v, content)))
	got, err := e.store.GetImage(again.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusReady, got.Status)
}
