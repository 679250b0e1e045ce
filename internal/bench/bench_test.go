package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/customstream/customstream/internal/store"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTargets(t *testing.T) {
	tests := []struct {
		name string
		row  Row
		pass bool
	}{
		{"at least, reached", atLeast("w", "m", "a", "b", 0.95, 0.9), true},
		{"at least, missed", atLeast("w", "m", "a", "b", 0.85, 0.9), false},
		{"at most, reached", atMost("w", "m", "a", "b", 1.15, 1.15), true},
		{"at most, missed", atMost("w", "m", "a", "b", 1.2, 1.15), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.pass, tt.row.Pass)
		})
	}
	assert.Equal(t, "≤ 1.15×", atMost("w", "m", "a", "b", 1, 1.15).Target)
}

func TestTableIsMarkdown(t *testing.T) {
	out := Table([]Row{
		atLeast("serving", "1 GiB GET", "900 MB/s", "1000 MB/s (nginx)", 0.9, 0.9),
		{What: "mirror", Measure: "the section did not finish", Note: "nginx: exited"},
	})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4)
	assert.Equal(t, "| serving | 1 GiB GET | 900 MB/s | 1000 MB/s (nginx) | 0.90× | ≥ 0.9× | PASS |", lines[2])
	assert.Equal(t, "| mirror | the section did not finish |  |  | – |  | MISS (nginx: exited) |", lines[3])
}

func TestServedBytes(t *testing.T) {
	log := filepath.Join(t.TempDir(), "access.log")
	require.NoError(t, os.WriteFile(log, []byte(
		"/streams/v1/index.json 200 900\n/noble/amd64/squashfs 200 1000\n"+
			"/noble/amd64/boot-kernel 200 300\n/streams/v1/index.json 304 0\n/noble/arm64/squashfs 206 50\n"), 0o644))
	items := func(uri string) bool { return !strings.HasPrefix(uri, "/streams/") }
	total, lines, err := servedBytes(log, 0, items)
	require.NoError(t, err)
	assert.Equal(t, int64(1350), total)
	assert.Equal(t, 5, lines)
	total, _, err = servedBytes(log, 2, items)
	require.NoError(t, err)
	assert.Equal(t, int64(350), total, "lines before skip are not counted")
}

func TestFindBySize(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "uploads", "a"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "uploads", "a", "root-tgz"), make([]byte, 10), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "index.json"), make([]byte, 3), 0o644))
	rel, err := findBySize(dir, 10)
	require.NoError(t, err)
	assert.Equal(t, "uploads/a/root-tgz", rel)
	rel, err = findBySize(dir, 11)
	require.NoError(t, err)
	assert.Empty(t, rel)
}

// BenchmarkPublish is the publish rows in process, repeatable for a
// profile: 5,000 local versions, then one new version per iteration.
func BenchmarkPublish(b *testing.B) {
	fx, err := newPublishFixture(b.TempDir(), 5000)
	require.NoError(b, err)
	defer fx.close()
	require.NoError(b, fx.svc.Republish()) // the full publish, into an empty tree
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			require.NoError(b, fx.svc.Republish())
		}
	})
	i := 5000 // -count runs the sub-benchmarks again on the same records
	b.Run("one-new-version", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			img, err := localVersion(fx.blobs, i)
			require.NoError(b, err)
			require.NoError(b, fx.st.CreateImages([]*store.Image{img}))
			i++
			b.StartTimer()
			require.NoError(b, fx.svc.Republish())
		}
	})
}
