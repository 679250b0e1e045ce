package publish

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/blobs"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
)

type fixture struct {
	dir   string
	blobs *blobs.Store
	pub   *Publisher
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	b, err := blobs.Open(dir)
	require.NoError(t, err)
	p, err := New(dir, b, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	return &fixture{dir: dir, blobs: b, pub: p}
}

// blob commits content and returns its item.
func (f *fixture) blob(t *testing.T, name, ftype, path, content string) store.Item {
	t.Helper()
	dir, err := f.blobs.StagingDir("test")
	require.NoError(t, err)
	tmp, err := os.CreateTemp(dir, name)
	require.NoError(t, err)
	_, err = tmp.WriteString(content)
	require.NoError(t, err)
	require.NoError(t, tmp.Close())
	staged := tmp.Name()
	sum := sha256.Sum256([]byte(content))
	hexSum := hex.EncodeToString(sum[:])
	require.NoError(t, f.blobs.Commit(staged, hexSum))
	return store.Item{Name: name, FType: ftype, Path: path, Size: int64(len(content)), SHA256: hexSum}
}

func (f *fixture) bootImage(t *testing.T, id, version, status string) store.Image {
	dir := "uploads/ubuntu/noble/amd64/generic/generic/stable/" + version
	return store.Image{
		ID: id, ProductID: "com.customstream.stable:v3:boot:ubuntu:noble:amd64:generic:generic",
		ContentID: "com.customstream:uploads:v3:download", Origin: store.OriginUpload, Kind: store.KindBoot,
		OS: "ubuntu", Release: "noble", Arch: "amd64", Subarch: "generic", Subarches: "generic", Kflavor: "generic",
		Label: "stable", Version: "24.04", ReleaseTitle: "24.04", ReleaseCodename: "Noble Numbat", VersionName: version, Status: status,
		Items: []store.Item{
			f.blob(t, "boot-kernel", "boot-kernel", dir+"/boot-kernel", "kernel "+version),
			f.blob(t, "boot-initrd", "boot-initrd", dir+"/boot-initrd", "initrd "+version),
			f.blob(t, "squashfs", "squashfs", dir+"/squashfs", "squashfs shared by versions"),
			f.blob(t, "manifest", "manifest", dir+"/squashfs.manifest", "manifest "+version),
		},
	}
}

func (f *fixture) singleImage(t *testing.T, id, version string) store.Image {
	dir := "uploads/centos/centos70/amd64/generic/stable/" + version
	return store.Image{
		ID: id, ProductID: "com.customstream.stable:centos:centos70:amd64:generic",
		ContentID: "com.customstream:uploads:bases-download", Origin: store.OriginUpload, Kind: store.KindSingle,
		OS: "centos", Release: "centos70", Arch: "amd64", Subarch: "generic", Subarches: "generic",
		Label: "stable", Version: "7.0", ReleaseTitle: "centos 7.0", VersionName: version, Status: store.StatusReady,
		Items: []store.Item{
			f.blob(t, "root-tgz", "root-tgz", dir+"/root-tgz", "tarball "+version),
			f.blob(t, "manifest", "manifest", dir+"/root-tgz.manifest", "centos manifest "+version),
		},
	}
}

func (f *fixture) validate(t *testing.T) *simplestreams.Report {
	t.Helper()
	rep, err := simplestreams.Validate(simplestreams.DirSource(f.pub.Dir()), IndexPath)
	require.NoError(t, err)
	for _, p := range rep.Problems {
		t.Log(p.String())
	}
	return rep
}

func TestPublishProducesValidStream(t *testing.T) {
	f := newFixture(t)
	imgs := []store.Image{
		f.bootImage(t, "a", "20260101.01", store.StatusReady),
		f.bootImage(t, "b", "20260102.01", store.StatusReady),
		f.bootImage(t, "c", "20260103.01", store.StatusHashing),
		f.singleImage(t, "d", "20260101.01"),
	}
	res, err := f.pub.Publish(imgs)
	require.NoError(t, err)
	assert.Equal(t, 3, res.Versions, "only ready versions are published")

	rep := f.validate(t)
	assert.True(t, rep.OK())
	require.NotNil(t, rep.Index)
	assert.Len(t, rep.Index.Index, 2, "one product file per kind")
	assert.Len(t, rep.Items, 10, "two boot versions of four items and one single-file version of two")

	// Every item is a hard link to its blob, with the stated size.
	for _, it := range rep.Items {
		info, err := os.Stat(filepath.Join(f.pub.Dir(), it.Path))
		require.NoError(t, err)
		assert.Equal(t, it.Size, info.Size())
		blobInfo, err := os.Stat(f.blobs.Path(it.SHA256))
		require.NoError(t, err)
		assert.True(t, os.SameFile(info, blobInfo), it.Path)
		e, ok := f.pub.Lookup(it.Path)
		require.True(t, ok, it.Path)
		assert.Equal(t, it.SHA256, e.SHA256)
	}
	_, ok := f.pub.Lookup("uploads/ubuntu/noble/amd64/generic/generic/stable/20260103.01/boot-kernel")
	assert.False(t, ok, "a hashing version's files are not served")
	e, ok := f.pub.Lookup(IndexPath)
	require.True(t, ok)
	data, err := os.ReadFile(filepath.Join(f.pub.Dir(), IndexPath))
	require.NoError(t, err)
	assertServes(t, data, e)
	assert.FileExists(t, filepath.Join(f.pub.Dir(), ProductsPath))
}

// docPath returns the path the index on disk gives contentID's product
// file, or "".
func (f *fixture) docPath(t *testing.T, contentID string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(f.pub.Dir(), IndexPath))
	require.NoError(t, err)
	var index simplestreams.Index
	require.NoError(t, json.Unmarshal(data, &index))
	return index.Index[contentID].Path
}

