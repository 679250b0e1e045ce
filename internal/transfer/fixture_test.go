package transfer

// A real data directory for the tests: uploads hashed into the blob store,
// versions mirrored from an upstreamtest server with the real downloader,
// published and signed with the directory's own key.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/catalog"
	"github.com/customstream/customstream/internal/check"
	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/mirror"
	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/signing"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/testenv"
	"github.com/customstream/customstream/internal/upstream"
	"github.com/customstream/customstream/internal/upstream/upstreamtest"
)

// dataDir is a data directory with its services and signing key.
type dataDir struct {
	*testenv.Env
	signer *signing.Signer
}

// newDataDir returns an empty data directory whose stream is signed.
func newDataDir(t *testing.T) *dataDir {
	t.Helper()
	e := testenv.New(t)
	signer, err := signing.Open(e.Dir, e.Log)
	require.NoError(t, err)
	e.Publisher.SignWith(signer.Sign, signer.Keyring())
	e.Images.KeepVersions = 2
	require.NoError(t, e.Images.Republish())
	return &dataDir{Env: e, signer: signer}
}

// newSource returns a data directory with uploads (two versions of a boot
// image with the same files, a single-file image) and, mirrored from a generated upstream, the jammy amd64
// ga and hwe images (which share their squashfs and manifest), a centos
// image and the bootloaders.
func newSource(t *testing.T) *dataDir {
	t.Helper()
	d := newDataDir(t)
	// The same files twice: two versions whose items share their content
	// under other paths.
	for range 2 {
		d.upload(t, images.Metadata{OS: "ubuntu", Release: "noble", Arch: "amd64", Version: "24.04"},
			map[string]string{images.FileKernel: "kernel", images.FileInitrd: "initrd", images.FileRootfs: "squashfs", images.FileManifest: "manifest"})
	}
	d.upload(t, images.Metadata{OS: "centos", Release: "centos90", Arch: "amd64", Version: "9.0", RootfsType: "root-tgz"},
		map[string]string{images.FileRootfs: "root tarball", images.FileManifest: "centos manifest"})

	opts := upstreamtest.DefaultOptions()
	opts.ItemSize = 32 << 10
	opts.Arches = []string{"amd64"}
	tree, err := upstreamtest.Generate(t.TempDir(), opts)
	require.NoError(t, err)
	up := upstreamtest.NewServer(t, tree.Dir)
	client := upstream.New(upstream.Options{})
	loaded, err := catalog.New(d.Store, client, d.Log).Load(context.Background(), up.URL+"/"+upstreamtest.IndexPath, false)
	require.NoError(t, err)
	var ids []string
	for _, e := range loaded.Entries {
		f := e.Fields
		if f["release"] == "jammy" && (f["subarch"] == "ga-22.04" || f["subarch"] == "hwe-22.04") || f["release"] == "centos70" {
			ids = append(ids, e.ProductID)
		}
	}
	require.Len(t, ids, 3)
	versions, err := loaded.LatestVersions(append(ids, loaded.Bootloaders()...))
	require.NoError(t, err)
	dl := &mirror.Downloader{Client: client.DownloadClient(), Blobs: d.Blobs, Parallel: 2, Log: d.Log}
	for _, v := range versions {
		img, job, err := d.Images.CreateMirror(v, newJob)
		require.NoError(t, err)
		var items []mirror.Item
		var res images.JobResult
		for _, it := range img.Items {
			items = append(items, mirror.Item{Name: it.Name, URL: it.Source, Size: it.Size, SHA256: it.Expected})
			res.Items = append(res.Items, images.HashedItem{Name: it.Name, SHA256: it.Expected, Size: it.Size})
		}
		_, err = dl.Fetch(context.Background(), items, nil)
		require.NoError(t, err)
		require.NoError(t, d.Images.RecordResult(job.ID, res))
	}
	for _, img := range d.images(t) {
		require.Equal(t, store.StatusReady, img.Status, "%s: %s", img.ProductID, img.Error)
	}
	return d
}

func newJob(img *store.Image) (*store.Job, error) {
	return &store.Job{ID: images.NewID(), Type: "test", ImageID: img.ID, State: store.JobQueued}, nil
}

