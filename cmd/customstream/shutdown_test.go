package main

// Graceful shutdown of the real binary: SIGTERM during a long mirror job
// stops the process cleanly (exit 0, database closed, every log line in
// the configured JSON format), leaves the download resumable, and the job
// completes after a restart.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/metrics/metricstest"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/upstream/upstreamtest"
)

// stopBound bounds the wait for a process to exit after SIGTERM: a guard
// against hanging, not a speed requirement.
const stopBound = 60 * time.Second

// TestSIGTERMDuringMirrorThenResume: `customstream all` (embedded Redis) is
// stopped in the middle of a download; after a restart the requeue loop
// enqueues the job again and it resumes where the download stopped.
func TestSIGTERMDuringMirrorThenResume(t *testing.T) {
	integration(t)
	t.Parallel()
	dataDir := t.TempDir()
	up, index, squashfs := throttledUpstream(t)

	srv := startJSONServer(t, "all", dataDir, "")
	jobID := startMirror(t, srv.Base(), index, squashfs)
	have := waitPart(t, srv.proc, dataDir, squashfs)

	stopAndCheck(t, srv.proc, "Web server stopped", "Worker stopped", "Database closed")
	checkDatabase(t, dataDir, jobID)
	part := partPath(dataDir, squashfs)
	require.FileExists(t, part, "the partial download is kept to resume")
	have = fileSize(part)
	require.Less(t, have, squashfs.Size, "the download was complete before SIGTERM: throttle more")

	up.Throttle(0)
	stoppedAt := len(up.Requests())
	srv = startJSONServer(t, "all", dataDir, "")
	job := waitJob(t, newClient(t), srv.Base(), testToken, jobID, mirrorJobTimeout)
	require.Equal(t, "succeeded", job.State, "job error: %s", job.Error)
	assert.Contains(t, squashfsRanges(up.Requests()[stoppedAt:], squashfs), fmt.Sprintf("bytes=%d-", have),
		"after the restart the squashfs is resumed from the %d bytes staged", have)
	assert.NoFileExists(t, part)

	x := scrape(t, srv.Base())
	assert.Equal(t, 1.0, x.Samples[`customstream_jobs{type="image:mirror",state="succeeded"}`])
	assert.GreaterOrEqual(t, x.Samples["customstream_mirror_downloaded_bytes_total"], float64(squashfs.Size-have),
		"the bytes downloaded after the restart are counted")
	stopAndCheck(t, srv.proc, "Web server stopped", "Worker stopped", "Database closed")
}

// TestSIGTERMWorkerTaskRetried: a separate worker (real redis-server) is
// stopped mid-download; the web process keeps running, the task goes back
// to asynq without counting as a failed attempt, and a new worker
// finishes it.
func TestSIGTERMWorkerTaskRetried(t *testing.T) {
	integration(t)
	t.Parallel()
	rds := startRedis(t)
	dataDir := t.TempDir()
	up, index, squashfs := throttledUpstream(t)

	web := startJSONServer(t, "web", dataDir, rds.URL())
	worker := startJSONServer(t, "worker", dataDir, rds.URL())
	jobID := startMirror(t, web.Base(), index, squashfs)
	waitPart(t, worker.proc, dataDir, squashfs)

	stopAndCheck(t, worker.proc, "Worker stopped")
	have := fileSize(partPath(dataDir, squashfs))
	require.Positive(t, have, "the partial download is kept to resume")
	var job apiJob
	getJSON(t, newClient(t), web.Base()+"/api/jobs/"+jobID, testToken, &job)
	assert.Contains(t, []string{"queued", "running"}, job.State, "a stopped worker fails no job: %s", job.Error)

	up.Throttle(0)
	stoppedAt := len(up.Requests())
	worker = startJSONServer(t, "worker", dataDir, rds.URL())
	job = waitJob(t, newClient(t), web.Base(), testToken, jobID, mirrorJobTimeout)
	require.Equal(t, "succeeded", job.State, "job error: %s", job.Error)
	assert.Contains(t, squashfsRanges(up.Requests()[stoppedAt:], squashfs), fmt.Sprintf("bytes=%d-", have))

	stopAndCheck(t, worker.proc, "Worker stopped")
	stopAndCheck(t, web.proc, "Web server stopped", "Database closed")
	checkDatabase(t, dataDir, "")
}

// throttledUpstream serves one Ubuntu release with an 8 MiB squashfs at
// 2 MiB/s, and returns its unsigned index URL and the squashfs.
func throttledUpstream(t *testing.T) (*upstreamtest.Server, string, simplestreams.Item) {
	t.Helper()
	tree, err := upstreamtest.Generate(t.TempDir(), upstreamtest.Options{
		Releases: []upstreamtest.Release{{Name: "focal", Version: "20.04", Codename: "Focal Fossa"}},
		Arches:   []string{"amd64"}, Versions: []string{"20250801"}, ItemSize: 8 << 20, Seed: 23,
	})
	require.NoError(t, err)
	up := upstreamtest.NewServer(t, tree.Dir)
	up.Throttle(2 << 20)
	var squashfs simplestreams.Item
	for _, doc := range tree.Products {
		for _, p := range doc.Products {
			for _, v := range p.Versions {
				if it, ok := v.Items["squashfs"]; ok && p.Fields["subarch"] == "ga-20.04" {
					squashfs = it
				}
			}
		}
	}
	require.NotZero(t, squashfs.Size, "the tree has no ga-20.04 squashfs")
	return up, up.URL + "/" + upstreamtest.IndexPath, squashfs
}