func TestPublishRemovesDeletedVersionsAndEmptyFiles(t *testing.T) {
	f := newFixture(t)
	clock := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	f.pub.now = func() time.Time { return clock }
	a := f.bootImage(t, "a", "20260101.01", store.StatusReady)
	d := f.singleImage(t, "d", "20260101.01")
	_, err := f.pub.Publish([]store.Image{a, d})
	require.NoError(t, err)
	singleDoc := filepath.Join(f.pub.Dir(), f.docPath(t, "com.customstream:uploads:bases-download"))
	require.FileExists(t, singleDoc)

	_, err = f.pub.Publish([]store.Image{a})
	require.NoError(t, err)
	assert.Empty(t, f.docPath(t, "com.customstream:uploads:bases-download"), "never an empty product file")
	assert.FileExists(t, singleDoc, "a product file that left the index stays a while")
	_, err = f.pub.Publish([]store.Image{a})
	require.NoError(t, err)
	assert.FileExists(t, singleDoc, "for clients that read the old index, whatever publishes come between")
	_, ok := f.pub.Lookup(strings.TrimPrefix(singleDoc, f.pub.Dir()+"/"))
	assert.True(t, ok, "and is still served")
	clock = clock.Add(docGrace)
	_, err = f.pub.Publish([]store.Image{a})
	require.NoError(t, err)
	assert.NoFileExists(t, singleDoc, "until docGrace is over")
	assert.NoFileExists(t, filepath.Join(f.pub.Dir(), d.Items[0].Path))
	assert.NoDirExists(t, filepath.Join(f.pub.Dir(), "uploads/centos"), "empty directories go too")
	rep := f.validate(t)
	assert.True(t, rep.OK())
	assert.Len(t, rep.Index.Index, 1)

	_, err = f.pub.Publish(nil)
	require.NoError(t, err)
	rep = f.validate(t)
	// An empty mirror publishes an empty index, which 3.8 refuses: the
	// only problem there may be.
	require.Len(t, rep.Errors(), 1)
	assert.Contains(t, rep.Errors()[0].Message, "lists no product files")
	assert.Empty(t, rep.Index.Index)
	assert.NoFileExists(t, filepath.Join(f.pub.Dir(), ProductsPath))
}

