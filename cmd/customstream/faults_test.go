//go:build faults

package main

// Fault tests (make test-faults): the web process killed in the middle of a
// publish, `customstream all` killed with jobs queued and running, a data
// directory on a nearly full filesystem, and load while an upload and a
// mirror run. A stream checker reads the stream during each of them.

import (
	"bufio"
	"bytes"
	"context"
	encbinary "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/check"
	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/jobs"
)

// TestFaultKillDuringPublish kills the web process (SIGKILL) at the moment
// the nth temporary file of a publish appears in streams/v1, for n = 1..6
// (the product file, its signed copy, products.json and its copy, the index
// and the signed index), on uploads and deletes. The tree left on disk and
// the stream served after a restart must hold the versions of before or of
// after the change, never a mix, and nothing may be left in staging.
func TestFaultKillDuringPublish(t *testing.T) {
	integration(t)
	t.Parallel()
	client := newClient(t)
	dataDir := t.TempDir()
	srv := startServer(t, "all", dataDir, testToken, "")
	base := srv.Base()
	keyring, err := simplestreams.ReadKeyring(download(t, client, base+"/keyring.gpg"))
	require.NoError(t, err)
	streamsDir := filepath.Join(dataDir, "publish", filepath.FromSlash(publish.StreamsDir))
	onDisk := func(rel string) ([]byte, error) {
		return os.ReadFile(filepath.Join(dataDir, "publish", filepath.FromSlash(rel)))
	}

	// Something to change: two versions of a boot image and a CentOS image.
	for i, img := range []*testImage{bootImage(400, 32<<10), bootImage(410, 32<<10), singleImage(420, 32<<10)} {
		img.upload(t, client, base, testToken)
		job := waitJob(t, client, base, testToken, img.jobID, jobTimeout)
		require.Equal(t, "succeeded", job.State, "seed image %d: %s", i, job.Error)
		waitPublished(t, client, base, img.productID)
	}
	checker := startStreamChecker(t, base)

	// Each change returns the version it adds ("+ID VERSION") or removes ("-…").
	upload := func(t *testing.T, img *testImage) string {
		img.upload(t, client, base, testToken)
		return "+" + img.productID + " " + img.versionName
	}
	changes := []struct {
		name string
		do   func(t *testing.T, n int) string
	}{
		{"upload a new version", func(t *testing.T, n int) string { return upload(t, bootImage(int64(500+10*n), 32<<10)) }},
		{"upload a new product", func(t *testing.T, n int) string {
			return upload(t, newTestImage([][2]string{{"os", "centos"}, {"release", fmt.Sprintf("centos%d", 80+n)}, {"arch", "amd64"},
				{"version", fmt.Sprintf("%d.0", 8+n)}, {"rootfs_type", "root-tgz"}}, map[string][]byte{"rootfs": randomBytes(int64(600+n), 40<<10)}))
		}},
		{"delete a version", func(t *testing.T, _ int) string {
			// A version whose product keeps another, so every document is rewritten.
			perProduct := map[string]int{}
			list := listImages(t, client, base, testToken)
			for _, img := range list {
				perProduct[img.ProductID]++
			}
			i := slices.IndexFunc(list, func(img apiImage) bool { return perProduct[img.ProductID] > 1 })
			require.GreaterOrEqual(t, i, 0, "no product has two versions")
			victim := list[i]
			// The DELETE is answered only after its publish, which the kill interrupts.
			go func() {
				req, err := http.NewRequest(http.MethodDelete, base+"/api/images/"+victim.ID, nil)
				if err != nil {
					return
				}
				req.Header.Set("Authorization", "Bearer "+testToken)
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
			return "-" + victim.ProductID + " " + victim.VersionName
		}},
	}

	beforeIndexChanged, invalidOnDisk := 0, 0
	for n := 1; n <= 6; n++ {
		change := changes[(n-1)%len(changes)]
		t.Logf("kill %d: %s, at the temporary file number %d of its publish", n, change.name, n)
		before := servedVersions(t, client, base, keyring)
		indexBefore, err := onDisk(publish.IndexPath)
		require.NoError(t, err)

		watch := killOnTmpFile(t, streamsDir, n, srv.proc.cmd.Process.Pid)
		delta := change.do(t, n)
		var tmpName string
		select {
		case tmpName = <-watch.killed:
		case <-time.After(jobTimeout):
			t.Fatalf("kill %d: the publish of %q created fewer than %d temporary files in %s within %s", n, change.name, n, streamsDir, jobTimeout)
		}
		srv.proc.kill9(t)
		after := applyDelta(before, delta)

		// The tree as nginx or rsync would find it now.
		indexNow, err := onDisk(publish.IndexPath)
		require.NoError(t, err)
		indexChanged := !bytes.Equal(indexBefore, indexNow)
		if !indexChanged {
			beforeIndexChanged++
		}
		for _, idx := range []string{publish.IndexPath, publish.SignedIndexPath} {
			got, err := publishedVersions(onDisk, idx, keyring)
			require.NoError(t, err, "kill %d: the tree on disk", n)
			assert.True(t, slices.Equal(got, before) || slices.Equal(got, after),
				"kill %d: %s on disk names a mix of versions:\n got    %v\n before %v\n after  %v", n, idx, got, before, after)
		}
		// Product files carry their content's hash in their names, so the
		// index's rename is the switch: each index on disk, as nginx or
		// rsync would find it, names a whole stream.
		for _, idx := range []string{publish.IndexPath, publish.SignedIndexPath} {
			report, err := simplestreams.Validate(simplestreams.DirSource(filepath.Join(dataDir, "publish")), idx)
			require.NoError(t, err)
			for _, p := range report.Errors() {
				t.Logf("kill %d: %s on disk, before the restart: %s", n, idx, p)
			}
			if !report.OK() {
				invalidOnDisk++
			}
		}
		t.Logf("kill %d landed at %s; index.json changed before it: %v", n, tmpName, indexChanged)

		srv.start(t)
		served := servedVersions(t, client, base, keyring)
		assert.True(t, slices.Equal(served, before) || slices.Equal(served, after),
			"kill %d: the restarted server serves a mix of versions:\n got    %v\n before %v\n after  %v", n, served, before, after)
		assert.Equal(t, readyVersions(t, client, base), served, "kill %d: the stream serves exactly the ready versions", n)
		assertCheckPasses(t, client, base, keyring)
		assertStagingEmpty(t, dataDir)
		assertNoTmpFiles(t, filepath.Join(dataDir, "publish"))
	}
	checker.finish(t)
	t.Logf("%d of 6 kills landed before index.json changed", beforeIndexChanged)
	assert.Zero(t, invalidOnDisk, "a kill left an index on disk that names a broken stream")
	fmt.Printf("FAULT-NOTE publish kills: %d of 6 landed before index.json changed; %d indexes on disk named a broken stream\n",
		beforeIndexChanged, invalidOnDisk)
}

// TestFaultKillAllWithJobsQueued kills `customstream all` (embedded Redis:
// every queued task is lost with it) while a mirror job downloads and two
// hash jobs wait; started again on the same data directory, it enqueues the
// jobs again from its records, the mirror resumes with Range, and all complete.
func TestFaultKillAllWithJobsQueued(t *testing.T) {
	integration(t)
	t.Parallel()
	client := newClient(t)
	key, keyringPath := newUpstreamKey(t)
	big, up, product := focalUpstream(t, key, 8<<20, 13)
	root := up.URL + "/"
	up.Throttle(2 << 20)
	squashfs := latestVersionOf(t, big, product).Items["squashfs"]

	dataDir := t.TempDir()
	// One job at a time: the hash jobs wait behind the mirror job.
	srv := startServer(t, "all", dataDir, testToken, "", "CUSTOMSTREAM_UPSTREAM_KEYRING="+keyringPath,
		"CUSTOMSTREAM_WORKER_CONCURRENCY=1", "CUSTOMSTREAM_DOWNLOAD_PARALLEL=1")
	base := srv.Base()
	checker := startStreamChecker(t, base)

	answer := mirrorUpstream(t, client, base, map[string]any{"url": root, "product_ids": []string{product}})
	require.Len(t, answer.Jobs, 1)
	part := filepath.Join(dataDir, "staging", "mirror", squashfs.SHA256+".part")
	waitFileSize(t, part, 1<<20, srv)
	uploads := []*testImage{bootImage(700, 256<<10), singleImage(710, 256<<10)}
	for _, img := range uploads {
		img.upload(t, client, base, testToken)
	}
	jobIDs := []string{answer.Jobs[0].ID, uploads[0].jobID, uploads[1].jobID}
	states := map[string]int{}
	for _, id := range jobIDs {
		var job apiJob
		getJSON(t, client, base+"/api/jobs/"+id, testToken, &job)
		states[job.State]++
	}
	require.Zero(t, states["succeeded"]+states["failed"], "every job must still be unfinished at the kill: %v", states)
	srv.proc.kill9(t)
	have := fileSize(part)
	require.Less(t, have, squashfs.Size, "the squashfs was complete before the kill: throttle more")
	killedAt := len(up.Requests())
	up.Throttle(0)
	t.Logf("killed with jobs %v and %d of %d bytes of the squashfs staged", states, have, squashfs.Size)

	srv.start(t)
	for _, id := range jobIDs {
		job := waitJob(t, client, base, testToken, id, mirrorJobTimeout)
		require.Equal(t, "succeeded", job.State, "job %s: %s", id, job.Error)
	}
	waitPublished(t, client, base, product, uploads[0].productID, uploads[1].productID)
	checker.finish(t)

	var ranges []string
	for _, r := range up.Requests()[killedAt:] {
		if r.Method == http.MethodGet && r.Path == squashfs.Path {
			ranges = append(ranges, r.Range)
		}
	}
	assert.Equal(t, []string{fmt.Sprintf("bytes=%d-", have)}, ranges, "after the restart the squashfs is asked for from the bytes staged")
	assert.Equal(t, readyVersions(t, client, base), servedVersions(t, client, base, nil))
	verifyStream(t, client, base, big, root)
	assertStagingEmpty(t, dataDir)
}

// TestFaultDiskFull puts the data directory on a 64 MiB tmpfs: uploads and
// mirrors that do not fit must fail with a clear "not enough space", and
// leave the stream, staging and the blob store as they were.
func TestFaultDiskFull(t *testing.T) {
	integration(t)
	t.Parallel()
	dataDir := mountTmpfs(t, "64m")
	client := newClient(t)
	key, keyringPath := newUpstreamKey(t)
	tree, up, product := focalUpstream(t, key, 16<<20, 17)
	root := up.URL + "/"
	var need int64
	for _, it := range latestVersionOf(t, tree, product).Items {
		need += it.Size
	}

	rds := startRedis(t)
	env := []string{"CUSTOMSTREAM_UPSTREAM_KEYRING=" + keyringPath}
	web := startServer(t, "web", dataDir, testToken, rds.URL(), env...)
	startServer(t, "worker", dataDir, testToken, rds.URL(), env...)
	base := web.Base()
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: rds.addr})
	t.Cleanup(func() { insp.Close() })

	first := bootImage(800, 256<<10)
	first.upload(t, client, base, testToken)
	require.Equal(t, "succeeded", waitJob(t, client, base, testToken, first.jobID, jobTimeout).State)
	waitPublished(t, client, base, first.productID)
	fetchUpstream(t, client, base, map[string]any{"url": root})

	// unchanged fails t when the stream, staging or the blob store changed.
	docs, blobs, images := streamDocs(t, client, base), blobSums(t, dataDir), len(listImages(t, client, base, testToken))
	unchanged := func(t *testing.T, newImages int) {
		t.Helper()
		after := streamDocs(t, client, base)
		require.Equal(t, sortedKeys(docs), sortedKeys(after), "the stream documents changed")
		for p, data := range docs {
			assert.Equal(t, string(data), string(after[p]), "%s changed", p)
		}
		assertStagingEmpty(t, dataDir)
		assert.Equal(t, blobs, blobSums(t, dataDir), "the blob store changed")
		assert.Len(t, listImages(t, client, base, testToken), images+newImages, "images recorded")
	}

	for _, tc := range []struct {
		name    string
		chunked bool // no Content-Length: the server learns the size by running out
	}{{"upload larger than the free space", false}, {"chunked upload that fills the disk", true}} {
		t.Run(tc.name, func(t *testing.T) {
			checker := startStreamChecker(t, base)
			size := freeSpace(t, dataDir) + 8<<20
			status, msg := uploadPattern(t, base, size, tc.chunked)
			assert.Equal(t, http.StatusInsufficientStorage, status, "answer: %s", msg)
			assert.Contains(t, msg, "not enough space")
			checker.finish(t)
			unchanged(t, 0) // a refused upload is not recorded
		})
	}

	t.Run("mirror larger than the free space", func(t *testing.T) {
		checker := startStreamChecker(t, base)
		filler := fillDisk(t, dataDir, need/2)
		status, body := postJSON(t, client, base+"/api/images/mirror", map[string]any{"url": root, "product_ids": []string{product}})
		require.NoError(t, os.Remove(filler))
		assert.Equal(t, http.StatusInsufficientStorage, status, "answer: %s", body)
		assert.Contains(t, string(body), "not enough space")
		checker.finish(t)
		unchanged(t, 0)
	})

	t.Run("mirror that runs out of space while downloading", func(t *testing.T) {
		checker := startStreamChecker(t, base)
		require.Greater(t, freeSpace(t, dataDir), need, "the selection must pass the up-front check")
		up.Throttle(2 << 20)
		answer := mirrorUpstream(t, client, base, map[string]any{"url": root, "product_ids": []string{product}, "bootloaders": false})
		require.Len(t, answer.Jobs, 1)
		squashfs := latestVersionOf(t, tree, product).Items["squashfs"]
		waitFileSize(t, filepath.Join(dataDir, "staging", "mirror", squashfs.SHA256+".part"), 1<<20, web)
		filler := fillDisk(t, dataDir, 0)
		up.Throttle(0)
		// Every retry finds the disk still full; run them at once. Then the
		// web process cannot record the failure either (bbolt needs room):
		// free the space and hurry its result on.
		jobID := answer.Jobs[0].ID
		retries := exhaustRetries(t, insp, jobs.QueueMirror, jobID)
		require.NoError(t, os.Remove(filler))
		job, _ := waitJobRunningRetries(t, client, base, insp, jobID, jobs.QueueResults, "result:"+jobID, 60*time.Second)
		require.Equal(t, "failed", job.State)
		assert.Contains(t, job.Error, "not enough space", "the job's error tells why")
		for _, e := range retries {
			assert.Contains(t, e, "not enough space", "every attempt fails for want of space")
		}
		t.Logf("%d attempts failed: %q; the job's error: %q", len(retries), retries, job.Error)
		// The failed version's blobs are collected once its result is recorded.
		deadline := time.Now().Add(15 * time.Second)
		for !slices.Equal(blobs, blobSums(t, dataDir)) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		checker.finish(t)
		unchanged(t, 1) // the version, recorded as failed
	})
}

