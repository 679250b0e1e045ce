package catalog

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/upstream"
	"github.com/customstream/customstream/internal/upstream/upstreamtest"
)

type fixture struct {
	svc   *Service
	store *store.Store
	tree  *upstreamtest.Tree
	srv   *upstreamtest.Server
	url   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "customstream.db"), time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	tree, err := upstreamtest.Generate(t.TempDir(), upstreamtest.DefaultOptions())
	require.NoError(t, err)
	srv := upstreamtest.NewServer(t, tree.Dir)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return &fixture{svc: New(st, upstream.New(upstream.Options{}), log), store: st, tree: tree, srv: srv,
		url: srv.URL + "/streams/v1/index.json"}
}

func (f *fixture) requests(path string) int {
	n := 0
	for _, r := range f.srv.Requests() {
		if r.Path == path {
			n++
		}
	}
	return n
}

func TestLoadCachesInMemoryAndInTheDatabase(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	l, err := f.svc.Load(ctx, f.url, false)
	require.NoError(t, err)
	assert.False(t, l.Catalog.Signed)
	assert.Equal(t, 1, f.requests("streams/v1/index.json"))

	_, err = f.svc.Load(ctx, f.url, false)
	require.NoError(t, err)
	assert.Equal(t, 1, f.requests("streams/v1/index.json"), "the second load comes from memory")

	// A new service (a restarted web process) reads the database.
	fresh := New(f.store, upstream.New(upstream.Options{}), f.svc.log)
	l2, err := fresh.Load(ctx, f.url, false)
	require.NoError(t, err)
	assert.Equal(t, 1, f.requests("streams/v1/index.json"))
	assert.Equal(t, l.Entries, l2.Entries)
	assert.Equal(t, l.Catalog.Products, l2.Catalog.Products, "the cached documents parse to the same catalog")
	assert.Equal(t, l.Catalog.Warnings, l2.Catalog.Warnings)

	_, err = fresh.Load(ctx, f.url, true)
	require.NoError(t, err)
	assert.Equal(t, 2, f.requests("streams/v1/index.json"), "refresh fetches again")

	ups, err := f.svc.Upstreams()
	require.NoError(t, err)
	require.Len(t, ups, 1)
	assert.Equal(t, f.url, ups[0].URL)
	assert.Equal(t, len(l.Entries), ups[0].Products)
}

// A catalog cached as JSON, as versions before the document cache wrote it,
// still loads from the database.
func TestLoadReadsAJSONCache(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cat, err := upstream.New(upstream.Options{}).FetchCatalog(ctx, f.url)
	require.NoError(t, err)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	require.NoError(t, json.NewEncoder(zw).Encode(cat))
	require.NoError(t, zw.Close())
	require.NoError(t, f.store.PutUpstream(&store.Upstream{URL: cat.IndexURL, Root: cat.Root}, buf.Bytes()))

	l, err := f.svc.Load(ctx, f.url, false)
	require.NoError(t, err)
	assert.Equal(t, 1, f.requests("streams/v1/index.json"), "read from the database, not fetched")
	assert.Equal(t, cat.Products, l.Catalog.Products)
}

func TestLoadErrors(t *testing.T) {
	f := newFixture(t)
	_, err := f.svc.Load(context.Background(), "ftp://example.com/", false)
	var bad *BadURLError
	require.ErrorAs(t, err, &bad)
	f.srv.Fail("streams/v1/index.json", 500)
	_, err = f.svc.Load(context.Background(), f.url, false)
	require.Error(t, err)
	assert.False(t, errors.As(err, &bad), "an upstream failure is not a bad URL")
	assert.Contains(t, err.Error(), "500")
}