func TestPublishKeepsUpdatedWhenNothingChanged(t *testing.T) {
	f := newFixture(t)
	clock := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	f.pub.now = func() time.Time { return clock }
	a := f.bootImage(t, "a", "20260101.01", store.StatusReady)
	_, err := f.pub.Publish([]store.Image{a})
	require.NoError(t, err)
	before, err := os.ReadFile(filepath.Join(f.pub.Dir(), IndexPath))
	require.NoError(t, err)

	clock = clock.Add(time.Hour)
	_, err = f.pub.Publish([]store.Image{a})
	require.NoError(t, err)
	after, err := os.ReadFile(filepath.Join(f.pub.Dir(), IndexPath))
	require.NoError(t, err)
	assert.Equal(t, string(before), string(after), "a republish of the same records changes no byte")

	b := f.bootImage(t, "b", "20260102.01", store.StatusReady)
	_, err = f.pub.Publish([]store.Image{a, b})
	require.NoError(t, err)
	changed, err := os.ReadFile(filepath.Join(f.pub.Dir(), IndexPath))
	require.NoError(t, err)
	assert.Contains(t, string(changed), "Thu, 01 Jan 2026 11:00:00 +0000")
}

func TestPublishLeavesOutABrokenVersionOnly(t *testing.T) {
	f := newFixture(t)
	a := f.bootImage(t, "a", "20260101.01", store.StatusReady)
	b := f.bootImage(t, "b", "20260102.01", store.StatusReady)
	require.NoError(t, f.blobs.Remove(b.Items[0].SHA256))
	c := f.singleImage(t, "c", "20260101.01")
	// d claims a's kernel path for other content.
	d := f.singleImage(t, "d", "20260102.01")
	d.Items[0].Path = a.Items[0].Path

	res, err := f.pub.Publish([]store.Image{a, b, c, d})
	require.NoError(t, err)
	assert.Contains(t, res.Skipped["b"], "blob")
	assert.Contains(t, res.Skipped["d"], "already published with other content")
	assert.Len(t, res.Skipped, 2)
	assert.Equal(t, 2, res.Versions)
	rep := f.validate(t)
	assert.True(t, rep.OK())
	_, ok := f.pub.Lookup(b.Items[1].Path)
	assert.False(t, ok)
	data, err := os.ReadFile(filepath.Join(f.pub.Dir(), a.Items[0].Path))
	require.NoError(t, err)
	assert.Equal(t, "kernel 20260101.01", string(data), "a's file is not replaced")
	// The documents written, while linking, with b in them are gone.
	entries, err := os.ReadDir(filepath.Join(f.pub.Dir(), StreamsDir))
	require.NoError(t, err)
	named := map[string]bool{path.Base(IndexPath): true, path.Base(ProductsPath): true}
	for _, e := range rep.Index.Index {
		named[path.Base(e.Path)] = true
	}
	for _, e := range entries {
		assert.True(t, named[e.Name()], "%s is named by the index", e.Name())
	}
}

func TestPublishTakesProductFieldsFromTheNewestVersion(t *testing.T) {
	f := newFixture(t)
	a := f.bootImage(t, "a", "20260101.01", store.StatusReady)
	b := f.bootImage(t, "b", "20260102.01", store.StatusReady)
	b.ReleaseTitle, b.SupportEOL = "24.04 LTS", "2029-05-31"
	for _, order := range [][]store.Image{{a, b}, {b, a}} {
		_, err := f.pub.Publish(order)
		require.NoError(t, err)
		data, err := os.ReadFile(filepath.Join(f.pub.Dir(), f.docPath(t, a.ContentID)))
		require.NoError(t, err)
		assert.Contains(t, string(data), `"release_title": "24.04 LTS"`)
		assert.Contains(t, string(data), `"support_eol": "2029-05-31"`)
	}
}