// Load test settings: clients and how long they fetch.
const (
	loadClients  = 200
	loadDuration = 10 * time.Second
)

// TestFaultLoad runs loadClients clients on loopback fetching the stream
// documents and item files (whole and ranges) while an upload and a mirror
// run: every answer must be right (no 5xx, no error, full lengths) and the
// server must log nothing at error level. Throughput and latency are
// measured and printed, never asserted: the machine is shared. Not
// parallel, so the other tests do not share its CPUs.
func TestFaultLoad(t *testing.T) {
	integration(t)
	client := newClient(t)
	key, keyringPath := newUpstreamKey(t)
	tree, up, product := focalUpstream(t, key, 1<<20, 19)
	root := up.URL + "/"
	srv := startServer(t, "all", t.TempDir(), testToken, "", "CUSTOMSTREAM_UPSTREAM_KEYRING="+keyringPath)
	base := srv.Base()

	// Something to fetch: a mirrored product and an uploaded image.
	waitMirrorJobs(t, client, base, mirrorUpstream(t, client, base, map[string]any{"url": root, "product_ids": []string{product}}))
	img := bootImage(1000, 4<<20)
	img.upload(t, client, base, testToken)
	require.Equal(t, "succeeded", waitJob(t, client, base, testToken, img.jobID, jobTimeout).State)
	waitPublished(t, client, base, product, img.productID)
	targets := loadTargets(t, client, base)

	// The work that runs under the load: a new upstream version mirrored at
	// 4 MiB/s, and a 256 MiB upload.
	require.NoError(t, tree.AddVersion("20250901"))
	fetchUpstream(t, client, base, map[string]any{"url": root, "refresh": true})
	up.Throttle(4 << 20)
	checker := startStreamChecker(t, base)
	start := time.Now()
	mirror := mirrorUpstream(t, client, base, map[string]any{"url": root, "product_ids": []string{product}, "bootloaders": false})
	type uploadResult struct {
		status int
		body   string
		took   time.Duration
		err    error
	}
	uploaded := make(chan uploadResult, 1)
	go func() {
		big := bootImage(1100, 4096)
		form := big.form()
		form[len(form)-1] = formField{name: "rootfs", file: io.LimitReader(&patternReader{}, 256<<20)}
		resp, err := postUpload(&http.Client{}, base, testToken, form)
		if err != nil {
			uploaded <- uploadResult{err: err}
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		uploaded <- uploadResult{status: resp.StatusCode, body: string(body), took: time.Since(start)}
	}()

	stats := runLoad(targets, base, loadClients, loadDuration)
	up.Throttle(0)
	up1 := <-uploaded
	require.NoError(t, up1.err, "the upload under load")
	require.Equal(t, http.StatusAccepted, up1.status, "the upload under load: %s", up1.body)
	var answer struct {
		Job struct {
			ID string `json:"id"`
		} `json:"job"`
	}
	require.NoError(t, json.Unmarshal([]byte(up1.body), &answer))
	require.Equal(t, "succeeded", waitJob(t, client, base, testToken, answer.Job.ID, jobTimeout).State)
	waitMirrorJobs(t, client, base, mirror)
	mirrorTook := time.Since(start)
	checker.finish(t)
	validateStream(t, base)

	assert.Empty(t, stats.wrong, "wrong answers under load (first ones)")
	logData, err := os.ReadFile(srv.proc.logPath)
	require.NoError(t, err)
	var errorLines []string
	for _, line := range strings.Split(string(logData), "\n") {
		if strings.Contains(line, "level=ERROR") {
			errorLines = append(errorLines, line)
		}
	}
	assert.Empty(t, errorLines, "error-level lines in the server log")

	note := fmt.Sprintf("load: %d clients for %s on loopback, while a 256 MiB upload (answered after %s) and a mirror at 4 MiB/s (done after %s) ran: %s",
		loadClients, loadDuration, up1.took.Round(time.Millisecond), mirrorTook.Round(time.Millisecond), stats)
	t.Log(note)
	fmt.Println("FAULT-NOTE " + note)
}

// loadTarget is one URL of the load with what a right answer is.
type loadTarget struct {
	kind string // "doc", "item" or "range"
	rel  string
	size int64 // item size; 0 for documents
}

// loadTargets lists both indexes, every product file (json and sjson) and
// every item, whole and as a range.
func loadTargets(t *testing.T, client *http.Client, base string) []loadTarget {
	t.Helper()
	targets := []loadTarget{{kind: "doc", rel: publish.IndexPath}, {kind: "doc", rel: publish.SignedIndexPath}}
	var index simplestreams.Index
	require.NoError(t, json.Unmarshal(download(t, client, base+"/"+publish.IndexPath), &index))
	for _, e := range index.Index {
		targets = append(targets, loadTarget{kind: "doc", rel: e.Path}, loadTarget{kind: "doc", rel: strings.TrimSuffix(e.Path, ".json") + ".sjson"})
	}
	seen := map[string]bool{}
	for _, p := range streamProducts(t, client, base) {
		for _, v := range p.Versions {
			for _, it := range v.Items {
				if !seen[it.Path] {
					seen[it.Path] = true
					targets = append(targets, loadTarget{kind: "item", rel: it.Path, size: it.Size}, loadTarget{kind: "range", rel: it.Path, size: it.Size})
				}
			}
		}
	}
	return targets
}

// loadStats is what runLoad measured.
type loadStats struct {
	took     time.Duration
	requests int
	bytes    int64
	latency  map[string][]time.Duration // by kind, and "all"; sorted
	wrong    []string                   // the first wrong answers
}

func (s loadStats) String() string {
	mb := float64(s.bytes) / 1e6 / s.took.Seconds()
	out := fmt.Sprintf("%d requests, %.0f req/s, %.1f MB/s; latency p50 %s p99 %s", s.requests,
		float64(s.requests)/s.took.Seconds(), mb, percentile(s.latency["all"], 50), percentile(s.latency["all"], 99))
	for _, kind := range []string{"doc", "item", "range"} {
		out += fmt.Sprintf("; %s p50 %s p99 %s (%d)", kind, percentile(s.latency[kind], 50), percentile(s.latency[kind], 99), len(s.latency[kind]))
	}
	return out
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[(len(sorted)-1)*p/100].Round(10 * time.Microsecond)
}

// runLoad has clients goroutines, each with its own connection, fetch the
// targets round-robin for d, and checks every answer.
func runLoad(targets []loadTarget, base string, clients int, d time.Duration) loadStats {
	type result struct {
		latency map[string][]time.Duration
		bytes   int64
		wrong   []string
	}
	results := make(chan result, clients)
	deadline := time.Now().Add(d)
	start := time.Now()
	for c := range clients {
		go func() {
			client := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 30 * time.Second}
			defer client.CloseIdleConnections()
			r := result{latency: map[string][]time.Duration{}}
			for n := c; time.Now().Before(deadline); n++ {
				tg := targets[n%len(targets)]
				began := time.Now()
				got, err := fetchTarget(client, base, tg, n)
				r.latency[tg.kind] = append(r.latency[tg.kind], time.Since(began))
				r.bytes += got
				if err != nil && len(r.wrong) < 5 {
					r.wrong = append(r.wrong, err.Error())
				}
			}
			results <- r
		}()
	}
	stats := loadStats{latency: map[string][]time.Duration{}}
	for range clients {
		r := <-results
		for kind, ls := range r.latency {
			stats.latency[kind] = append(stats.latency[kind], ls...)
			stats.latency["all"] = append(stats.latency["all"], ls...)
			stats.requests += len(ls)
		}
		stats.bytes += r.bytes
		if len(stats.wrong) < 10 {
			stats.wrong = append(stats.wrong, r.wrong...)
		}
	}
	stats.took = time.Since(start)
	for _, ls := range stats.latency {
		slices.Sort(ls)
	}
	return stats
}