// upload stages the files, records the upload and does what its hash job does.
func (d *dataDir) upload(t *testing.T, meta images.Metadata, files map[string]string) *store.Image {
	t.Helper()
	dir, err := d.Blobs.StagingDir(images.UploadsStaging)
	require.NoError(t, err)
	var staged []images.StagedFile
	for field, content := range files {
		p := filepath.Join(dir, images.NewID())
		data := content + " of " + meta.OS + " " + meta.Release
		require.NoError(t, os.WriteFile(p, []byte(data), 0o644))
		rel, err := d.Blobs.StagedRel(p)
		require.NoError(t, err)
		staged = append(staged, images.StagedFile{Field: field, Path: rel, Size: int64(len(data))})
	}
	up, err := images.PrepareUpload(meta, staged)
	require.NoError(t, err)
	img, job, err := d.Images.Create(up, newJob)
	require.NoError(t, err)
	var res images.JobResult
	for _, it := range img.Items {
		p, err := d.Blobs.StagedPath(it.Staged)
		require.NoError(t, err)
		sum, size, err := blobsHash(p)
		require.NoError(t, err)
		require.NoError(t, d.Blobs.Commit(p, sum))
		res.Items = append(res.Items, images.HashedItem{Name: it.Name, SHA256: sum, Size: size})
	}
	require.NoError(t, d.Images.RecordResult(job.ID, res))
	got, err := d.Images.Get(img.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusReady, got.Status, got.Error)
	return got
}

func blobsHash(p string) (string, int64, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return "", 0, err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), int64(len(data)), nil
}

func (d *dataDir) images(t *testing.T) []store.Image {
	t.Helper()
	imgs, err := d.Images.List()
	require.NoError(t, err)
	return imgs
}

// streamProducts reads the published index.json and its product files,
// without their `updated` stamps: what a client takes from the stream.
func (d *dataDir) streamProducts(t *testing.T) map[string]simplestreams.Products {
	t.Helper()
	read := func(p string) []byte {
		data, err := os.ReadFile(filepath.Join(d.Publisher.Dir(), filepath.FromSlash(p)))
		require.NoError(t, err)
		return data
	}
	var index simplestreams.Index
	require.NoError(t, json.Unmarshal(read(publish.IndexPath), &index))
	out := map[string]simplestreams.Products{}
	for cid, e := range index.Index {
		var doc simplestreams.Products
		require.NoError(t, json.Unmarshal(read(e.Path), &doc))
		doc.Updated = ""
		out[cid] = doc
	}
	return out
}

// distinctFiles is the number of distinct contents the records publish.
func (d *dataDir) distinctFiles(t *testing.T) (int, int64) {
	t.Helper()
	sizes := map[string]int64{}
	for _, img := range d.images(t) {
		for _, it := range img.Items {
			sizes[it.SHA256] = it.Size
		}
	}
	var total int64
	for _, s := range sizes {
		total += s
	}
	return len(sizes), total
}

// state is everything an import must leave as it was when it fails: the
// records, the published tree and the blobs, by path and sha256.
func (d *dataDir) state(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, img := range d.images(t) {
		data, err := json.Marshal(img)
		require.NoError(t, err)
		out["record "+img.ID] = string(data)
	}
	for _, sub := range []string{"publish", "blobs", "staging"} {
		root := filepath.Join(d.Dir, sub)
		err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			sum, _, err := blobsHash(p)
			rel, _ := filepath.Rel(d.Dir, p)
			out[rel] = sum
			return err
		})
		require.NoError(t, err)
	}
	return out
}

// check runs internal/check over the published tree served by HTTP, with
// the directory's key, downloading every item.
func (d *dataDir) check(t *testing.T) *check.Result {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir(d.Publisher.Dir())))
	t.Cleanup(srv.Close)
	var out strings.Builder
	res, err := check.Run(context.Background(), srv.URL+"/"+publish.SignedIndexPath,
		check.Options{Keyring: d.signer.Keyring(), Download: true, Out: &out})
	require.NoError(t, err)
	require.True(t, res.OK(), out.String())
	return res
}

// origins are the origins of the records.
func (d *dataDir) origins(t *testing.T) []string {
	t.Helper()
	set := map[string]bool{}
	for _, img := range d.images(t) {
		set[img.Origin] = true
	}
	return slices.Sorted(maps.Keys(set))
}
