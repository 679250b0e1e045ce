package catalog

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/upstream"
	"github.com/customstream/customstream/internal/upstream/upstreamtest"
)

// BenchmarkCatalog measures, on a synthetic upstream of 20,000 products
// shaped like images.maas.io, the fetch + parse + cache of its catalog and
// one live filter (the work behind each keystroke on the Upstream page).
func BenchmarkCatalog(b *testing.B) {
	dir := b.TempDir()
	require.NoError(b, upstreamtest.GenerateLarge(dir, 20000, 1))
	srv := upstreamtest.NewServer(b, dir)
	st, err := store.Open(filepath.Join(b.TempDir(), "customstream.db"), time.Second)
	require.NoError(b, err)
	defer st.Close()
	svc := New(st, upstream.New(upstream.Options{}), slog.New(slog.NewTextHandler(io.Discard, nil)))
	url := srv.URL + "/streams/v1/index.json"

	b.Run("fetch-parse-cache", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_, err := svc.Load(context.Background(), url, true)
			require.NoError(b, err)
		}
	})
	l, err := svc.Load(context.Background(), url, false)
	require.NoError(b, err)
	filters, err := simplestreams.ParseFilters("arch=amd64 release~(jammy|noble) label=stable")
	require.NoError(b, err)
	queries := map[string]Query{
		"filter-expressions": {Filters: filters},
		"free-text":          {Text: "noble hwe"},
		"drop-downs":         {Fields: map[string]string{"arch": "arm64", "os": "ubuntu"}},
	}
	for name, q := range queries {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if len(l.Filter(q)) == 0 {
					b.Fatal("the query matched nothing")
				}
			}
		})
	}
}
