package upstream

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/simplestreams"
)

// fixtureExpectation is what Entries should report for one product, computed
// straight from the fixture JSON rather than through simplestreams types.
type fixtureExpectation struct {
	contentID, productID, kind, latest, os string
	size                                   int64
	versions                               int
}

func expectFromFixtures(t *testing.T) []fixtureExpectation {
	t.Helper()
	// Each images.maas.io product file holds one kind of product.
	kindOf := map[string]string{bootCID: KindBoot, centosCID: KindSingle, bootloaderCID: KindBootloader}
	var out []fixtureExpectation
	for cid, kind := range kindOf {
		data, err := os.ReadFile(filepath.Join(fixtureDir, cid+".json"))
		require.NoError(t, err)
		var doc struct {
			Products map[string]map[string]any `json:"products"`
		}
		require.NoError(t, json.Unmarshal(data, &doc))
		for pid, p := range doc.Products {
			versions := p["versions"].(map[string]any)
			names := sortedIDs(versions)
			latest := names[len(names)-1]
			seen := map[string]bool{}
			var size int64
			items := versions[latest].(map[string]any)["items"].(map[string]any)
			for _, it := range items {
				item := it.(map[string]any)
				path := item["path"].(string)
				if !seen[path] {
					seen[path] = true
					size += int64(item["size"].(float64))
				}
			}
			out = append(out, fixtureExpectation{
				contentID: cid, productID: pid, kind: kind, latest: latest,
				os: p["os"].(string), size: size, versions: len(versions),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].productID < out[j].productID })
	return out
}

func TestEntriesOnFixtures(t *testing.T) {
	m := serveTree(t, buildTree(t, nil, nil))
	cat, err := m.client(nil).FetchCatalog(context.Background(), m.URL+"/streams/v1/index.json")
	require.NoError(t, err)

	want := expectFromFixtures(t)
	got := cat.Entries()
	require.Len(t, got, len(want))

	wantCounts := map[string]int{}
	gotCounts := map[string]int{}
	for i, w := range want {
		e := got[i]
		wantCounts[w.kind]++
		gotCounts[e.Kind]++
		t.Run(w.productID, func(t *testing.T) {
			assert.Equal(t, w.productID, e.ProductID)
			assert.Equal(t, w.contentID, e.ContentID)
			assert.Equal(t, w.kind, e.Kind)
			assert.Equal(t, w.latest, e.LatestVersion)
			assert.Equal(t, w.size, e.Size)
			assert.Positive(t, e.Size)
			assert.Equal(t, w.versions, e.Versions)
			assert.Equal(t, w.os, e.Fields["os"])
			assert.NotContains(t, e.Fields, "versions")
		})
	}
	assert.Equal(t, wantCounts, gotCounts)
	assert.Len(t, cat.Products[bootCID].Products, gotCounts[KindBoot])
	assert.Len(t, cat.Products[centosCID].Products, gotCounts[KindSingle])
	assert.Len(t, cat.Products[bootloaderCID].Products, gotCounts[KindBootloader])

	// Entries hands out copies: editing one must not change the catalog.
	got[0].Fields["os"] = "changed"
	assert.NotEqual(t, "changed", cat.Entries()[0].Fields["os"])
}

func TestProductKindAndSize(t *testing.T) {
	item := func(ftype, path string, size int64) simplestreams.Item {
		return simplestreams.Item{FType: ftype, Path: path, Size: size}
	}
	tests := []struct {
		name     string
		fields   map[string]string
		items    map[string]simplestreams.Item
		wantKind string
		wantSize int64
	}{
		{
			name: "boot image sharing a squashfs path",
			items: map[string]simplestreams.Item{
				"boot-kernel": item("boot-kernel", "k", 10),
				"boot-initrd": item("boot-initrd", "i", 20),
				"squashfs":    item("squashfs", "shared/squashfs", 1000),
				"manifest":    item("manifest", "shared/squashfs.manifest", 5),
				"squashfs2":   item("squashfs", "shared/squashfs", 1000), // same file, counted once
			},
			wantKind: KindBoot, wantSize: 1035,
		},
		{
			name:     "old root-image.gz stays a boot image",
			items:    map[string]simplestreams.Item{"boot-kernel": item("boot-kernel", "k", 1), "root-image.gz": item("root-image.gz", "r", 2)},
			wantKind: KindBoot, wantSize: 3,
		},
		{
			name:     "single-file root",
			items:    map[string]simplestreams.Item{"root-tgz": item("root-tgz", "r", 7), "manifest": item("manifest", "m", 1)},
			wantKind: KindSingle, wantSize: 8,
		},
		{
			name:     "root-dd without ftype uses the key",
			items:    map[string]simplestreams.Item{"root-dd": item("", "r", 9)},
			wantKind: KindSingle, wantSize: 9,
		},
		{
			name:     "bootloader by archive item",
			items:    map[string]simplestreams.Item{"grub2": item("archive.tar.xz", "g", 4)},
			wantKind: KindBootloader, wantSize: 4,
		},
		{
			name:     "bootloader by field",
			fields:   map[string]string{"bootloader-type": "uefi"},
			items:    map[string]simplestreams.Item{"x": item("other", "x", 1)},
			wantKind: KindBootloader, wantSize: 1,
		},
		{
			name:     "unknown",
			items:    map[string]simplestreams.Item{"x": item("other", "x", 1)},
			wantKind: KindUnknown, wantSize: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := simplestreams.Product{
				Fields: tc.fields,
				Versions: map[string]simplestreams.Version{
					"20250101":   {Items: map[string]simplestreams.Item{"old": item("other", "old", 99999)}},
					"20250101.1": {Items: tc.items},
				},
			}
			cat := &Catalog{Products: map[string]*simplestreams.Products{
				"cid": {Products: map[string]simplestreams.Product{"pid": p}},
			}}
			entries := cat.Entries()
			require.Len(t, entries, 1)
			assert.Equal(t, tc.wantKind, entries[0].Kind)
			assert.Equal(t, "20250101.1", entries[0].LatestVersion)
			assert.Equal(t, tc.wantSize, entries[0].Size)
			assert.Equal(t, 2, entries[0].Versions)
		})
	}
}

func TestEntriesSortedByProductID(t *testing.T) {
	cat := &Catalog{Products: map[string]*simplestreams.Products{
		"b-file": {Products: map[string]simplestreams.Product{"p2": {}, "p1": {}}},
		"a-file": {Products: map[string]simplestreams.Product{"p1": {}, "p3": {}}},
	}}
	var got [][2]string
	for _, e := range cat.Entries() {
		got = append(got, [2]string{e.ProductID, e.ContentID})
		assert.Equal(t, KindUnknown, e.Kind)
		assert.Empty(t, e.LatestVersion)
	}
	assert.Equal(t, [][2]string{{"p1", "a-file"}, {"p1", "b-file"}, {"p2", "b-file"}, {"p3", "a-file"}}, got)
}