// fetchTarget GETs one target (a range of 64 KiB somewhere in the item for
// "range") and returns the bytes received, or what is wrong with the answer.
func fetchTarget(client *http.Client, base string, tg loadTarget, n int) (int64, error) {
	req, err := http.NewRequest(http.MethodGet, base+"/"+tg.rel, nil)
	if err != nil {
		return 0, err
	}
	want, status := tg.size, http.StatusOK
	if tg.kind == "range" {
		from := int64(n*7919) % tg.size
		want, status = min(64<<10, tg.size-from), http.StatusPartialContent
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, from+want-1))
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", tg.rel, err)
	}
	defer resp.Body.Close()
	got, err := io.Copy(io.Discard, resp.Body)
	switch {
	case err != nil:
		return got, fmt.Errorf("GET %s: %w", tg.rel, err)
	case resp.StatusCode != status:
		return got, fmt.Errorf("GET %s (%s): status %d", tg.rel, req.Header.Get("Range"), resp.StatusCode)
	case tg.kind != "doc" && got != want:
		return got, fmt.Errorf("GET %s (%s): %d bytes, want %d", tg.rel, req.Header.Get("Range"), got, want)
	}
	return got, nil
}

// servedVersions reads the versions the server publishes through index.json
// and, with a keyring, through index.sjson, which must agree.
func servedVersions(t *testing.T, client *http.Client, base string, keyring openpgp.EntityList) []string {
	t.Helper()
	src := simplestreams.HTTPSource(base, client)
	got, err := publishedVersions(src.ReadFile, publish.IndexPath, nil)
	require.NoError(t, err)
	if keyring != nil {
		signed, err := publishedVersions(src.ReadFile, publish.SignedIndexPath, keyring)
		require.NoError(t, err)
		require.Equal(t, got, signed, "index.json and index.sjson name other versions")
	}
	return got
}

