package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestScrubRedownloadsADamagedMirror corrupts a mirrored file on disk, asks
// for a scrub through the API with web and worker as two processes on a real
// redis-server, and watches the version leave the stream, come back from the
// upstream and serve the right bytes again.
func TestScrubRedownloadsADamagedMirror(t *testing.T) {
	integration(t)
	t.Parallel()
	client := newClient(t)
	key, keyring := newUpstreamKey(t)
	tree, up, product := focalUpstream(t, key, 256<<10, 11)
	root := up.URL + "/"

	rds := startRedis(t)
	dataDir := t.TempDir()
	env := []string{"CUSTOMSTREAM_UPSTREAM_KEYRING=" + keyring}
	web := startMirrorServer(t, "web", dataDir, rds.URL(), env...)
	startMirrorServer(t, "worker", dataDir, rds.URL(), env...)
	base := web.Base()

	fetchUpstream(t, client, base, map[string]any{"url": root})
	answer := mirrorUpstream(t, client, base, map[string]any{"url": root, "product_ids": []string{product}, "bootloaders": false})
	waitMirrorJobs(t, client, base, answer)
	version := latestName(t, tree, product)
	waitVersions(t, client, base, []string{product}, []string{version})

	// A bit flips in the squashfs on disk.
	want := latestVersionOf(t, tree, product).Items["squashfs"]
	blob := filepath.Join(dataDir, "blobs", "sha256", want.SHA256[:2], want.SHA256)
	require.NoError(t, os.Chmod(blob, 0o644))
	f, err := os.OpenFile(blob, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{0xff, 0x00, 0xff}, want.Size/2)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	// The download is slowed down, so the stream can be seen without it.
	up.ResetRequests()
	up.Throttle(128 << 10)

	status, body := postJSON(t, client, base+"/api/scrub", nil)
	require.Equal(t, http.StatusAccepted, status, "%s", body)
	var scrub struct {
		Job     apiJob `json:"job"`
		Started bool   `json:"started"`
	}
	require.NoError(t, json.Unmarshal(body, &scrub))
	require.True(t, scrub.Started)
	status, body = postJSON(t, client, base+"/api/scrub", nil)
	require.Equal(t, http.StatusOK, status, "a second press while the first waits or runs: %s", body)

	job := waitJob(t, client, base, testToken, scrub.Job.ID, mirrorJobTimeout)
	assert.Equal(t, "failed", job.State, "damage found shows as a failed scrub")
	assert.Regexp(t, regexp.MustCompile(`^4 files, .+ checked, 1 damaged$`), job.Result)
	assert.Contains(t, job.Error, product+" "+version+" (sha256 mismatch on squashfs; downloading it again)")
	assert.Equal(t, job.Progress.Total, job.Progress.Done)

	// Out of the stream at once, on its way back.
	_, listed := streamProducts(t, client, base)[product]
	assert.False(t, listed, "the damaged version left the stream")
	imgs := listImages(t, client, base, testToken)
	require.Len(t, imgs, 1)
	assert.Equal(t, "downloading", imgs[0].Status)
	assert.Contains(t, imgs[0].Error, "damaged: sha256 mismatch on squashfs")

	ours := waitVersions(t, client, base, []string{product}, []string{version})
	got := ours[product].Versions[version].Items["squashfs"]
	assert.Equal(t, want.SHA256, got.SHA256)
	served := download(t, client, base+"/"+got.Path)
	upstream, err := os.ReadFile(filepath.Join(tree.Dir, want.Path))
	require.NoError(t, err)
	assert.Equal(t, upstream, served, "the stream serves the upstream's bytes again")
	assert.Equal(t, map[string]int{want.Path: 1}, itemGets(up.Requests()), "only the damaged file was downloaded again")
	imgs = listImages(t, client, base, testToken)
	require.Len(t, imgs, 1)
	assert.Equal(t, "ready", imgs[0].Status)
	assert.Empty(t, imgs[0].Error)
}
