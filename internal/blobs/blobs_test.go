package blobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func stage(t *testing.T, s *Store, name string, data []byte) string {
	t.Helper()
	dir, err := s.StagingDir("test")
	require.NoError(t, err)
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, data, 0o644))
	return p
}

func sumOf(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

func TestHashCommitAndHas(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	data := []byte("kernel bytes")
	p := stage(t, s, "k", data)

	var last int64
	sum, size, err := HashFile(p, func(done int64) { last = done })
	require.NoError(t, err)
	assert.Equal(t, sumOf(data), sum)
	assert.Equal(t, int64(len(data)), size)
	assert.Equal(t, size, last)

	_, ok := s.Has(sum)
	assert.False(t, ok)
	require.NoError(t, s.Commit(p, sum))
	got, ok := s.Has(sum)
	require.True(t, ok)
	assert.Equal(t, size, got)
	content, err := os.ReadFile(s.Path(sum))
	require.NoError(t, err)
	assert.Equal(t, data, content)

	// Committing the same content again (a retried job) is fine.
	p2 := stage(t, s, "k2", data)
	require.NoError(t, s.Commit(p2, sum))
}

func TestCommitRejectsBadSum(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	p := stage(t, s, "x", []byte("x"))
	for _, bad := range []string{"", "../../etc", "ABCDEF", sumOf([]byte("x"))[:63] + "G"} {
		assert.Error(t, s.Commit(p, bad), bad)
	}
}

func TestGCKeepsUsed(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	a, b := []byte("aaa"), []byte("bbbb")
	require.NoError(t, s.Commit(stage(t, s, "a", a), sumOf(a)))
	require.NoError(t, s.Commit(stage(t, s, "b", b), sumOf(b)))

	freed, err := s.GC(map[string]bool{sumOf(a): true})
	require.NoError(t, err)
	assert.Equal(t, int64(len(b)), freed)
	_, okA := s.Has(sumOf(a))
	_, okB := s.Has(sumOf(b))
	assert.True(t, okA)
	assert.False(t, okB)
}

func TestCleanStaging(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	keep := stage(t, s, "keep", []byte("1"))
	drop := stage(t, s, "drop", []byte("2"))
	n, err := s.CleanStaging("test", func(rel string) bool { return rel == "test/keep" })
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.FileExists(t, keep)
	assert.NoFileExists(t, drop)
}

func TestStagedNames(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	require.NoError(t, err)
	rel, err := s.StagedRel(filepath.Join(dir, "staging", "uploads", "x"))
	require.NoError(t, err)
	assert.Equal(t, "uploads/x", rel)
	p, err := s.StagedPath(rel)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "staging", "uploads", "x"), p)

	for _, bad := range []string{filepath.Join(dir, "staging"), filepath.Join(dir, "customstream.db"), "/etc/passwd"} {
		_, err := s.StagedRel(bad)
		assert.Error(t, err, bad)
	}
	for _, bad := range []string{"", ".", "..", "../customstream.db", "uploads/../../x", "/etc/passwd", "a\x00b"} {
		_, err := s.StagedPath(bad)
		assert.Error(t, err, bad)
	}
}

func TestHashFileContextStopsWhenCanceled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	require.NoError(t, os.WriteFile(path, make([]byte, 3*hashBufSize), 0o644))
	ctx, cancel := context.WithCancel(context.Background())
	var calls int
	_, _, err := HashFileContext(ctx, path, func(done int64) {
		calls++
		cancel() // a shutdown during the first buffer
	})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1, calls, "hashing stopped at the next buffer")
	_, size, err := HashFileContext(context.Background(), path, nil)
	require.NoError(t, err)
	assert.EqualValues(t, 3*hashBufSize, size, "the file is left whole")
}

func TestRemoveDamaged(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	data := []byte("blob bytes")
	sum := sumOf(data)
	commit := func() FileID {
		t.Helper()
		require.NoError(t, s.Commit(stage(t, s, "x", data), sum))
		fi, err := os.Stat(s.Path(sum))
		require.NoError(t, err)
		return IDOf(fi)
	}
	judged := commit()
	require.NotZero(t, judged.Inode)

	tests := []struct {
		name    string
		prepare func() FileID
		gone    bool
		present bool
	}{
		{"the file the scrub read", func() FileID { return judged }, true, false},
		{"missing, still missing", func() FileID { return FileID{} }, true, false},
		{"missing, then a fresh copy committed", func() FileID { commit(); return FileID{} }, false, true},
		{"damaged, then a fresh copy committed", func() FileID {
			old := IDOf(mustStat(t, s.Path(sum)))
			require.NoError(t, os.Remove(s.Path(sum)))
			commit()
			return old
		}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.prepare()
			gone, err := s.RemoveDamaged(sum, id)
			require.NoError(t, err)
			assert.Equal(t, tt.gone, gone)
			_, present := s.Has(sum)
			assert.Equal(t, tt.present, present)
		})
	}
	_, err = s.RemoveDamaged("../x", FileID{})
	assert.Error(t, err)
}

func mustStat(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi
}

// HashReader reads ahead while it hashes: every size around the buffers'
// edges gives the sum and length of the whole, and progress ends there.
func TestHashReaderSizes(t *testing.T) {
	for _, size := range []int{0, 1, hashBufSize - 1, hashBufSize, hashBufSize + 1, hashBuffers * hashBufSize, 7*hashBufSize + 12345} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i * 7)
			}
			var last int64
			sum, n, err := HashReader(context.Background(), bytes.NewReader(data), func(done int64) {
				assert.Greater(t, done, last)
				last = done
			})
			require.NoError(t, err)
			assert.Equal(t, sumOf(data), sum)
			assert.EqualValues(t, size, n)
			assert.EqualValues(t, size, last)
		})
	}
	_, _, err := HashReader(context.Background(), iotest.TimeoutReader(bytes.NewReader(make([]byte, 3*hashBufSize))), nil)
	assert.ErrorIs(t, err, iotest.ErrTimeout, "a read error ends the hash")
}