// publishedVersions returns "PRODUCT VERSION" of every version in the
// product files indexPath names, sorted; a signed index and its product
// files are verified with keyring.
func publishedVersions(read func(rel string) ([]byte, error), indexPath string, keyring openpgp.EntityList) ([]string, error) {
	signed := indexPath == publish.SignedIndexPath
	data, err := read(indexPath)
	if err != nil {
		return nil, err
	}
	var index simplestreams.Index
	if msg := decodeDoc(data, signed, keyring, &index); msg != "" {
		return nil, fmt.Errorf("%s: %s", indexPath, msg)
	}
	var out []string
	for _, e := range index.Index {
		data, err := read(e.Path)
		if err != nil {
			return nil, err
		}
		var doc simplestreams.Products
		if msg := decodeDoc(data, signed, keyring, &doc); msg != "" {
			return nil, fmt.Errorf("%s: %s", e.Path, msg)
		}
		for id, p := range doc.Products {
			for name := range p.Versions {
				out = append(out, id+" "+name)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// applyDelta adds ("+…") or removes ("-…") one version of a sorted set.
func applyDelta(versions []string, delta string) []string {
	v := delta[1:]
	out := slices.DeleteFunc(slices.Clone(versions), func(s string) bool { return s == v })
	if delta[0] == '+' {
		out = append(out, v)
		slices.Sort(out)
	}
	return out
}

// readyVersions is what the API lists as ready, in servedVersions' form.
func readyVersions(t *testing.T, client *http.Client, base string) []string {
	t.Helper()
	var out []string
	for _, img := range listImages(t, client, base, testToken) {
		if img.Status == "ready" {
			out = append(out, img.ProductID+" "+img.VersionName)
		}
	}
	slices.Sort(out)
	return out
}

// assertCheckPasses runs `customstream check --download`'s checks on the stream.
func assertCheckPasses(t *testing.T, client *http.Client, base string, keyring openpgp.EntityList) {
	t.Helper()
	var out bytes.Buffer
	res, err := check.Run(context.Background(), base+"/", check.Options{Keyring: keyring, Download: true, Client: client, Out: &out})
	require.NoError(t, err)
	assert.True(t, res.OK(), "customstream check:\n%s", out.String())
}

// assertStagingEmpty wants no file (directories may stay) under DATA/staging.
func assertStagingEmpty(t *testing.T, dataDir string) {
	t.Helper()
	var left []string
	require.NoError(t, filepath.WalkDir(filepath.Join(dataDir, "staging"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, p)
		}
		return err
	}))
	assert.Empty(t, left, "files left in staging")
}

// assertNoTmpFiles wants no temporary file of a publish left under dir.
func assertNoTmpFiles(t *testing.T, dir string) {
	t.Helper()
	var left []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".tmp-") {
			left = append(left, p)
		}
		return err
	}))
	assert.Empty(t, left, "temporary files left in the published tree")
}