// startJSONServer starts `customstream cmd` logging JSON.
func startJSONServer(t *testing.T, cmd, dataDir, redisURL string) *server {
	t.Helper()
	return startMirrorServer(t, cmd, dataDir, redisURL, "CUSTOMSTREAM_LOG_FORMAT=json")
}

// startMirror loads the upstream and mirrors the product of the squashfs.
func startMirror(t *testing.T, base, index string, squashfs simplestreams.Item) string {
	t.Helper()
	client := newClient(t)
	var fetched struct {
		Products []struct {
			ProductID string `json:"product_id"`
			Subarch   string `json:"subarch"`
		} `json:"products"`
	}
	postAPI(t, client, base+"/api/upstream/fetch", map[string]any{"url": index}, http.StatusOK, &fetched)
	var product string
	for _, p := range fetched.Products {
		if p.Subarch == "ga-20.04" {
			product = p.ProductID
		}
	}
	require.NotEmpty(t, product, "no ga-20.04 product in %+v", fetched.Products)
	var mirrored struct {
		Jobs []struct {
			ID string `json:"id"`
		} `json:"jobs"`
	}
	postAPI(t, client, base+"/api/images/mirror", map[string]any{"url": index, "product_ids": []string{product}, "bootloaders": false},
		http.StatusAccepted, &mirrored)
	require.Len(t, mirrored.Jobs, 1)
	return mirrored.Jobs[0].ID
}

// postAPI POSTs body with the API token, wants the status want and decodes the answer into out.
func postAPI(t *testing.T, client *http.Client, url string, body any, want int, out any) {
	t.Helper()
	status, answer := postJSON(t, client, url, body)
	require.Equal(t, want, status, "POST %s: %s", url, answer)
	require.NoError(t, json.Unmarshal(answer, out), "%s", answer)
}

func partPath(dataDir string, f simplestreams.Item) string {
	return filepath.Join(dataDir, "staging", "mirror", f.SHA256+".part")
}

// waitPart waits until 1 MiB of the squashfs is staged: well into the file,
// far from its end.
func waitPart(t *testing.T, p *proc, dataDir string, f simplestreams.Item) int64 {
	t.Helper()
	part := partPath(dataDir, f)
	deadline := time.Now().Add(30 * time.Second)
	for fileSize(part) < 1<<20 {
		require.False(t, p.exited(), "%s exited", p.name)
		require.True(t, time.Now().Before(deadline), "%s did not reach 1 MiB within 30 s", part)
		time.Sleep(20 * time.Millisecond)
	}
	return fileSize(part)
}

// stopAndCheck sends SIGTERM and checks the process exits 0 within
// stopBound, that every line it logged is JSON with no error, and that it
// logged each of wantLogged and then that it stopped.
func stopAndCheck(t *testing.T, p *proc, wantLogged ...string) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(stopBound):
		t.Fatalf("%s still runs %s after SIGTERM", p.name, stopBound)
	}
	assert.Equal(t, 0, p.cmd.ProcessState.ExitCode(), "%s exit code", p.name)

	f, ok := p.cmd.Stdout.(*os.File)
	require.True(t, ok)
	data, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	var msgs []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if !assert.NoError(t, json.Unmarshal(sc.Bytes(), &line), "%s logged a line that is not JSON: %q", p.name, sc.Text()) {
			continue
		}
		assert.NotEqual(t, "ERROR", line.Level, "%s logged an error: %s", p.name, sc.Text())
		msgs = append(msgs, line.Msg)
	}
	for _, want := range append(wantLogged, "customstream stopped") {
		assert.Contains(t, msgs, want, "%s did not log %q", p.name, want)
	}
	if len(msgs) > 0 {
		assert.Equal(t, "customstream stopped", msgs[len(msgs)-1], "%s logged after it stopped", p.name)
	}
}

// checkDatabase opens the database as the next start would: it was closed
// (the lock released) and the job, when given, is not finished.
func checkDatabase(t *testing.T, dataDir, jobID string) {
	t.Helper()
	st, err := store.Open(filepath.Join(dataDir, "customstream.db"), time.Second)
	require.NoError(t, err, "the database was left locked or damaged")
	defer st.Close()
	if jobID != "" {
		job, err := st.GetJob(jobID)
		require.NoError(t, err)
		assert.False(t, job.Finished(), "SIGTERM finished job %s as %s: %s", jobID, job.State, job.Error)
	}
}

func squashfsRanges(reqs []upstreamtest.Request, f simplestreams.Item) []string {
	var out []string
	for _, r := range reqs {
		if r.Method == http.MethodGet && strings.TrimPrefix(r.Path, "/") == strings.TrimPrefix(f.Path, "/") {
			out = append(out, r.Range)
		}
	}
	return out
}

// scrape reads /metrics as Prometheus would.
func scrape(t *testing.T, base string) *metricstest.Exposition {
	t.Helper()
	resp, err := newClient(t).Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	x, err := metricstest.Parse(resp.Body)
	require.NoError(t, err)
	return x
}