func TestFilter(t *testing.T) {
	f := newFixture(t)
	l, err := f.svc.Load(context.Background(), f.url, false)
	require.NoError(t, err)
	all := l.Filter(Query{})
	require.Len(t, all, len(l.Entries))

	amd64Jammy, err := simplestreams.ParseFilters("arch=amd64 release~jammy")
	require.NoError(t, err)
	tests := []struct {
		name string
		q    Query
		keep func(fields map[string]string, id string) bool
	}{
		{"filters", Query{Filters: amd64Jammy}, func(fl map[string]string, _ string) bool {
			return fl["arch"] == "amd64" && strings.Contains(fl["release"], "jammy")
		}},
		{"free text, any case", Query{Text: "CentOS"}, func(fl map[string]string, id string) bool {
			for _, v := range fl {
				if strings.Contains(strings.ToLower(v), "centos") {
					return true
				}
			}
			return strings.Contains(strings.ToLower(id), "centos")
		}},
		{"fields", Query{Fields: map[string]string{"arch": "arm64", "os": "ubuntu"}}, func(fl map[string]string, _ string) bool {
			return fl["arch"] == "arm64" && fl["os"] == "ubuntu"
		}},
		{"nothing", Query{Text: "no-such-thing"}, func(map[string]string, string) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []string
			for _, e := range l.Entries {
				if tt.keep(e.Fields, e.ProductID) {
					want = append(want, e.ProductID)
				}
			}
			var got []string
			for _, e := range l.Filter(tt.q) {
				got = append(got, e.ProductID)
			}
			assert.Equal(t, want, got)
		})
	}
	assert.Equal(t, []string{"amd64", "arm64", "i386", "ppc64el"}, l.Values("arch"), "bootloaders add i386 and ppc64el")
}

func TestLatestVersionAndBootloaders(t *testing.T) {
	f := newFixture(t)
	l, err := f.svc.Load(context.Background(), f.url, false)
	require.NoError(t, err)
	ids := l.Bootloaders()
	assert.Len(t, ids, len(f.tree.Products[upstreamtest.BootloaderContentID].Products))

	var boot upstream.Entry
	for _, e := range l.Entries {
		if e.Kind == upstream.KindBoot {
			boot = e
			break
		}
	}
	v, err := l.LatestVersion(boot.ProductID)
	require.NoError(t, err)
	assert.Equal(t, f.tree.Versions()[len(f.tree.Versions())-1], v.VersionName)
	assert.Equal(t, boot.ContentID, v.ContentID)
	want := f.tree.Products[boot.ContentID].Products[boot.ProductID].Versions[v.VersionName].Items
	require.Len(t, v.Items, len(want))
	for _, it := range v.Items {
		assert.Equal(t, want[it.Name].SHA256, it.SHA256)
		assert.Equal(t, f.srv.URL+"/"+want[it.Name].Path, it.URL)
	}
	_, err = l.LatestVersion("no.such:product")
	assert.Error(t, err)
}

func TestStates(t *testing.T) {
	root := "http://up/"
	entries := []upstream.Entry{{ProductID: "a", LatestVersion: "2"}, {ProductID: "b", LatestVersion: "2"},
		{ProductID: "c", LatestVersion: "2"}, {ProductID: "d", LatestVersion: "2"}, {ProductID: "e", LatestVersion: "2"}}
	imgs := []store.Image{
		{ProductID: "a", Origin: root, VersionName: "2", Status: store.StatusReady},
		{ProductID: "b", Origin: root, VersionName: "1", Status: store.StatusReady},
		{ProductID: "c", Origin: root, VersionName: "2", Status: store.StatusDownloading},
		{ProductID: "d", Origin: root, VersionName: "2", Status: store.StatusFailed},
		{ProductID: "e", Origin: "http://other/", VersionName: "2", Status: store.StatusReady},
	}
	states := States(imgs, root, entries)
	assert.Equal(t, StateMirrored, State(states, "a"))
	assert.Equal(t, StateOutdated, State(states, "b"))
	assert.Equal(t, StateDownloading, State(states, "c"))
	assert.Equal(t, StateFailed, State(states, "d"))
	assert.Equal(t, StateNotMirrored, State(states, "e"), "another upstream's copy does not count")
}
