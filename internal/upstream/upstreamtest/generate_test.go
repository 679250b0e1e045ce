package upstreamtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/simplestreams"
)

// requireValid validates the tree at dir from indexPath and fails on any error.
func requireValid(t *testing.T, dir, indexPath string) *simplestreams.Report {
	t.Helper()
	report, err := simplestreams.Validate(simplestreams.DirSource(dir), indexPath)
	require.NoError(t, err)
	for _, p := range report.Problems {
		t.Logf("%s", p)
	}
	require.Empty(t, report.Errors(), "the generated tree must have no errors")
	return report
}

func fileSHA256(t *testing.T, name string) (int64, string) {
	t.Helper()
	data, err := os.ReadFile(name)
	require.NoError(t, err)
	sum := sha256.Sum256(data)
	return int64(len(data)), hex.EncodeToString(sum[:])
}

// eachItem calls fn for every item of every product of t.
func eachItem(tr *Tree, fn func(cid, id, version string, it simplestreams.Item)) {
	for cid, doc := range tr.Products {
		for id, p := range doc.Products {
			for v, ver := range p.Versions {
				for _, it := range ver.Items {
					fn(cid, id, v, it)
				}
			}
		}
	}
}

func TestGenerateValidates(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		cids []string
	}{
		{"defaults", DefaultOptions(), []string{BootContentID, BootloaderContentID, CentosContentID}},
		{"zero options: boot only", Options{}, []string{BootContentID}},
		{"one release three versions", Options{
			Releases: []Release{{Name: "focal", Version: "20.04"}},
			Arches:   []string{"amd64"},
			Versions: []string{"20250101.1", "20250101", "20240101"},
			ItemSize: 1000,
			Centos:   true,
		}, []string{BootContentID, CentosContentID}},
		{"non-LTS release without a date-like version", Options{
			Releases: []Release{{Name: "plucky", Version: "25.04", Codename: "Plucky Puffin"}, {Name: "x", Version: "daily"}},
			ItemSize: 10,
		}, []string{BootContentID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tr, err := Generate(dir, tt.opts)
			require.NoError(t, err)
			report := requireValid(t, dir, IndexPath)

			cids := make([]string, 0, len(tr.Index.Index))
			for cid := range tr.Index.Index {
				cids = append(cids, cid)
			}
			assert.ElementsMatch(t, tt.cids, cids)
			// The Tree describes what is on disk.
			require.NotNil(t, report.Index)
			assert.Equal(t, tr.Index, *report.Index)
			assert.Len(t, report.Items, len(tr.Files))
			for _, ref := range report.Items {
				assert.Equal(t, FileInfo{Size: ref.Size, SHA256: ref.SHA256}, tr.Files[ref.Path], ref.Path)
			}
		})
	}
}