// tmpWatch kills a process when the nth temporary file appears in a directory.
type tmpWatch struct {
	f      *os.File
	killed chan string // the temporary file's name, once killed
	done   chan struct{}
}

// killOnTmpFile watches dir with inotify and sends SIGKILL to pid as soon
// as the nth file named .tmp-* is created there (publish.WriteFileAtomic
// creates one before each rename): the kill lands while the publish runs.
func killOnTmpFile(t *testing.T, dir string, nth, pid int) *tmpWatch {
	t.Helper()
	// Non-blocking, so os.File reads through the poller and Close ends a read.
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	require.NoError(t, err, "inotify_init1")
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE); err != nil {
		syscall.Close(fd)
		require.NoError(t, err, "inotify_add_watch %s", dir)
	}
	w := &tmpWatch{f: os.NewFile(uintptr(fd), "inotify"), killed: make(chan string, 1), done: make(chan struct{})}
	go w.run(nth, pid)
	t.Cleanup(func() {
		w.f.Close()
		<-w.done
	})
	return w
}

func (w *tmpWatch) run(nth, pid int) {
	defer close(w.done)
	buf := make([]byte, 64<<10)
	seen := 0
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		// struct inotify_event: wd, mask, cookie, len (4 bytes each), then name[len].
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			nameLen := int(encbinary.NativeEndian.Uint32(buf[off+12:]))
			name := strings.TrimRight(string(buf[off+syscall.SizeofInotifyEvent:off+syscall.SizeofInotifyEvent+nameLen]), "\x00")
			off += syscall.SizeofInotifyEvent + nameLen
			if !strings.HasPrefix(name, ".tmp-") {
				continue
			}
			if seen++; seen == nth {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				w.killed <- name
				return
			}
		}
	}
}

