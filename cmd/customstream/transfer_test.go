package main

// Tests of `customstream export` and `customstream import`: usage, the
// refusal under a running server, and the real binary carrying a stream
// from one server (running) to another data directory, served afterwards.

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/upstream/upstreamtest"
)

func TestTransferCommandsUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"export without a file", []string{"export"}, 2, "customstream export FILE.tar"},
		{"export with two files", []string{"export", "a.tar", "b.tar"}, 2, "customstream export FILE.tar"},
		{"import without a file", []string{"import"}, 2, "customstream import [--keyring FILE] FILE.tar"},
		{"import with an unknown flag", []string{"import", "--nope", "a.tar"}, 2, "customstream import"},
		{"import with a missing keyring", []string{"import", "--keyring", "/nonexistent/keyring.gpg", "a.tar"}, 2, "keyring /nonexistent/keyring.gpg"},
		{"import of a missing archive", []string{"import", "/nonexistent/a.tar"}, 1, "/nonexistent/a.tar"},
		{"export of a data directory without a key", []string{"export", "-"}, 1, "no signing key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CUSTOMSTREAM_DATA_DIR", t.TempDir())
			code, _, errOut := runOut(t, tt.args...)
			assert.Equal(t, tt.code, code, errOut)
			assert.Contains(t, errOut, tt.want)
		})
	}
}

func TestImportRefusedWhileTheDatabaseIsHeld(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CUSTOMSTREAM_DATA_DIR", dir)
	st, err := store.Open(filepath.Join(dir, "customstream.db"), time.Second)
	require.NoError(t, err)
	defer st.Close()
	archive := filepath.Join(t.TempDir(), "a.tar")
	require.NoError(t, os.WriteFile(archive, []byte("anything"), 0o644))
	code, _, errOut := runOut(t, "import", archive)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "the server is running on this data directory: stop it, import, start it again")
	assert.NoDirExists(t, filepath.Join(dir, "staging"), "nothing was touched")
}

// cli runs the binary with the data directory dataDir and stdin, and
// returns its exit code and output.
func cli(t *testing.T, dataDir string, stdin io.Reader, stdout io.Writer, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CUSTOMSTREAM_DATA_DIR=" + dataDir}
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errOut
	if stdout != nil {
		cmd.Stdout = stdout
	}
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return code, out.String(), errOut.String()
}

// TestTransferBetweenServers exports from a running server with uploaded
// and mirrored images, imports into a new data directory, and serves it.
func TestTransferBetweenServers(t *testing.T) {
	integration(t)
	t.Parallel()
	client := newClient(t)

	key, upstreamKeyring := newUpstreamKey(t)
	opts := upstreamtest.DefaultOptions()
	opts.ItemSize = 128 << 10
	tree, up := signedUpstream(t, key, opts)
	root := up.URL + "/"

	source := t.TempDir()
	srvA := startMirrorServer(t, "all", source, "", "CUSTOMSTREAM_UPSTREAM_KEYRING="+upstreamKeyring)
	ga := findTreeProduct(t, tree, map[string]string{"os": "ubuntu", "release": "jammy", "arch": "amd64", "subarch": "ga-22.04"})
	hwe := findTreeProduct(t, tree, map[string]string{"os": "ubuntu", "release": "jammy", "arch": "amd64", "subarch": "hwe-22.04"})
	fetchUpstream(t, client, srvA.Base(), map[string]any{"url": root})
	waitMirrorJobs(t, client, srvA.Base(), mirrorUpstream(t, client, srvA.Base(), map[string]any{"url": root, "product_ids": []string{ga, hwe}}))
	var productIDs []string
	for seed, img := range []*testImage{bootImage(1, 96<<10), singleImage(5, 64<<10)} {
		img.upload(t, client, srvA.Base(), testToken)
		job := waitJob(t, client, srvA.Base(), testToken, img.jobID, jobTimeout)
		require.Equal(t, "succeeded", job.State, "upload %d: %s", seed, job.Error)
		productIDs = append(productIDs, img.productID)
	}
	waitPublished(t, client, srvA.Base(), append(productIDs, ga, hwe)...)
	sourceImages := listImages(t, client, srvA.Base(), testToken)
	keyringA := filepath.Join(t.TempDir(), "source-keyring.gpg")
	require.NoError(t, os.WriteFile(keyringA, download(t, client, srvA.Base()+"/keyring.gpg"), 0o644))
	fpA := fingerprintOfKeyring(t, keyringA)

	// Export while the source server runs.
	archive := filepath.Join(t.TempDir(), "stream.tar")
	code, out, errOut := cli(t, source, nil, nil, "export", archive)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "signed by "+fpA)
	assert.Contains(t, out, "Exported "+strconv.Itoa(len(sourceImages))+" versions")
	assert.Contains(t, errOut, "export: 100% (", "plain progress lines when stderr is not a terminal")
	assert.NotContains(t, errOut, "\r")
	assert.NoFileExists(t, archive+".part")

	// Import is refused while a server holds the data directory.
	code, _, errOut = cli(t, source, nil, nil, "import", archive)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "the server is running on this data directory")

	target := filepath.Join(t.TempDir(), "new") // created by the import
	code, out, errOut = cli(t, target, nil, nil, "import", "--keyring", keyringA, archive)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "Signed by "+fpA+" (verified with the keyring you gave)")
	assert.Contains(t, out, "Imported "+strconv.Itoa(len(sourceImages))+" new versions (0 already here): ")
	assert.Contains(t, errOut, "import: 100% (")

	// Again, through standard output and input: nothing new.
	var piped bytes.Buffer
	code, _, errOut = cli(t, source, nil, &piped, "export", "-")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "Exported ", "the summary goes to stderr when the archive is stdout")
	code, out, errOut = cli(t, target, &piped, nil, "import", "-")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "Imported 0 new versions ("+strconv.Itoa(len(sourceImages))+" already here): ")

	srvB := startServer(t, "all", target, testToken, "")
	assert.Equal(t, streamProducts(t, client, srvA.Base()), streamProducts(t, client, srvB.Base()),
		"the imported stream has the source's products, fields, versions and items")
	imported := listImages(t, client, srvB.Base(), testToken)
	require.Len(t, imported, len(sourceImages))
	var origins struct {
		Images []struct {
			Origin string `json:"origin"`
			Status string `json:"status"`
		} `json:"images"`
	}
	getJSON(t, client, srvB.Base()+"/api/images/list", testToken, &origins)
	for _, img := range origins.Images {
		assert.Equal(t, "import:"+fpA, img.Origin)
		assert.Equal(t, "ready", img.Status)
	}

	// The target's stream verifies with its own key, every file downloaded.
	keyringB := filepath.Join(t.TempDir(), "target-keyring.gpg")
	require.NoError(t, os.WriteFile(keyringB, download(t, client, srvB.Base()+"/keyring.gpg"), 0o644))
	assert.NotEqual(t, fpA, fingerprintOfKeyring(t, keyringB), "the target signs with its own key")
	code, out, errOut = cli(t, target, nil, nil, "check", srvB.Base()+"/", "--keyring", keyringB, "--download")
	require.Equal(t, 0, code, "%s\n%s", out, errOut)
	assert.True(t, strings.HasSuffix(strings.TrimSpace(out), "OK"), out)
	assert.Contains(t, errOut, "check --download: 100% (")
}

func fingerprintOfKeyring(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	keys, err := simplestreams.ReadKeyring(data)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	return fingerprintOf(keys[0])
}
