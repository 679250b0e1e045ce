package transfer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/signing"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
)

// uniqueVersion returns the single-file upload: its files belong to no other version.
func uniqueVersion(t *testing.T, d *dataDir) store.Image {
	t.Helper()
	for _, img := range d.images(t) {
		if img.Origin == store.OriginUpload && img.Kind == store.KindSingle {
			return img
		}
	}
	t.Fatal("the source has no single-file upload")
	return store.Image{}
}

// snapshotOf reads the documents of src's tree as an export starts.
func snapshotOf(t *testing.T, src *dataDir) (*exporter, map[string][]byte, *contents) {
	t.Helper()
	e, err := newExporter(src.Dir)
	require.NoError(t, err)
	docs, c, err := e.snapshot(context.Background())
	require.NoError(t, err)
	return e, docs, c
}

func TestExportVersionDeletedDuringExport(t *testing.T) {
	src := newSource(t)
	e, docs, c := snapshotOf(t, src)
	// A delete after the snapshot: the publish prunes its files, the
	// collection frees its blobs.
	gone := uniqueVersion(t, src)
	_, err := src.Images.Delete(gone.ID)
	require.NoError(t, err)
	for _, it := range gone.Items {
		_, ok := src.Blobs.Has(it.SHA256)
		require.False(t, ok, "the blob of %s was freed", it.Path)
	}

	var buf bytes.Buffer
	_, err = e.write(context.Background(), &buf, docs, c, ExportOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "gone from the tree and the blob store")
	assert.Contains(t, err.Error(), "export again")

	// A new export reads the documents as they are now, and imports.
	archive := export(t, src)
	res, err := importInto(t, newDataDir(t), archive, ImportOptions{})
	require.NoError(t, err)
	assert.Equal(t, len(src.images(t)), res.Added)
}

func TestExportReadsTheBlobWhenTheTreeDroppedAFile(t *testing.T) {
	src := newSource(t)
	e, docs, c := snapshotOf(t, src)
	// The tree no longer has the file (a publish moved it), the blob store does.
	p := uniqueVersion(t, src).Items[0].Path
	require.NoError(t, os.Remove(filepath.Join(src.Publisher.Dir(), filepath.FromSlash(p))))

	var buf bytes.Buffer
	_, err := e.write(context.Background(), &buf, docs, c, ExportOptions{})
	require.NoError(t, err)
	dst := newDataDir(t)
	_, err = importInto(t, dst, buf.Bytes(), ImportOptions{})
	require.NoError(t, err)
	dst.check(t)
}

func TestExportSnapshotWaitsForAPublish(t *testing.T) {
	src := newSource(t)
	indexPath := filepath.Join(src.Publisher.Dir(), filepath.FromSlash(publish.IndexPath))
	index, err := os.ReadFile(indexPath)
	require.NoError(t, err)
	// Half way through a publish: index.json no longer says what index.sjson does.
	require.NoError(t, os.WriteFile(indexPath, bytes.Replace(index, []byte(`"products": [`), []byte(`"products": ["new",`), 1), 0o644))

	e, err := newExporter(src.Dir)
	require.NoError(t, err)
	var waits []int
	e.wait = func(_ context.Context, attempt int) error {
		waits = append(waits, attempt)
		return os.WriteFile(indexPath, index, 0o644) // the publish completes
	}
	_, c, err := e.snapshot(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []int{1}, waits, "read once more, after the publish")
	assert.NotEmpty(t, c.files)

	// A tree that never verifies is an error, after every attempt.
	require.NoError(t, os.WriteFile(indexPath, []byte("{}"), 0o644))
	waits = nil
	e.wait = func(_ context.Context, attempt int) error { waits = append(waits, attempt); return nil }
	_, _, err = e.snapshot(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the published tree does not verify")
	assert.Len(t, waits, snapshotAttempts-1)
}

func TestExportFileLeavesNothingOnError(t *testing.T) {
	dir := t.TempDir() // no key: the server never ran here
	file := filepath.Join(t.TempDir(), "stream.tar")
	_, err := ExportFile(context.Background(), file, dir, ExportOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no signing key")
	assert.NoFileExists(t, file)
	assert.NoFileExists(t, file+".part")
	assert.NoDirExists(t, filepath.Join(dir, "keys"), "export generates no key")
}

func TestExportStopsWhenCanceled(t *testing.T) {
	src := newSource(t)
	ctx, cancel := context.WithCancel(context.Background())
	var buf bytes.Buffer
	_, err := Export(ctx, &buf, src.Dir, ExportOptions{Progress: func(done, total int64) {
		if done > total/2 {
			cancel()
		}
	}})
	require.ErrorIs(t, err, context.Canceled)
}

func TestExportRefusals(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) *dataDir
		want  string
		is    error
	}{
		{name: "nothing published", setup: newDataDir, want: "nothing to transfer", is: ErrEmpty},
		{name: "key rotated, server not restarted", setup: func(t *testing.T) *dataDir {
			d := newSource(t)
			_, err := signing.Replace(d.Dir, otherKey(t))
			require.NoError(t, err)
			return d
		}, want: "signs with another key than keys/ holds", is: simplestreams.ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.setup(t)
			e, err := newExporter(d.Dir)
			require.NoError(t, err)
			waits := 0
			e.wait = func(context.Context, int) error { waits++; return nil }
			_, _, err = e.snapshot(context.Background())
			require.ErrorIs(t, err, tt.is)
			assert.Contains(t, err.Error(), tt.want)
			if errors.Is(tt.is, ErrEmpty) {
				assert.Zero(t, waits, "an empty stream is not read again")
			}
		})
	}
}
