package images

import (
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/store"
)

const importedProduct = "com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04"

// importVersion is a version as an archive holds it, its files in the blob
// store (as the import commits them before recording).
func (e *env) importVersion(t *testing.T, product, version string) ImportVersion {
	t.Helper()
	v, content := e.mirrorVersion(t, root1, product, version)
	e.download(t, v, content)
	iv := ImportVersion{ContentID: v.ContentID, ProductID: v.ProductID, Kind: v.Kind, VersionName: v.VersionName, Fields: v.Fields}
	for _, it := range v.Items {
		iv.Items = append(iv.Items, store.Item{Name: it.Name, FType: it.FType, Path: "mirror/images.maas.io/" + it.Path,
			Size: it.Size, SHA256: it.SHA256, Extra: it.Extra})
	}
	return iv
}

// versionsOf returns the version names of product, by origin.
func (e *env) versionsOf(t *testing.T, product string) map[string][]string {
	t.Helper()
	imgs, err := e.store.ListImages()
	require.NoError(t, err)
	out := map[string][]string{}
	for _, img := range imgs {
		if img.ProductID == product {
			out[img.Origin] = append(out[img.Origin], img.VersionName)
		}
	}
	return out
}

func TestImportRecordsReadyVersionsOnce(t *testing.T) {
	e := newEnv(t)
	origin := ImportOrigin("ABCD")
	vs := []ImportVersion{e.importVersion(t, importedProduct, "20250615"), e.importVersion(t, importedProduct, "20250718")}
	plan, err := e.svc.Import(vs, origin)
	require.NoError(t, err)
	assert.Len(t, plan.New, 2)
	assert.Empty(t, plan.Present)
	assert.Equal(t, map[string][]string{origin: {"20250615", "20250718"}}, e.versionsOf(t, importedProduct))
	imgs, err := e.store.ListImages()
	require.NoError(t, err)
	for _, img := range imgs {
		assert.Equal(t, store.StatusReady, img.Status)
		assert.Equal(t, "jammy", img.Release, "fields are taken from the product")
		assert.Equal(t, vs[0].Fields, img.Fields, "and published as they are")
		for _, it := range img.Items {
			_, ok := e.pub.Lookup(it.Path)
			assert.True(t, ok, "%s is published", it.Path)
		}
	}

	// Again, from a source whose key changed: nothing new.
	plan, err = e.svc.Import(vs, ImportOrigin("EF01"))
	require.NoError(t, err)
	assert.Empty(t, plan.New)
	assert.Len(t, plan.Present, 2)
	assert.Equal(t, map[string][]string{origin: {"20250615", "20250718"}}, e.versionsOf(t, importedProduct))

	_, err = e.svc.Import(vs, "https://images.maas.io/")
	assert.ErrorContains(t, err, "does not start with")
}

func TestImportRetentionKeepsWhatTheArchiveHolds(t *testing.T) {
	e := newEnv(t)
	e.svc.KeepVersions = 1
	origin := ImportOrigin("ABCD")
	v1, v2 := e.importVersion(t, importedProduct, "20250615"), e.importVersion(t, importedProduct, "20250718")
	_, err := e.svc.Import([]ImportVersion{v1, v2}, origin)
	require.NoError(t, err)
	assert.Equal(t, []string{"20250615", "20250718"}, e.versionsOf(t, importedProduct)[origin], "every version of the archive stays")
	// Blobs unused at a publish are freed: the next archive's come just before it.
	v3 := e.importVersion(t, importedProduct, "20250801")
	_, err = e.svc.Import([]ImportVersion{v3}, origin)
	require.NoError(t, err)
	assert.Equal(t, []string{"20250801"}, e.versionsOf(t, importedProduct)[origin], "older imported versions beyond KEEP_VERSIONS go")
}

func TestPlanImportRefusals(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, e *env)
		edit  func(v *ImportVersion)
		want  string
	}{
		{name: "product mirrored from an upstream here", setup: func(t *testing.T, e *env) {
			v, content := e.mirrorVersion(t, root1, importedProduct, "20250101")
			_, job, err := e.svc.CreateMirror(v, newJob)
			require.NoError(t, err)
			require.NoError(t, e.svc.RecordResult(job.ID, e.download(t, v, content)))
		}, want: "product " + importedProduct + " already comes from " + root1},
		{name: "path published with other content", setup: func(t *testing.T, e *env) {
			v := e.importVersion(t, "com.example:v3:other", "20250101")
			v.Items[0].Path = "mirror/images.maas.io/jammy/amd64/20250615/boot-kernel"
			_, err := e.svc.Import([]ImportVersion{v}, ImportOrigin("ABCD"))
			require.NoError(t, err)
		}, want: "path mirror/images.maas.io/jammy/amd64/20250615/boot-kernel is already published here with other content"},
		{name: "path outside uploads and mirror", edit: func(v *ImportVersion) { v.Items[0].Path = "streams/v1/index.json" },
			want: "is not below uploads/ or mirror/"},
		{name: "path traversal", edit: func(v *ImportVersion) { v.Items[0].Path = "mirror/../customstream.db" }, want: "is not safe"},
		{name: "bad content id", edit: func(v *ImportVersion) { v.ContentID = "../index" }, want: "content id"},
		{name: "unknown kind", edit: func(v *ImportVersion) { v.Kind = "unknown" }, want: "neither a boot image"},
		{name: "bad sha256", edit: func(v *ImportVersion) { v.Items[0].SHA256 = "abc" }, want: "no valid size and sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.setup != nil {
				tt.setup(t, e)
			}
			before, err := e.store.ListImages()
			require.NoError(t, err)
			v := e.importVersion(t, importedProduct, "20250615")
			if tt.edit != nil {
				tt.edit(&v)
			}
			_, err = e.svc.PlanImport([]ImportVersion{v})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			_, err = e.svc.Import([]ImportVersion{v}, ImportOrigin("ABCD"))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			after, err := e.store.ListImages()
			require.NoError(t, err)
			assert.Equal(t, before, after, "nothing recorded")
		})
	}
}

func TestImportReplacesAFailedVersionAndNeedsItsBlobs(t *testing.T) {
	e := newEnv(t)
	origin := ImportOrigin("ABCD")
	v := e.importVersion(t, importedProduct, "20250615")
	missing := v
	missing.Items = slices.Clone(v.Items)
	missing.Items[0].SHA256 = "0000000000000000000000000000000000000000000000000000000000000000"
	_, err := e.svc.Import([]ImportVersion{missing}, origin)
	assert.ErrorContains(t, err, "is missing from the blob store")

	failed := withFields(&store.Image{ID: "failed", ProductID: v.ProductID, ContentID: v.ContentID, Origin: origin, Kind: v.Kind,
		VersionName: v.VersionName, Status: store.StatusFailed, Error: "earlier"}, v.Fields)
	require.NoError(t, e.store.CreateImages([]*store.Image{failed}))
	plan, err := e.svc.Import([]ImportVersion{v}, origin)
	require.NoError(t, err)
	assert.Len(t, plan.New, 1)
	imgs, err := e.store.ListImages()
	require.NoError(t, err)
	require.Len(t, imgs, 1)
	assert.Equal(t, store.StatusReady, imgs[0].Status)
	assert.NotEqual(t, "failed", imgs[0].ID)
	assert.Equal(t, []string{origin}, slices.Collect(maps.Keys(e.versionsOf(t, importedProduct))))
}