func TestGenerateShapedLikeImagesMAASIO(t *testing.T) {
	dir := t.TempDir()
	tr, err := Generate(dir, DefaultOptions())
	require.NoError(t, err)

	boot := tr.Products[BootContentID]
	require.NotNil(t, boot)
	assert.Equal(t, simplestreams.DataTypeIDs, boot.DataType)
	assert.Equal(t, "Thu, 24 Jul 2025 08:01:49 +0000", boot.Updated)
	assert.Len(t, boot.Products, 2*2*2, "ga and hwe for 2 releases and 2 arches")

	ga := boot.Products["com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04"]
	hwe := boot.Products["com.ubuntu.maas.stable:v3:boot:22.04:amd64:hwe-22.04"]
	require.NotNil(t, ga.Versions)
	require.NotNil(t, hwe.Versions)
	assert.Equal(t, map[string]string{
		"arch": "amd64", "kflavor": "generic", "krel": "jammy", "label": "stable", "os": "ubuntu",
		"release": "jammy", "release_codename": "Jammy Jellyfish", "release_title": "22.04 LTS",
		"subarch": "ga-22.04", "subarches": "generic,ga-22.04", "support_eol": "2027-04-30",
		"support_esm_eol": "2032-04-30", "version": "22.04",
	}, ga.Fields)
	assert.Equal(t, []string{"20250615", "20250718"}, tr.Versions())
	assert.Equal(t, "20250718", ga.LatestVersion())

	gaItems := ga.Versions["20250718"].Items
	hweItems := hwe.Versions["20250718"].Items
	assert.Equal(t, "jammy/amd64/20250718/ga-22.04/generic/boot-kernel", gaItems["boot-kernel"].Path)
	assert.Equal(t, "linux-generic", gaItems["boot-kernel"].Extra["kpackage"])
	assert.Equal(t, "jammy/amd64/20250718/hwe-22.04/generic/boot-initrd", hweItems["boot-initrd"].Path)
	assert.Equal(t, "linux-generic-hwe-22.04", hweItems["boot-initrd"].Extra["kpackage"])
	// ga- and hwe- share the squashfs and its manifest.
	assert.Equal(t, "jammy/amd64/20250718/squashfs", gaItems["squashfs"].Path)
	assert.Equal(t, gaItems["squashfs"], hweItems["squashfs"])
	assert.Equal(t, "jammy/amd64/20250718/squashfs.manifest", gaItems["manifest"].Path)
	assert.Equal(t, gaItems["manifest"], hweItems["manifest"])
	assert.EqualValues(t, DefaultItemSize, gaItems["squashfs"].Size)
	assert.EqualValues(t, DefaultItemSize/4, gaItems["boot-kernel"].Size)

	bl := tr.Products[BootloaderContentID].Products["com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64"]
	require.NotNil(t, bl.Versions)
	assert.Equal(t, "uefi", bl.Fields["bootloader-type"])
	grub := bl.Versions["20250615"].Items["grub2-signed"]
	assert.Equal(t, "bootloaders/uefi/amd64/20250615/grub2-signed.tar.xz", grub.Path)
	assert.Equal(t, "archive.tar.xz", grub.FType)
	assert.Equal(t, "grub2-signed", grub.Extra["src_package"])
	assert.Equal(t, "jammy", grub.Extra["src_release"])
	assert.NotEmpty(t, grub.Extra["src_version"])

	centos := tr.Products[CentosContentID].Products["com.ubuntu.maas.stable:centos-bases:7.0:amd64"]
	require.NotNil(t, centos.Versions)
	assert.Equal(t, "centos70", centos.Fields["release"])
	assert.Equal(t, "centos/centos70/amd64/20250615/root-tgz", centos.Versions["20250615"].Items["root-tgz"].Path)
	assert.Equal(t, "manifest", centos.Versions["20250615"].Items["manifest"].FType)

	// Sizes are JSON integers and documents end in a newline.
	raw, err := os.ReadFile(filepath.Join(dir, "streams/v1/com.ubuntu.maas:stable:v3:download.json"))
	require.NoError(t, err)
	assert.Contains(t, string(raw), `"size": 65536`)
	assert.True(t, bytes.HasSuffix(raw, []byte("}\n")))
}

func TestGenerateItemFilesMatchMetadata(t *testing.T) {
	dir := t.TempDir()
	tr, err := Generate(dir, DefaultOptions())
	require.NoError(t, err)

	listed := make(map[string]bool)
	eachItem(tr, func(_, id, v string, it simplestreams.Item) {
		listed[it.Path] = true
		size, sum := fileSHA256(t, filepath.Join(dir, filepath.FromSlash(it.Path)))
		assert.Equal(t, it.Size, size, "%s %s %s", id, v, it.Path)
		assert.Equal(t, it.SHA256, sum, "%s %s %s", id, v, it.Path)
		assert.Equal(t, FileInfo{Size: size, SHA256: sum}, tr.Files[it.Path])
	})
	assert.Len(t, tr.Files, len(listed))

	// Nothing else is on disk but the documents.
	err = filepath.WalkDir(dir, func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(name, dir+string(filepath.Separator)))
		if !strings.HasPrefix(rel, "streams/v1/") {
			assert.True(t, listed[rel], "unlisted file %s", rel)
		}
		return nil
	})
	require.NoError(t, err)

	// Manifests are text.
	m := tr.Products[BootContentID].Products["com.ubuntu.maas.stable:v3:boot:24.04:arm64:ga-24.04"].Versions["20250615"].Items["manifest"]
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(m.Path)))
	require.NoError(t, err)
	assert.Contains(t, string(data), "\t")
	assert.Contains(t, string(data), "\n")
}

func TestGenerateIsDeterministic(t *testing.T) {
	opts := DefaultOptions()
	opts.Seed = 42
	a, err := Generate(t.TempDir(), opts)
	require.NoError(t, err)
	b, err := Generate(t.TempDir(), opts)
	require.NoError(t, err)
	assert.Equal(t, a.Files, b.Files)
	for _, doc := range []string{IndexPath, "streams/v1/" + BootContentID + ".json"} {
		da, err := os.ReadFile(filepath.Join(a.Dir, doc))
		require.NoError(t, err)
		db, err := os.ReadFile(filepath.Join(b.Dir, doc))
		require.NoError(t, err)
		assert.Equal(t, da, db, doc)
	}

	opts.Seed = 43
	c, err := Generate(t.TempDir(), opts)
	require.NoError(t, err)
	for p, info := range a.Files {
		assert.NotEqual(t, info.SHA256, c.Files[p].SHA256, "another seed gives other bytes for %s", p)
	}

	// Without sharing, no two paths hold the same bytes.
	seen := make(map[string]string)
	for p, info := range a.Files {
		if other, dup := seen[info.SHA256]; dup {
			t.Errorf("%s and %s have the same content", p, other)
		}
		seen[info.SHA256] = p
	}
}

