package auth

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAPIToken(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	configured, err := APIToken(dir, "configured-token-123456", log)
	require.NoError(t, err)
	assert.Equal(t, "configured-token-123456", configured)
	assert.NoFileExists(t, filepath.Join(dir, "api-token"))

	first, err := APIToken(dir, "", log)
	require.NoError(t, err)
	assert.Len(t, first, 48)
	info, err := os.Stat(filepath.Join(dir, "api-token"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "only the owner reads the token")

	again, err := APIToken(dir, "", log)
	require.NoError(t, err)
	assert.Equal(t, first, again, "the stored token stays")
	other, err := APIToken(t.TempDir(), "", log)
	require.NoError(t, err)
	assert.NotEqual(t, first, other)
}