// exhaustRetries runs each scheduled retry of a task at once until it is
// archived (out of retries, or failed for good), for at most 90 s, and
// returns the error of every attempt.
func exhaustRetries(t *testing.T, insp *asynq.Inspector, queue, taskID string) []string {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var errs []string
	for {
		info, err := insp.GetTaskInfo(queue, taskID)
		require.NoError(t, err, "task %s in queue %s", taskID, queue)
		switch info.State {
		case asynq.TaskStateArchived:
			return append(errs, info.LastErr)
		case asynq.TaskStateRetry:
			if insp.RunTask(queue, taskID) == nil {
				errs = append(errs, info.LastErr)
			}
		}
		require.True(t, time.Now().Before(deadline), "task %s is still %s after 90 s (errors %q)", taskID, info.State, errs)
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFileSize waits, for at most 30 s, until path holds at least size bytes.
func waitFileSize(t *testing.T, path string, size int64, s *server) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for fileSize(path) < size {
		require.False(t, s.proc.exited(), "customstream %s exited", s.cmd)
		require.True(t, time.Now().Before(deadline), "%s did not reach %d bytes within 30 s", path, size)
		time.Sleep(20 * time.Millisecond)
	}
}

// mountTmpfs mounts a tmpfs of size (mount's syntax) on a new directory,
// unmounted when the test ends, after the processes using it have stopped;
// it skips t where mounting is not allowed.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("!!!!!!!! cannot mount a tmpfs (needs root): %v %s; disk-full test skipped !!!!!!!!", err, bytes.TrimSpace(out))
	}
	// Registered before any process starts, so it runs after they stop.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