// sharedWithPrevious counts the items of version v whose file copies the
// same product's item in prev (distinct paths).
func sharedWithPrevious(tr *Tree, v, prev string) (shared, total int) {
	sharedPaths := make(map[string]bool)
	allPaths := make(map[string]bool)
	for _, doc := range tr.Products {
		for _, p := range doc.Products {
			for key, it := range p.Versions[v].Items {
				allPaths[it.Path] = true
				old := p.Versions[prev].Items[key]
				if old.SHA256 == it.SHA256 && old.Path != it.Path {
					sharedPaths[it.Path] = true
				}
			}
		}
	}
	return len(sharedPaths), len(allPaths)
}

func TestGenerateSharedFraction(t *testing.T) {
	tests := []struct {
		fraction   float64
		wantShared func(total int) int
	}{
		{0, func(int) int { return 0 }},
		{0.5, func(total int) int { return (total + 1) / 2 }},
		{1, func(total int) int { return total }},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("fraction %v", tt.fraction), func(t *testing.T) {
			opts := DefaultOptions()
			opts.SharedFraction = tt.fraction
			opts.Versions = []string{"20250101", "20250201", "20250301"}
			dir := t.TempDir()
			tr, err := Generate(dir, opts)
			require.NoError(t, err)
			requireValid(t, dir, IndexPath)

			shared, total := sharedWithPrevious(tr, "20250301", "20250201")
			assert.Equal(t, tt.wantShared(total), shared, "newest version")
			older, _ := sharedWithPrevious(tr, "20250201", "20250101")
			assert.Zero(t, older, "only the newest version shares")

			// Shared files really hold the same bytes.
			eachItem(tr, func(_, _, _ string, it simplestreams.Item) {
				_, sum := fileSHA256(t, filepath.Join(dir, filepath.FromSlash(it.Path)))
				assert.Equal(t, it.SHA256, sum, it.Path)
			})
		})
	}
}

func TestGenerateRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"version with slash", Options{Versions: []string{"2025/01"}}, `version "2025/01"`},
		{"duplicate version", Options{Versions: []string{"1", "1"}}, `version "1" given twice`},
		{"dotdot arch", Options{Arches: []string{".."}}, `arch ".."`},
		{"empty release name", Options{Releases: []Release{{Version: "22.04"}}}, "release name"},
		{"fraction", Options{SharedFraction: 1.5}, "SharedFraction"},
		{"negative size", Options{ItemSize: -1}, "ItemSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Generate(t.TempDir(), tt.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// fakeSigner counts calls and wraps payloads with FakeClearsign.
type fakeSigner struct{ calls int }

func (f *fakeSigner) sign(payload []byte) ([]byte, error) {
	f.calls++
	return FakeClearsign(payload)
}

func TestSign(t *testing.T) {
	dir := t.TempDir()
	tr, err := Generate(dir, DefaultOptions())
	require.NoError(t, err)
	var signer fakeSigner
	require.NoError(t, tr.Sign(signer.sign))
	assert.Equal(t, len(tr.Index.Index)+1, signer.calls, "every product file and the index")

	// A .sjson beside every .json, holding the same JSON.
	jsons, err := filepath.Glob(filepath.Join(dir, "streams", "v1", "*.json"))
	require.NoError(t, err)
	require.Len(t, jsons, 4)
	for _, j := range jsons {
		signed, err := os.ReadFile(strings.TrimSuffix(j, ".json") + ".sjson")
		require.NoError(t, err, j)
		assert.True(t, simplestreams.IsClearsigned(signed), j)
		plain, err := os.ReadFile(j)
		require.NoError(t, err)
		if filepath.Base(j) != "index.json" {
			assert.Contains(t, string(signed), strings.TrimSuffix(string(plain), "\n"))
		}
	}

	// index.sjson names the .sjson product files; index.json keeps the .json ones.
	report := requireValid(t, dir, SignedIndexPath)
	require.NotNil(t, report.Index)
	for cid, e := range report.Index.Index {
		assert.Equal(t, "streams/v1/"+cid+".sjson", e.Path)
	}
	for cid, e := range tr.Index.Index {
		assert.Equal(t, "streams/v1/"+cid+".json", e.Path)
	}
	requireValid(t, dir, IndexPath)

	// A signer's error is reported.
	err = tr.Sign(func([]byte) ([]byte, error) { return nil, assert.AnError })
	require.ErrorIs(t, err, assert.AnError)
	require.Error(t, tr.Sign(nil))
}

func TestFakeClearsignDashEscapes(t *testing.T) {
	out, err := FakeClearsign([]byte("{\n-not json\n}\n"))
	require.NoError(t, err)
	assert.Contains(t, string(out), "\n- -not json\n")
	assert.True(t, strings.HasPrefix(string(out), "-----BEGIN PGP SIGNED MESSAGE-----\n"))
}

func TestAddVersion(t *testing.T) {
	dir := t.TempDir()
	opts := DefaultOptions()
	opts.SharedFraction = 0.25
	tr, err := Generate(dir, opts)
	require.NoError(t, err)
	var signer fakeSigner
	require.NoError(t, tr.Sign(signer.sign))
	before := maps.Clone(tr.Files)
	oldUpdated := tr.Index.Updated

	require.NoError(t, tr.AddVersion("20250801"))
	assert.Equal(t, []string{"20250615", "20250718", "20250801"}, tr.Versions())
	assert.NotEqual(t, oldUpdated, tr.Index.Updated)
	for cid, doc := range tr.Products {
		assert.Equal(t, tr.Index.Updated, doc.Updated, cid)
		for id, p := range doc.Products {
			assert.Equal(t, "20250801", p.LatestVersion(), id)
			assert.Len(t, p.Versions, 3, id)
		}
	}
	// Old files are untouched, new ones exist and match.
	for p, info := range before {
		assert.Equal(t, info, tr.Files[p], p)
	}
	eachItem(tr, func(_, _, v string, it simplestreams.Item) {
		if v != "20250801" {
			return
		}
		size, sum := fileSHA256(t, filepath.Join(dir, filepath.FromSlash(it.Path)))
		assert.Equal(t, FileInfo{Size: it.Size, SHA256: it.SHA256}, FileInfo{Size: size, SHA256: sum}, it.Path)
	})
	shared, total := sharedWithPrevious(tr, "20250801", "20250718")
	assert.Equal(t, (total+2)/4, shared, "SharedFraction applies to the added version")

	// Both indexes validate, and the signed one was re-signed.
	report := requireValid(t, dir, IndexPath)
	assert.Len(t, report.Items, len(tr.Files))
	signedReport := requireValid(t, dir, SignedIndexPath)
	assert.Len(t, signedReport.Items, len(tr.Files))

	require.ErrorContains(t, tr.AddVersion("20250801"), "already exists")
	require.ErrorContains(t, tr.AddVersion("a/b"), "not a plain path segment")
}

func TestGenerateLarge(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("writes and validates about 30 MB of metadata: too slow for -short or -race")
	}
	dir := t.TempDir()
	require.NoError(t, GenerateLarge(dir, 20000, 7))
	report := requireValid(t, dir, IndexPath)
	require.NotNil(t, report.Index)
	assert.Len(t, report.Index.Index[BootContentID].Products, 20000)
	assert.Len(t, report.Index.Index[BootloaderContentID].Products, 4)
	ids := report.Index.Index[BootContentID].Products
	assert.Contains(t, ids, "com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04")
	assert.Contains(t, ids, "com.ubuntu.maas.stable:v3:boot:22.04:s390x:hwe-22.04-lowlatency")
	assert.True(t, slices.IsSorted(ids))

	// Only metadata is written.
	var files []string
	require.NoError(t, filepath.WalkDir(dir, func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, filepath.ToSlash(strings.TrimPrefix(name, dir+string(filepath.Separator))))
		}
		return err
	}))
	assert.ElementsMatch(t, []string{
		IndexPath, "streams/v1/" + BootContentID + ".json", "streams/v1/" + BootloaderContentID + ".json",
	}, files)
}

func TestGenerateLargeSmall(t *testing.T) {
	for _, n := range []int{0, 1, 25} {
		dir := t.TempDir()
		require.NoError(t, GenerateLarge(dir, n, 1))
		report := requireValid(t, dir, IndexPath)
		assert.Len(t, report.Index.Index[BootContentID].Products, n)
	}
	require.Error(t, GenerateLarge(t.TempDir(), -1, 1))
}