func TestPublishSignedCopies(t *testing.T) {
	f := newFixture(t)
	key, err := openpgp.NewEntity("test", "", "test@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	require.NoError(t, err)
	keyring := openpgp.EntityList{key}
	f.pub.SignWith(func(b []byte) ([]byte, error) { return simplestreams.Clearsign(b, key) }, keyring)
	imgs := []store.Image{f.bootImage(t, "a", "20260101.01", store.StatusReady), f.singleImage(t, "d", "20260101.01")}
	_, err = f.pub.Publish(imgs)
	require.NoError(t, err)

	rep, err := simplestreams.Validate(simplestreams.DirSource(f.pub.Dir()), SignedIndexPath)
	require.NoError(t, err)
	for _, p := range rep.Problems {
		t.Log(p.String())
	}
	require.True(t, rep.OK())
	require.Len(t, rep.Index.Index, 2)
	signedFiles := []string{SignedIndexPath, "streams/v1/products.sjson"}
	for _, e := range rep.Index.Index {
		assert.True(t, strings.HasSuffix(e.Path, ".sjson"), "the signed index names signed files: %s", e.Path)
		signedFiles = append(signedFiles, e.Path)
	}
	before := map[string][]byte{}
	for _, rel := range signedFiles {
		data, err := os.ReadFile(filepath.Join(f.pub.Dir(), rel))
		require.NoError(t, err)
		_, _, err = simplestreams.VerifyClearsigned(data, keyring)
		require.NoError(t, err, rel)
		e, ok := f.pub.Lookup(rel)
		require.True(t, ok, rel)
		assertServes(t, data, e)
		before[rel] = data
	}

	// Nothing changed: no byte changes, signatures included, in the same
	// process (from memory) and after a restart (from the disk).
	restarted, err := New(f.dir, f.blobs, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	restarted.SignWith(func(b []byte) ([]byte, error) { return simplestreams.Clearsign(b, key) }, keyring)
	for name, pub := range map[string]*Publisher{"same process": f.pub, "restarted": restarted} {
		_, err = pub.Publish(imgs)
		require.NoError(t, err)
		for rel, data := range before {
			again, err := os.ReadFile(filepath.Join(f.pub.Dir(), rel))
			require.NoError(t, err)
			assert.Equal(t, data, again, name+": "+rel)
			e, ok := pub.Lookup(rel)
			require.True(t, ok, rel)
			assertServes(t, data, e)
		}
	}

	// A new key signs everything again.
	other, err := openpgp.NewEntity("other", "", "o@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	require.NoError(t, err)
	f.pub.SignWith(func(b []byte) ([]byte, error) { return simplestreams.Clearsign(b, other) }, openpgp.EntityList{other})
	_, err = f.pub.Publish(imgs)
	require.NoError(t, err)
	for rel := range before {
		data, err := os.ReadFile(filepath.Join(f.pub.Dir(), rel))
		require.NoError(t, err)
		_, _, err = simplestreams.VerifyClearsigned(data, openpgp.EntityList{other})
		assert.NoError(t, err, rel)
	}

	// The signed copies go with their documents.
	_, err = f.pub.Publish(imgs[:1])
	require.NoError(t, err)
	assert.NoFileExists(t, filepath.Join(f.pub.Dir(), "streams/v1/com.customstream:uploads:bases-download.sjson"))
}

// versionsNamedBy returns the version names in the product files index
// names, sorted.
func (f *fixture) versionsNamedBy(t *testing.T, index *simplestreams.Index) []string {
	t.Helper()
	var out []string
	for _, e := range index.Index {
		data, err := os.ReadFile(filepath.Join(f.pub.Dir(), e.Path))
		require.NoError(t, err)
		if strings.HasSuffix(e.Path, ".sjson") {
			data, _, err = simplestreams.VerifyClearsigned(data, f.pub.keyring)
			require.NoError(t, err)
		}
		var doc simplestreams.Products
		require.NoError(t, json.Unmarshal(data, &doc))
		for _, prod := range doc.Products {
			for v := range prod.Versions {
				out = append(out, v)
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestPublishInterruptedLeavesAConsistentStream stops a publish part way
// (the signer fails, as a crash would stop it) and checks each index on disk
// still names product files that exist and list exactly its products: the
// old stream or the new one, never a mix.
func TestPublishInterruptedLeavesAConsistentStream(t *testing.T) {
	tests := []struct {
		name string
		// failOn is a string in the document whose signing fails.
		failOn string
		// newUnsigned is whether index.json already shows the new stream.
		newUnsigned bool
	}{
		{"before any index", `"content_id": "com.customstream:uploads:bases-download"`, false},
		{"between index.json and index.sjson", `"format": "index:1.0"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			key, err := openpgp.NewEntity("test", "", "test@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
			require.NoError(t, err)
			fail := false
			f.pub.SignWith(func(b []byte) ([]byte, error) {
				if fail && strings.Contains(string(b), tt.failOn) {
					return nil, errors.New("stopped here")
				}
				return simplestreams.Clearsign(b, key)
			}, openpgp.EntityList{key})
			a := f.bootImage(t, "a", "20260101.01", store.StatusReady)
			_, err = f.pub.Publish([]store.Image{a})
			require.NoError(t, err)

			fail = true
			a2 := f.bootImage(t, "a2", "20260102.01", store.StatusReady)
			d := f.singleImage(t, "d", "20260101.01")
			_, err = f.pub.Publish([]store.Image{a, a2, d})
			require.ErrorContains(t, err, "stopped here")

			for _, index := range []string{IndexPath, SignedIndexPath} {
				rep, err := simplestreams.Validate(simplestreams.DirSource(f.pub.Dir()), index)
				require.NoError(t, err)
				for _, p := range rep.Problems {
					t.Log(index, p.String())
				}
				assert.True(t, rep.OK(), "%s names a broken stream", index)
				want := []string{"20260101.01"}
				if index == IndexPath && tt.newUnsigned {
					want = []string{"20260101.01", "20260101.01", "20260102.01"}
				}
				assert.Equal(t, want, f.versionsNamedBy(t, rep.Index), "%s with its product files", index)
			}

			// The next publish completes the change.
			fail = false
			_, err = f.pub.Publish([]store.Image{a, a2, d})
			require.NoError(t, err)
			rep, err := simplestreams.Validate(simplestreams.DirSource(f.pub.Dir()), SignedIndexPath)
			require.NoError(t, err)
			assert.True(t, rep.OK())
			assert.Len(t, rep.Index.Index, 2)
		})
	}
}

// A publisher trusts what its own last publish left; a new one (a restart)
// checks the whole tree: stray files go, missing links come back.
func TestPublishAfterRestartChecksTheWholeTree(t *testing.T) {
	f := newFixture(t)
	a := f.bootImage(t, "a", "20250101", store.StatusReady)
	_, err := f.pub.Publish([]store.Image{a})
	require.NoError(t, err)
	stray := filepath.Join(f.pub.Dir(), "uploads", "stray")
	require.NoError(t, os.WriteFile(stray, []byte("left by a crash"), 0o644))
	kernel := filepath.Join(f.pub.Dir(), a.Items[0].Path)
	require.NoError(t, os.Remove(kernel))

	_, err = f.pub.Publish([]store.Image{a})
	require.NoError(t, err)
	assert.FileExists(t, stray, "the same publisher does not walk the tree again")

	restarted, err := New(f.dir, f.blobs, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	_, err = restarted.Publish([]store.Image{a})
	require.NoError(t, err)
	assert.NoFileExists(t, stray)
	assert.FileExists(t, kernel)
}

// assertServes checks that a document's entry serves what is on disk.
func assertServes(t *testing.T, onDisk []byte, e Entry) {
	t.Helper()
	want := entryOf(onDisk)
	assert.Equal(t, want.SHA256, e.SHA256)
	assert.Equal(t, want.Size, e.Size)
	assert.Equal(t, string(onDisk), string(e.Data), "memory serves the bytes on disk")
	assert.False(t, e.ModTime.IsZero())
}

// samePublished must tell apart any two versions buildProduct writes
// differently, or a publish would keep a product's old bytes: every field
// of a record and of its items is changed in turn.
func TestSamePublishedCoversBuildProduct(t *testing.T) {
	base := store.Image{ID: "a", ProductID: "p", ContentID: "c", Origin: "mirror", Kind: store.KindBoot,
		OS: "ubuntu", Release: "noble", Arch: "amd64", Subarch: "ga", Subarches: "ga", Kflavor: "generic", Label: "stable",
		Version: "24.04", ReleaseTitle: "24.04 LTS", ReleaseCodename: "Noble", SupportEOL: "2029", VersionName: "1",
		Status: store.StatusReady, Items: []store.Item{{Name: "k", FType: "boot-kernel", Path: "a/k", Size: 1, SHA256: "00",
			Staged: "s", Expected: "e", Source: "u", Extra: map[string]string{"kpackage": "linux"}}},
		CreatedAt: time.Unix(1, 0), UpdatedAt: time.Unix(1, 0)}
	withFields := base
	withFields.Fields = map[string]string{"os": "ubuntu", "support_eol": "2029"}
	encode := func(img store.Image) string {
		return string(buildProduct([]*store.Image{&img}).AppendIndented(nil))
	}
	// changed returns v with another value of its kind.
	changed := func(v reflect.Value) {
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "x")
		case reflect.Int64:
			v.SetInt(v.Int() + 1)
		case reflect.Map:
			m := reflect.MakeMap(v.Type())
			m.SetMapIndex(reflect.ValueOf("os"), reflect.ValueOf("other"))
			v.Set(m)
		case reflect.Struct: // time.Time
			v.Set(reflect.ValueOf(v.Interface().(time.Time).Add(time.Hour)))
		default:
			t.Fatalf("no change for a %s field: extend this test", v.Kind())
		}
	}
	for name, start := range map[string]store.Image{"own fields": base, "upstream fields": withFields} {
		typ := reflect.TypeOf(start)
		for i := 0; i < typ.NumField(); i++ {
			if typ.Field(i).Name == "Items" {
				itemType := reflect.TypeOf(store.Item{})
				for j := 0; j < itemType.NumField(); j++ {
					mod := start.Clone()
					changed(reflect.ValueOf(&mod.Items[0]).Elem().Field(j))
					t.Run(name+"/Items."+itemType.Field(j).Name, func(t *testing.T) {
						if encode(mod) != encode(start) {
							assert.False(t, samePublished(&start, &mod))
						}
					})
				}
				continue
			}
			mod := start.Clone()
			changed(reflect.ValueOf(&mod).Elem().Field(i))
			t.Run(name+"/"+typ.Field(i).Name, func(t *testing.T) {
				if encode(mod) != encode(start) {
					assert.False(t, samePublished(&start, &mod))
				}
			})
		}
		assert.True(t, samePublished(&start, &start))
	}
}

// A publisher that patches its last documents writes what a new one writes
// from the same records, through additions, changes and deletions.
func TestIncrementalPublishMatchesAFreshOne(t *testing.T) {
	f := newFixture(t)
	a := f.bootImage(t, "a", "20260101.01", store.StatusReady)
	b := f.bootImage(t, "b", "20260102.01", store.StatusReady)
	c := f.singleImage(t, "c", "20260101.01")
	d := f.singleImage(t, "d", "20260102.01")
	retitled := b.Clone()
	retitled.ReleaseTitle = "24.04 LTS"
	extra := c.Clone()
	extra.Items[0].Extra = map[string]string{"kpackage": "linux-generic"}
	failed := a.Clone()
	failed.Status = store.StatusFailed
	steps := [][]store.Image{
		{a, c},
		{a, b, c},
		{a, b, c, d},
		{a, retitled, c, d},
		{a, retitled, extra, d},
		{failed, retitled, extra},
		{failed, retitled, extra},
		{a, b, c, d},
	}
	// docsOf reads the product documents the index names, without their
	// `updated` line (a kept document keeps its date).
	docsOf := func(t *testing.T, dir string) map[string]string {
		data, err := os.ReadFile(filepath.Join(dir, IndexPath))
		require.NoError(t, err)
		var index simplestreams.Index
		require.NoError(t, json.Unmarshal(data, &index))
		out := map[string]string{}
		for id, e := range index.Index {
			doc, err := os.ReadFile(filepath.Join(dir, e.Path))
			require.NoError(t, err)
			out[id] = regexp.MustCompile(`\n "updated": "[^"]*",`).ReplaceAllString(string(doc), "")
		}
		products, err := os.ReadFile(filepath.Join(dir, ProductsPath))
		if err == nil {
			out[ProductsPath] = regexp.MustCompile(`\n "updated": "[^"]*",`).ReplaceAllString(string(products), "")
		}
		return out
	}
	for i, imgs := range steps {
		t.Run(fmt.Sprint("step ", i), func(t *testing.T) {
			_, err := f.pub.Publish(imgs)
			require.NoError(t, err)
			fresh, err := New(t.TempDir(), f.blobs, slog.New(slog.NewTextHandler(io.Discard, nil)))
			require.NoError(t, err)
			_, err = fresh.Publish(imgs)
			require.NoError(t, err)
			want := docsOf(t, fresh.Dir())
			require.NotEmpty(t, want)
			assert.Equal(t, want, docsOf(t, f.pub.Dir()))
		})
	}
}

// The first publish after a start removes what a crash left: stray files
// and empty directories, and nothing the stream uses.
func TestFirstPublishRemovesLeftovers(t *testing.T) {
	f := newFixture(t)
	a := f.bootImage(t, "a", "20250101", store.StatusReady)
	_, err := f.pub.Publish([]store.Image{a})
	require.NoError(t, err)
	emptyDirs := []string{"uploads/empty/deep/er", "uploads/ubuntu/noble/amd64/generic/generic/stable/20240101"}
	for _, d := range emptyDirs {
		require.NoError(t, os.MkdirAll(filepath.Join(f.pub.Dir(), d), 0o755))
	}
	stray := filepath.Join(f.pub.Dir(), "uploads/ubuntu/noble/amd64/generic/generic/stable/20250101/boot-kernel.tmp-link")
	require.NoError(t, os.WriteFile(stray, nil, 0o644))

	restarted, err := New(f.dir, f.blobs, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	_, err = restarted.Publish([]store.Image{a})
	require.NoError(t, err)
	assert.NoFileExists(t, stray)
	assert.NoDirExists(t, filepath.Join(f.pub.Dir(), "uploads/empty"))
	assert.NoDirExists(t, filepath.Join(f.pub.Dir(), emptyDirs[1]))
	for _, it := range a.Items {
		assert.FileExists(t, filepath.Join(f.pub.Dir(), it.Path))
	}
	assert.True(t, f.validate(t).OK())
}

func TestPublishLinksAVersionThatAFailedOneHid(t *testing.T) {
	f := newFixture(t)
	a := f.bootImage(t, "a", "20260101.01", store.StatusReady)
	require.NoError(t, f.blobs.Remove(a.Items[0].SHA256))
	// d claims a's kernel path for other content: left out while a holds
	// it, published once a is left out, so its file must be linked.
	d := f.singleImage(t, "d", "20260102.01")
	d.Items[0].Path = a.Items[0].Path

	res, err := f.pub.Publish([]store.Image{a, d})
	require.NoError(t, err)
	assert.Contains(t, res.Skipped["a"], "blob")
	assert.Equal(t, 1, res.Versions)
	assert.NotContains(t, res.Skipped, "d", "d is published")
	assert.True(t, f.validate(t).OK())
	data, err := os.ReadFile(filepath.Join(f.pub.Dir(), d.Items[0].Path))
	require.NoError(t, err)
	assert.Equal(t, "tarball 20260102.01", string(data))
}

func TestPublishRemovesTheLinksOfAVersionLeftOut(t *testing.T) {
	f := newFixture(t)
	a := f.bootImage(t, "a", "20260101.01", store.StatusReady)
	_, err := f.pub.Publish([]store.Image{a})
	require.NoError(t, err)
	b := f.bootImage(t, "b", "20260102.01", store.StatusReady)
	require.NoError(t, f.blobs.Remove(b.Items[0].SHA256))

	res, err := f.pub.Publish([]store.Image{a, b})
	require.NoError(t, err)
	assert.Contains(t, res.Skipped["b"], "blob")
	// b's other files were linked before its kernel failed: no set names
	// them, so only this publish can remove them (they would keep b's
	// blobs on disk after the blob store frees them).
	for _, it := range b.Items[1:] {
		_, err := os.Stat(filepath.Join(f.pub.Dir(), it.Path))
		assert.ErrorIs(t, err, fs.ErrNotExist, it.Path)
	}
	_, err = f.pub.Publish([]store.Image{a})
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(f.pub.Dir(), path.Dir(b.Items[1].Path)))
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

func TestFailingPublishesDoNotPileUpServedFiles(t *testing.T) {
	f := newFixture(t)
	a := f.bootImage(t, "a", "20260101.01", store.StatusReady)
	_, err := f.pub.Publish([]store.Image{a})
	require.NoError(t, err)
	index, ok := f.pub.Lookup(IndexPath)
	require.True(t, ok)
	// A directory where the index goes: every publish fails at the index.
	dst := filepath.Join(f.pub.Dir(), IndexPath)
	require.NoError(t, os.Remove(dst))
	require.NoError(t, os.MkdirAll(dst, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dst, "x"), []byte("x"), 0o644))
	b := f.bootImage(t, "b", "20260102.01", store.StatusReady)
	for range 5 {
		_, err := f.pub.Publish([]store.Image{a, b})
		require.Error(t, err)
		// The last good set and the failed publish's files: no more.
		assert.Equal(t, 3, len(*f.pub.files.Load()))
		e, ok := f.pub.Lookup(IndexPath)
		require.True(t, ok)
		assert.Equal(t, index.SHA256, e.SHA256, "the last good index is served")
	}
}