func freeSpace(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	require.NoError(t, syscall.Statfs(dir, &st))
	return int64(st.Bavail) * st.Bsize
}

// fillDisk writes a file in dir until only leave bytes are free, or until
// the filesystem is full, and returns its path (the caller removes it).
func fillDisk(t *testing.T, dir string, leave int64) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	require.NoError(t, err)
	t.Cleanup(func() { os.Remove(path) })
	n := freeSpace(t, dir) - leave
	if leave == 0 {
		n = 1 << 62
	}
	_, err = io.Copy(f, io.LimitReader(&patternReader{}, n))
	require.NoError(t, f.Close())
	if leave == 0 {
		require.ErrorIs(t, err, syscall.ENOSPC, "the filler should end on a full disk")
	} else {
		require.NoError(t, err)
	}
	return path
}

// patternReader yields an endless cheap, non-constant byte pattern.
type patternReader struct{ n byte }

func (r *patternReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.n
		r.n += 31
	}
	return len(p), nil
}

// uploadPattern uploads a single-file image whose rootfs is size bytes of
// patternReader, with a Content-Length or chunked, and returns the status
// and the API's error message. It reads the answer while it sends, as curl
// does: a server refusing in the middle of the body answers and closes,
// and Go's Transport may then report the failed write instead of the answer.
func uploadPattern(t *testing.T, base string, size int64, chunked bool) (int, string) {
	t.Helper()
	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	img := singleImage(900, 0)
	for _, name := range img.order {
		require.NoError(t, mw.WriteField(name, img.meta[name]))
	}
	_, err := mw.CreateFormFile("rootfs", "rootfs.img")
	require.NoError(t, err)
	prefix := slices.Clone(head.Bytes())
	head.Reset()
	require.NoError(t, mw.Close())
	body := io.MultiReader(bytes.NewReader(prefix), io.LimitReader(&patternReader{}, size), &head)

	addr := strings.TrimPrefix(base, "http://")
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(60*time.Second)))
	framing := fmt.Sprintf("Content-Length: %d", int64(len(prefix))+size+int64(head.Len()))
	if chunked {
		framing = "Transfer-Encoding: chunked"
	}
	go func() {
		// Write errors are expected once the server has refused and closed.
		fmt.Fprintf(conn, "POST /api/images/upload HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\n%s\r\n\r\n",
			addr, testToken, mw.FormDataContentType(), framing)
		var w io.Writer = conn
		if chunked {
			cw := httputil.NewChunkedWriter(conn)
			defer cw.Close()
			w = cw
		}
		_, _ = io.Copy(w, body)
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "no answer to the upload")
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var answer struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &answer) != nil {
		answer.Error = string(data)
	}
	return resp.StatusCode, answer.Error
}

// blobSums lists the blob store's files, sorted.
func blobSums(t *testing.T, dataDir string) []string {
	t.Helper()
	var sums []string
	err := filepath.WalkDir(filepath.Join(dataDir, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			sums = append(sums, d.Name())
		}
		return err
	})
	if !errors.Is(err, fs.ErrNotExist) {
		require.NoError(t, err)
	}
	slices.Sort(sums)
	return sums
}
