package blobs

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzStagedPath checks that a name StagedPath accepts resolves to a file
// strictly inside the staging directory, whatever a job payload carries.
func FuzzStagedPath(f *testing.F) {
	for _, s := range []string{
		"uploads/abc/rootfs",
		"mirror/x.part",
		"a/../b",
		"a/../../b",
		"..",
		"../x",
		"./x",
		".",
		"",
		"/etc/passwd",
		"a/b/../../..",
		"..\\x",
		"a\x00b",
		"a//b/",
		"...",
		"..x/y",
	} {
		f.Add(s)
	}
	s, err := Open(f.TempDir())
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, rel string) {
		p, err := s.StagedPath(rel)
		if err != nil {
			require.Empty(t, p)
			return
		}
		require.True(t, filepath.IsAbs(p) == filepath.IsAbs(s.stagingDir), "%q from %q", p, rel)
		require.NotEqual(t, filepath.Clean(s.stagingDir), filepath.Clean(p), "%q resolves to the staging directory", rel)
		r, err := filepath.Rel(s.stagingDir, p)
		require.NoError(t, err, "%q from %q", p, rel)
		require.NotEqual(t, ".", r, "%q resolves to the staging directory", rel)
		require.NotEqual(t, "..", r, "%q leaves the staging directory", rel)
		require.False(t, strings.HasPrefix(r, ".."+string(filepath.Separator)), "%q resolves to %q, outside the staging directory", rel, p)
		require.False(t, filepath.IsAbs(r), "%q resolves to %q", rel, p)
		require.NotContains(t, p, "\x00")
		// What StagedPath accepts, StagedRel must map back to the same file.
		back, err := s.StagedRel(p)
		require.NoError(t, err, "StagedRel(%q)", p)
		again, err := s.StagedPath(back)
		require.NoError(t, err, "StagedPath(%q)", back)
		require.Equal(t, p, again)
	})
}
