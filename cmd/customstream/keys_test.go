package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/signing"
	"github.com/customstream/customstream/internal/store"
)

func runOut(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestKeysCommand(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CUSTOMSTREAM_DATA_DIR", dir)

	code, out, _ := runOut(t, "keys", "show")
	require.Equal(t, 0, code)
	first := strings.TrimSpace(strings.TrimPrefix(out, "Signing key fingerprint:"))
	assert.Len(t, first, 40)

	code, out, errOut := runOut(t, "keys", "rotate")
	require.Equal(t, 0, code, errOut)
	assert.NotContains(t, out, first)
	assert.FileExists(t, filepath.Join(dir, "keys", "signing-key."+first+".old.asc"))

	// Import the old key back.
	code, out, errOut = runOut(t, "keys", "import", filepath.Join(dir, "keys", "signing-key."+first+".old.asc"))
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, first)

	code, _, errOut = runOut(t, "keys", "import", filepath.Join(dir, "missing.asc"))
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "missing.asc")
	code, _, _ = runOut(t, "keys")
	assert.Equal(t, 2, code)
	code, _, _ = runOut(t, "keys", "import")
	assert.Equal(t, 2, code)

	// Not under a running server.
	st, err := store.Open(filepath.Join(dir, "customstream.db"), time.Second)
	require.NoError(t, err)
	defer st.Close()
	code, _, errOut = runOut(t, "keys", "rotate")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "the server is running")
	data, err := os.ReadFile(filepath.Join(dir, signing.KeyFile))
	require.NoError(t, err)
	assert.NotEmpty(t, data, "the key is untouched")
}
