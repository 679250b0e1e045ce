package main

// Integration tests of mirroring: the real binary against a real HTTP
// upstream (upstreamtest) serving a generated simplestreams tree with real
// files, clearsigned with a fresh test key.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/upstream/upstreamtest"
	"github.com/customstream/customstream/jobs"
)

// mirrorJobTimeout bounds the wait for a mirror job (small files, loopback).
const mirrorJobTimeout = 60 * time.Second

// TestMirrorFromSignedUpstream browses a signed upstream, mirrors a boot
// image, a single-file image and the bootloaders with `customstream all`,
// and reads our stream back as a client would.
func TestMirrorFromSignedUpstream(t *testing.T) {
	integration(t)
	t.Parallel()
	client := newClient(t)

	key, keyring := newUpstreamKey(t)
	opts := upstreamtest.DefaultOptions()
	opts.ItemSize = 256 << 10
	tree, up := signedUpstream(t, key, opts)
	root := up.URL + "/"

	srv := startMirrorServer(t, "all", t.TempDir(), "", "CUSTOMSTREAM_UPSTREAM_KEYRING="+keyring)
	base := srv.Base()

	// Browse with sstream filters: exactly the products the documents say.
	filters := []string{"arch=amd64", "release~jammy"}
	cat := fetchUpstream(t, client, base, map[string]any{"url": root, "filters": filters})
	// "url" is the index URL the catalog is cached under, not the URL as given.
	assert.Contains(t, []string{root, root + upstreamtest.SignedIndexPath}, cat.URL)
	assert.Equal(t, root+upstreamtest.SignedIndexPath, cat.IndexURL)
	assert.True(t, cat.Signed, "the upstream was read from index.sjson: it is signed")
	assert.Equal(t, fingerprintOf(key), cat.Signer)
	assert.Empty(t, cat.Warnings, "the generated tree is clean")
	release := regexp.MustCompile("jammy")
	want := treeEntries(tree, func(f map[string]string) bool { return f["arch"] == "amd64" && release.MatchString(f["release"]) })
	require.NotEmpty(t, want, "the generated tree has no amd64 jammy product")
	checkCatalogAnswer(t, want, cat.Products, nil)

	// Mirror one boot image and one centos image; the bootloaders come by default.
	ga := findTreeProduct(t, tree, map[string]string{"os": "ubuntu", "release": "jammy", "arch": "amd64", "subarch": "ga-22.04"})
	hwe := findTreeProduct(t, tree, map[string]string{"os": "ubuntu", "release": "jammy", "arch": "amd64", "subarch": "hwe-22.04"})
	centos := findTreeProduct(t, tree, map[string]string{"os": "centos", "release": "centos70", "arch": "amd64"})
	bootloaders := treeProductIDs(tree, upstreamtest.BootloaderContentID)
	require.Len(t, bootloaders, 4)
	first := []string{ga, centos}
	answer := mirrorUpstream(t, client, base, map[string]any{"url": root, "product_ids": first})
	wantIDs := append(slices.Clone(first), bootloaders...)
	checkMirrorAnswer(t, tree, answer, wantIDs, nil, nil)
	waitMirrorJobs(t, client, base, answer)

	// The hwe image shares its squashfs and manifest with ga: only its
	// kernel and initrd are left to download. The bootloaders are skipped.
	answer = mirrorUpstream(t, client, base, map[string]any{"url": root, "product_ids": []string{hwe}})
	have := map[string]bool{}
	for _, id := range wantIDs {
		for _, it := range latestVersionOf(t, tree, id).Items {
			have[it.SHA256] = true
		}
	}
	checkMirrorAnswer(t, tree, answer, []string{hwe}, bootloaders, have)
	waitMirrorJobs(t, client, base, answer)

	mirrored := append(slices.Clone(wantIDs), hwe)
	ours := waitStream(t, client, base, "every mirrored product at its latest version", func(ps map[string]publishedProduct) bool {
		for _, id := range mirrored {
			if _, ok := ps[id].Versions[latestName(t, tree, id)]; !ok {
				return false
			}
		}
		return true
	})
	checkPublishedLikeUpstream(t, tree, root, ours, mirrored)
	verifyStream(t, client, base, tree, root)

	// Every upstream file was fetched once at most; the shared squashfs once.
	gets := itemGets(up.Requests())
	for p, n := range gets {
		assert.Equal(t, 1, n, "%s was downloaded %d times", p, n)
	}
	gaItems, hweItems := latestVersionOf(t, tree, ga).Items, latestVersionOf(t, tree, hwe).Items
	require.Equal(t, gaItems["squashfs"].Path, hweItems["squashfs"].Path, "the generator shares one squashfs between ga and hwe")
	assert.Equal(t, 1, gets[gaItems["squashfs"].Path], "GETs of the squashfs ga and hwe share")
	assert.Equal(t, 1, gets[gaItems["boot-kernel"].Path], "GETs of the ga kernel")
	assert.Equal(t, 1, gets[hweItems["boot-kernel"].Path], "GETs of the hwe kernel")

	// The images API names the upstream and our paths below mirror/HOST_PORT/.
	prefix := mirrorPrefix(root)
	for _, img := range listImages(t, client, base, testToken) {
		assert.Contains(t, mirrored, img.ProductID)
		assert.Equal(t, "ready", img.Status, "%s: %s", img.ProductID, img.Error)
		for _, it := range img.Items {
			assert.True(t, strings.HasPrefix(it.Path, prefix), "item path %s of %s is not below %s", it.Path, img.ProductID, prefix)
		}
	}
	var origins struct {
		Images []struct {
			ProductID string `json:"product_id"`
			Origin    string `json:"origin"`
		} `json:"images"`
	}
	getJSON(t, client, base+"/api/images/list", testToken, &origins)
	require.Len(t, origins.Images, len(mirrored))
	for _, img := range origins.Images {
		assert.Equal(t, root, img.Origin, "origin of %s", img.ProductID)
	}

	// Browsing again tells what is mirrored now.
	cat = fetchUpstream(t, client, base, map[string]any{"url": root, "filters": filters})
	checkCatalogAnswer(t, want, cat.Products, mirrored)
	cat = fetchUpstream(t, client, base, map[string]any{"url": root})
	checkCatalogAnswer(t, treeEntries(tree, func(map[string]string) bool { return true }), cat.Products, mirrored)
}

// TestMirrorDedupResumeAndMismatch runs web and worker as two processes with
// a real redis-server: dedup across versions and retention, resume after a
// worker killed mid-download, a checksum mismatch, and a bad signature.
func TestMirrorDedupResumeAndMismatch(t *testing.T) {
	integration(t)
	t.Parallel()
	client := newClient(t)
	key, keyring := newUpstreamKey(t)

	opts := upstreamtest.DefaultOptions()
	opts.Versions = []string{"20250615"}
	opts.SharedFraction = 0.5
	opts.Seed = 7
	tree, up := signedUpstream(t, key, opts)
	root := up.URL + "/"

	rds := startRedis(t)
	dataDir := t.TempDir()
	env := []string{"CUSTOMSTREAM_UPSTREAM_KEYRING=" + keyring, "CUSTOMSTREAM_KEEP_VERSIONS=2", "CUSTOMSTREAM_DOWNLOAD_PARALLEL=4"}
	web := startMirrorServer(t, "web", dataDir, rds.URL(), env...)
	worker := startMirrorServer(t, "worker", dataDir, rds.URL(), env...)
	base := web.Base()
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: rds.addr})
	t.Cleanup(func() { insp.Close() })

	ga := findTreeProduct(t, tree, map[string]string{"os": "ubuntu", "release": "jammy", "arch": "amd64", "subarch": "ga-22.04"})
	hwe := findTreeProduct(t, tree, map[string]string{"os": "ubuntu", "release": "jammy", "arch": "amd64", "subarch": "hwe-22.04"})
	centos := findTreeProduct(t, tree, map[string]string{"os": "centos", "release": "centos70", "arch": "amd64"})
	selection := []string{ga, hwe, centos}

	t.Run("dedup", func(t *testing.T) {
		fetchUpstream(t, client, base, map[string]any{"url": root})
		answer := mirrorUpstream(t, client, base, map[string]any{"url": root, "product_ids": selection, "bootloaders": false})
		checkMirrorAnswer(t, tree, answer, selection, nil, nil)
		waitMirrorJobs(t, client, base, answer)
		v1 := tree.Versions()[0]
		waitVersions(t, client, base, selection, []string{v1})

		// A new upstream version sharing some files with the first.
		have := map[string]bool{}
		for _, id := range selection {
			for _, it := range latestVersionOf(t, tree, id).Items {
				have[it.SHA256] = true
			}
		}
		const v2 = "20250718"
		require.NoError(t, tree.AddVersion(v2))
		cat := fetchUpstream(t, client, base, map[string]any{"url": root, "refresh": true})
		for _, p := range cat.Products {
			if slices.Contains(selection, p.ProductID) {
				assert.Equal(t, v2, p.LatestVersion, "latest version of %s after the refresh", p.ProductID)
				assert.Equal(t, "outdated", p.State, "state of %s once the upstream has a newer version", p.ProductID)
			}
		}
		wantGets, shared := newFiles(t, tree, selection, have)
		require.NotEmpty(t, shared, "SharedFraction 0.5 shares no file of the selection: the dedup check would prove nothing")
		require.NotEmpty(t, wantGets, "the new version has no new file in the selection")

		up.ResetRequests()
		answer = mirrorUpstream(t, client, base, map[string]any{"url": root, "product_ids": selection, "bootloaders": false})
		checkMirrorAnswer(t, tree, answer, selection, nil, have)
		waitMirrorJobs(t, client, base, answer)
		got := itemGets(up.Requests())
		assert.Equal(t, wantGets, got, "only the files the first version does not hold are downloaded, once each")
		for _, p := range shared {
			assert.Zero(t, got[p], "%s has the content of a file already mirrored: it must not be downloaded", p)
		}
		waitVersions(t, client, base, selection, []string{v1, v2})
		verifyStream(t, client, base, tree, root)

		// Retention: a third version pushes the first out (KEEP_VERSIONS=2).
		const v3 = "20250801"
		for _, id := range selection {
			for _, it := range latestVersionOf(t, tree, id).Items {
				have[it.SHA256] = true
			}
		}
		require.NoError(t, tree.AddVersion(v3))
		fetchUpstream(t, client, base, map[string]any{"url": root, "refresh": true})
		answer = mirrorUpstream(t, client, base, map[string]any{"url": root, "product_ids": selection, "bootloaders": false})
		checkMirrorAnswer(t, tree, answer, selection, nil, have)
		waitMirrorJobs(t, client, base, answer)
		ours := waitVersions(t, client, base, selection, []string{v2, v3})
		checkPublishedLikeUpstream(t, tree, root, ours, selection)
		verifyStream(t, client, base, tree, root)
	})
	if t.Failed() {
		return
	}

	parent := t
	t.Run("resume", func(t *testing.T) {
		// A separate upstream with big files, throttled, so the worker can
		// be killed in the middle of the squashfs.
		big, bigUp, product := focalUpstream(t, key, 8<<20, 11)
		bigRoot := bigUp.URL + "/"
		bigUp.Throttle(2 << 20)
		squashfs := latestVersionOf(t, big, product).Items["squashfs"]
		require.EqualValues(t, 8<<20, squashfs.Size)

		checker := startStreamChecker(t, base)
		answer := mirrorUpstream(t, client, base, map[string]any{"url": bigRoot, "product_ids": []string{product}})
		require.Len(t, answer.Jobs, 1, "one job: the upstream has no bootloaders")
		jobID := answer.Jobs[0].ID

		part := filepath.Join(dataDir, "staging", "mirror", squashfs.SHA256+".part")
		deadline := time.Now().Add(30 * time.Second)
		for fileSize(part) < 1<<20 { // 1 MiB: well into the file, far from its end
			require.False(t, worker.proc.exited(), "the worker exited")
			require.True(t, time.Now().Before(deadline), "%s did not reach 1 MiB within 30 s", part)
			time.Sleep(20 * time.Millisecond)
		}
		worker.proc.kill9(t)
		have := fileSize(part)
		require.Greater(t, have, int64(0))
		require.Less(t, have, squashfs.Size, "the squashfs was complete before the kill: throttle more")
		killedAt := len(bigUp.Requests())
		bigUp.Throttle(0)

		expireLease(t, rds.addr, jobID)
		// The parent's t: the new worker serves the later subtests too.
		worker = startMirrorServer(parent, "worker", dataDir, rds.URL(), env...)
		job, retries := waitJobFastForward(t, client, base, insp, jobID, mirrorJobTimeout)
		require.Equal(t, "succeeded", job.State, "job error: %s (attempt errors: %q)", job.Error, retries)
		t.Logf("killed with %d of %d bytes of the squashfs staged; attempt errors before the resume: %q", have, squashfs.Size, retries)

		var ranges []string
		for _, r := range bigUp.Requests()[killedAt:] {
			if r.Method == http.MethodGet && r.Path == squashfs.Path {
				ranges = append(ranges, r.Range)
			}
		}
		assert.Equal(t, []string{fmt.Sprintf("bytes=%d-", have)}, ranges,
			"after the crash the squashfs is asked for once, from the %d bytes already staged", have)

		waitVersions(t, client, base, []string{product}, []string{latestName(t, big, product)})
		checker.finish(t)
		ours := streamProducts(t, client, base)
		checkPublishedLikeUpstream(t, big, bigRoot, ours, []string{product})
		verifyStream(t, client, base, big, bigRoot)
		// Our squashfs is the upstream's, byte for byte.
		got := download(t, client, base+"/"+mirrorPrefix(bigRoot)+squashfs.Path)
		assert.Equal(t, squashfs.SHA256, sha256Hex(got))
		assert.NoFileExists(t, part, "the staged part is removed once committed")
	})
	if t.Failed() {
		return
	}

	t.Run("checksum mismatch", func(t *testing.T) {
		bad := findTreeProduct(t, tree, map[string]string{"os": "centos", "release": "centos8", "arch": "arm64"})
		ver := latestVersionOf(t, tree, bad)
		rootTgz := ver.Items["root-tgz"]
		up.Corrupt(rootTgz.Path)
		defer up.Clear(rootTgz.Path)
		before := indexedDocs(t, client, base)

		answer := mirrorUpstream(t, client, base, map[string]any{"url": root, "product_ids": []string{bad}, "bootloaders": false})
		require.Len(t, answer.Jobs, 1)
		// asynq retries a mismatch 5 times with its default backoff (at
		// least 15+16+31+96+271 s in all); each retry is run at once here.
		job, retries := waitJobFastForward(t, client, base, insp, answer.Jobs[0].ID, 90*time.Second)
		require.Equal(t, "failed", job.State, "a file whose sha256 does not match must fail the job")
		assert.Contains(t, job.Error, "sha256", "the job's error tells why")
		assert.Contains(t, job.Error, rootTgz.SHA256, "the job's error names the expected sum")
		for _, e := range retries {
			assert.Contains(t, e, "sha256", "every attempt fails on the checksum")
		}
		t.Logf("%d attempts failed before the job ended failed", len(retries)+1)

		for _, img := range listImages(t, client, base, testToken) {
			if img.ProductID == bad {
				assert.Equal(t, "failed", img.Status)
				assert.Contains(t, img.Error, "sha256")
			}
		}
		after := indexedDocs(t, client, base)
		assert.NotContains(t, string(after[publish.IndexPath]), bad, "a product whose only version failed is not in index.json")
		assert.Equal(t, sortedKeys(before), sortedKeys(after), "the stream documents changed")
		for p, data := range before {
			assert.Equal(t, string(data), string(after[p]), "%s changed after a failed mirror", p)
		}
		for p, data := range after {
			assert.NotContains(t, string(data), rootTgz.Path, "%s names the corrupted file", p)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("bad signature", func(t *testing.T) {
		before := indexedDocs(t, client, base)
		entry, ok := tree.Index.Index[upstreamtest.CentosContentID]
		require.True(t, ok)
		sjson := filepath.Join(tree.Dir, filepath.FromSlash(strings.TrimSuffix(entry.Path, ".json")+".sjson"))
		data, err := os.ReadFile(sjson)
		require.NoError(t, err)
		tampered := bytes.Replace(data, []byte(`"label": "stable"`), []byte(`"label": "stabla"`), 1)
		require.NotEqual(t, data, tampered, "nothing to tamper with in %s", sjson)
		require.NoError(t, os.WriteFile(sjson, tampered, 0o644))

		status, body := postJSON(t, client, base+"/api/upstream/fetch", map[string]any{"url": root, "refresh": true})
		require.Equal(t, http.StatusBadGateway, status, "fetch of a tampered upstream: %s", body)
		var answer struct {
			Error string `json:"error"`
		}
		require.NoError(t, json.Unmarshal(body, &answer), "%s", body)
		assert.Contains(t, strings.ToLower(answer.Error), "signature", "the error says the signature is bad")

		after := indexedDocs(t, client, base)
		assert.Equal(t, sortedKeys(before), sortedKeys(after), "the stream documents changed")
		for p, data := range before {
			assert.Equal(t, string(data), string(after[p]), "%s changed after a bad signature", p)
		}
	})
}

// focalUpstream serves a signed upstream of one release (focal amd64, one
// version) whose big items are itemSize bytes, and returns it with the id of
// its ga-20.04 boot product.
func focalUpstream(t *testing.T, key *openpgp.Entity, itemSize int, seed int64) (*upstreamtest.Tree, *upstreamtest.Server, string) {
	t.Helper()
	tree, up := signedUpstream(t, key, upstreamtest.Options{
		Releases: []upstreamtest.Release{{Name: "focal", Version: "20.04", Codename: "Focal Fossa"}},
		Arches:   []string{"amd64"}, Versions: []string{"20250801"}, ItemSize: itemSize, Seed: seed,
	})
	product := findTreeProduct(t, tree, map[string]string{"os": "ubuntu", "release": "focal", "arch": "amd64", "subarch": "ga-20.04"})
	return tree, up, product
}

// newUpstreamKey makes an EdDSA signing key (fast to generate) and writes
// its public part, armored, to a keyring file for CUSTOMSTREAM_UPSTREAM_KEYRING.
func newUpstreamKey(t *testing.T) (*openpgp.Entity, string) {
	t.Helper()
	key, err := openpgp.NewEntity("customstream upstream test", "", "upstream@example.invalid",
		&packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	require.NoError(t, err)
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	require.NoError(t, err)
	require.NoError(t, key.Serialize(w))
	require.NoError(t, w.Close())
	path := filepath.Join(t.TempDir(), "upstream-keyring.asc")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
	return key, path
}

// signedUpstream generates a tree with opts, signs it with key and serves it.
func signedUpstream(t *testing.T, key *openpgp.Entity, opts upstreamtest.Options) (*upstreamtest.Tree, *upstreamtest.Server) {
	t.Helper()
	tree, err := upstreamtest.Generate(t.TempDir(), opts)
	require.NoError(t, err)
	signTree(t, tree, key)
	return tree, upstreamtest.NewServer(t, tree.Dir)
}

func signTree(t *testing.T, tree *upstreamtest.Tree, key *openpgp.Entity) {
	t.Helper()
	require.NoError(t, tree.Sign(func(payload []byte) ([]byte, error) { return simplestreams.Clearsign(payload, key) }))
}

func fingerprintOf(key *openpgp.Entity) string {
	return strings.ToUpper(hex.EncodeToString(key.PrimaryKey.Fingerprint))
}

// startMirrorServer starts `customstream cmd` with the test token and extra
// environment (later entries win), on a fresh loopback address.
func startMirrorServer(t *testing.T, cmd, dataDir, redisURL string, extra ...string) *server {
	t.Helper()
	return startServer(t, cmd, dataDir, testToken, redisURL, extra...)
}

// API answers, as a client reads them.
type upstreamProduct struct {
	ProductID     string `json:"product_id"`
	ContentID     string `json:"content_id"`
	Kind          string `json:"kind"`
	OS            string `json:"os"`
	Release       string `json:"release"`
	Arch          string `json:"arch"`
	Subarch       string `json:"subarch"`
	Label         string `json:"label"`
	Kflavor       string `json:"kflavor"`
	LatestVersion string `json:"latest_version"`
	Size          int64  `json:"size"`
	Mirrored      bool   `json:"mirrored"`
	State         string `json:"state"`
}

type fetchAnswer struct {
	URL      string            `json:"url"`
	IndexURL string            `json:"index_url"`
	Signed   bool              `json:"signed"`
	Signer   string            `json:"signer"`
	Warnings []string          `json:"warnings"`
	Products []upstreamProduct `json:"products"`
}

type mirrorAnswer struct {
	Jobs []struct {
		ID          string `json:"id"`
		ProductID   string `json:"product_id"`
		VersionName string `json:"version_name"`
	} `json:"jobs"`
	Skipped []struct {
		ProductID   string `json:"product_id"`
		VersionName string `json:"version_name"`
		Reason      string `json:"reason"`
	} `json:"skipped"`
	TotalBytes    int64 `json:"total_bytes"`
	DownloadBytes int64 `json:"download_bytes"`
}

// postJSON POSTs body as JSON with the API token and returns the status and answer.
func postJSON(t *testing.T, client *http.Client, url string, body any) (int, []byte) {
	t.Helper()
	data, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(data))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, answer
}

func fetchUpstream(t *testing.T, client *http.Client, base string, body map[string]any) fetchAnswer {
	t.Helper()
	status, data := postJSON(t, client, base+"/api/upstream/fetch", body)
	require.Equal(t, http.StatusOK, status, "POST /api/upstream/fetch: %s", data)
	var out fetchAnswer
	require.NoError(t, json.Unmarshal(data, &out), "%s", data)
	return out
}

func mirrorUpstream(t *testing.T, client *http.Client, base string, body map[string]any) mirrorAnswer {
	t.Helper()
	status, data := postJSON(t, client, base+"/api/images/mirror", body)
	require.Equal(t, http.StatusAccepted, status, "POST /api/images/mirror: %s", data)
	var out mirrorAnswer
	require.NoError(t, json.Unmarshal(data, &out), "%s", data)
	return out
}

// treeEntry is an upstream product as the generated documents describe it.
type treeEntry struct {
	contentID string
	product   simplestreams.Product
}

// treeEntries returns the tree's products whose fields satisfy match, by id.
func treeEntries(tree *upstreamtest.Tree, match func(map[string]string) bool) map[string]treeEntry {
	out := map[string]treeEntry{}
	for cid, doc := range tree.Products {
		for id, p := range doc.Products {
			if match(p.Fields) {
				out[id] = treeEntry{contentID: cid, product: p}
			}
		}
	}
	return out
}

// findTreeProduct returns the id of the one product with these field values.
func findTreeProduct(t *testing.T, tree *upstreamtest.Tree, fields map[string]string) string {
	t.Helper()
	found := treeEntries(tree, func(f map[string]string) bool {
		for k, v := range fields {
			if f[k] != v {
				return false
			}
		}
		return true
	})
	require.Len(t, found, 1, "products of the generated tree with %v", fields)
	for id := range found {
		return id
	}
	return ""
}

func treeProductIDs(tree *upstreamtest.Tree, contentID string) []string {
	doc, ok := tree.Products[contentID]
	if !ok {
		return nil
	}
	return doc.ProductIDs()
}

func treeProduct(t *testing.T, tree *upstreamtest.Tree, id string) treeEntry {
	t.Helper()
	found := treeEntries(tree, func(map[string]string) bool { return true })
	e, ok := found[id]
	require.True(t, ok, "product %s is not in the generated tree", id)
	return e
}

func latestName(t *testing.T, tree *upstreamtest.Tree, id string) string {
	t.Helper()
	return treeProduct(t, tree, id).product.LatestVersion()
}

func latestVersionOf(t *testing.T, tree *upstreamtest.Tree, id string) simplestreams.Version {
	t.Helper()
	p := treeProduct(t, tree, id).product
	return p.Versions[p.LatestVersion()]
}

// kindOf is the kind the API gives the products of each generated product file.
var kindOf = map[string]string{
	upstreamtest.BootContentID:       "boot",
	upstreamtest.BootloaderContentID: "bootloader",
	upstreamtest.CentosContentID:     "single",
}

// checkCatalogAnswer compares the fetched products with the tree's; the
// products in mirrored must say so, the others not.
func checkCatalogAnswer(t *testing.T, want map[string]treeEntry, got []upstreamProduct, mirrored []string) {
	t.Helper()
	var gotIDs []string
	for _, p := range got {
		gotIDs = append(gotIDs, p.ProductID)
	}
	require.ElementsMatch(t, slices.Collect(maps.Keys(want)), gotIDs, "products of the catalog")
	for _, p := range got {
		e := want[p.ProductID]
		f := e.product.Fields
		latest := e.product.LatestVersion()
		var size int64
		seen := map[string]bool{}
		for _, it := range e.product.Versions[latest].Items {
			if !seen[it.Path] {
				seen[it.Path] = true
				size += it.Size
			}
		}
		assert.Equal(t, upstreamProduct{
			ProductID: p.ProductID, ContentID: e.contentID, Kind: kindOf[e.contentID],
			OS: f["os"], Release: f["release"], Arch: f["arch"], Subarch: f["subarch"], Label: f["label"], Kflavor: f["kflavor"],
			LatestVersion: latest, Size: size,
			Mirrored: slices.Contains(mirrored, p.ProductID),
			State:    map[bool]string{true: "mirrored", false: "not mirrored"}[slices.Contains(mirrored, p.ProductID)],
		}, p)
	}
}

// checkMirrorAnswer checks the jobs (one per product id, at its latest
// version), the skipped products and the byte counts: total_bytes counts
// every selected item, skipped products included; download_bytes each
// content once, less the sums in have (already in our blob store).
func checkMirrorAnswer(t *testing.T, tree *upstreamtest.Tree, got mirrorAnswer, started, skipped []string, have map[string]bool) {
	t.Helper()
	var jobIDs, skippedIDs []string
	for _, j := range got.Jobs {
		jobIDs = append(jobIDs, j.ProductID)
		assert.NotEmpty(t, j.ID, "job of %s", j.ProductID)
		assert.Equal(t, latestName(t, tree, j.ProductID), j.VersionName, "version of the job of %s", j.ProductID)
	}
	for _, s := range got.Skipped {
		skippedIDs = append(skippedIDs, s.ProductID)
		assert.NotEmpty(t, s.Reason, "reason %s is skipped", s.ProductID)
	}
	require.ElementsMatch(t, started, jobIDs, "products a job was started for")
	assert.ElementsMatch(t, skipped, skippedIDs, "products skipped")
	var total, download int64
	counted := map[string]bool{}
	for _, id := range append(slices.Clone(started), skipped...) {
		for _, it := range latestVersionOf(t, tree, id).Items {
			total += it.Size
			if !have[it.SHA256] && !counted[it.SHA256] {
				download += it.Size
			}
			counted[it.SHA256] = true
		}
	}
	assert.Equal(t, total, got.TotalBytes, "total_bytes")
	assert.Equal(t, download, got.DownloadBytes, "download_bytes")
}

func waitMirrorJobs(t *testing.T, client *http.Client, base string, answer mirrorAnswer) {
	t.Helper()
	for _, j := range answer.Jobs {
		job := waitJob(t, client, base, testToken, j.ID, mirrorJobTimeout)
		require.Equal(t, "succeeded", job.State, "mirror job %s of %s %s: %s", j.ID, j.ProductID, j.VersionName, job.Error)
		assert.Equal(t, job.Progress.Total, job.Progress.Done, "progress of job %s at the end", j.ID)
	}
}

// publishedProduct is one product of our stream with its content id.
type publishedProduct struct {
	ContentID string
	simplestreams.Product
}

// streamProducts reads our index and every product file it names.
func streamProducts(t *testing.T, client *http.Client, base string) map[string]publishedProduct {
	t.Helper()
	var index simplestreams.Index
	require.NoError(t, json.Unmarshal(download(t, client, base+"/"+publish.IndexPath), &index))
	out := map[string]publishedProduct{}
	for cid, e := range index.Index {
		var doc simplestreams.Products
		require.NoError(t, json.Unmarshal(download(t, client, base+"/"+e.Path), &doc), "%s", e.Path)
		assert.Equal(t, cid, doc.ContentID, "content id of %s", e.Path)
		assert.ElementsMatch(t, e.Products, doc.ProductIDs(), "the index lists the products of %s", e.Path)
		for id, p := range doc.Products {
			out[id] = publishedProduct{ContentID: doc.ContentID, Product: p}
		}
	}
	return out
}

// waitStream polls our stream, for at most 15 s, until ok holds: a job is
// reported done a moment before the publish that follows it.
func waitStream(t *testing.T, client *http.Client, base, what string, ok func(map[string]publishedProduct) bool) map[string]publishedProduct {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ps := streamProducts(t, client, base)
		if ok(ps) {
			return ps
		}
		require.True(t, time.Now().Before(deadline), "our stream does not show %s", what)
		time.Sleep(50 * time.Millisecond)
	}
}

// waitVersions waits until each product has exactly these versions in our stream.
func waitVersions(t *testing.T, client *http.Client, base string, ids, versions []string) map[string]publishedProduct {
	t.Helper()
	want := slices.Sorted(slices.Values(versions))
	return waitStream(t, client, base, fmt.Sprintf("versions %v of %v", versions, ids), func(ps map[string]publishedProduct) bool {
		for _, id := range ids {
			if !slices.Equal(want, slices.Sorted(maps.Keys(ps[id].Versions))) {
				return false
			}
		}
		return true
	})
}

// mirrorPrefix is where our stream keeps the items of the upstream at root.
func mirrorPrefix(root string) string {
	host := strings.TrimSuffix(strings.TrimPrefix(root, "http://"), "/")
	return "mirror/" + strings.ReplaceAll(host, ":", "_") + "/"
}

// checkPublishedLikeUpstream wants each product in our stream with the
// upstream's content id and fields, and every version we publish with the
// upstream's items (same keys, types, sizes, sums and extra fields) at our paths.
func checkPublishedLikeUpstream(t *testing.T, tree *upstreamtest.Tree, root string, ours map[string]publishedProduct, ids []string) {
	t.Helper()
	prefix := mirrorPrefix(root)
	for _, id := range ids {
		theirs := treeProduct(t, tree, id)
		mine, ok := ours[id]
		if !assert.True(t, ok, "product %s is not in our stream", id) {
			continue
		}
		assert.Equal(t, theirs.contentID, mine.ContentID, "content id of %s", id)
		for k, v := range theirs.product.Fields {
			assert.Equal(t, v, mine.Fields[k], "field %s of %s", k, id)
		}
		require.NotEmpty(t, mine.Versions, "versions of %s", id)
		for name, v := range mine.Versions {
			up, ok := theirs.product.Versions[name]
			if !assert.True(t, ok, "version %s of %s is not upstream", name, id) {
				continue
			}
			require.Equal(t, slices.Sorted(maps.Keys(up.Items)), slices.Sorted(maps.Keys(v.Items)), "items of %s %s", id, name)
			for key, it := range v.Items {
				want := up.Items[key]
				assert.Equal(t, want.FType, it.FType, "ftype of %s %s %s", id, name, key)
				assert.Equal(t, want.Size, it.Size, "size of %s %s %s", id, name, key)
				assert.Equal(t, want.SHA256, it.SHA256, "sha256 of %s %s %s", id, name, key)
				assert.Equal(t, prefix+want.Path, it.Path, "path of %s %s %s", id, name, key)
				for k, val := range want.Extra {
					assert.Equal(t, val, it.Extra[k], "%s of %s %s %s", k, id, name, key)
				}
			}
		}
	}
}

// verifyStream validates our stream as MAAS reads it and downloads every
// item: each has the size and sha256 of our metadata, and a mirrored item
// those of the upstream file it comes from.
func verifyStream(t *testing.T, client *http.Client, base string, tree *upstreamtest.Tree, root string) {
	t.Helper()
	report := validateStream(t, base)
	require.NotEmpty(t, report.Items)
	prefix := mirrorPrefix(root)
	for _, it := range report.Items {
		got := download(t, client, base+"/"+it.Path)
		assert.Equal(t, it.Size, int64(len(got)), "size of %s", it.Path)
		assert.Equal(t, it.SHA256, sha256Hex(got), "sha256 of %s", it.Path)
		if rel, ok := strings.CutPrefix(it.Path, prefix); ok {
			info, ok := tree.Files[rel]
			if assert.True(t, ok, "%s is not a file of the upstream", it.Path) {
				assert.Equal(t, info.Size, int64(len(got)), "size of %s against the upstream", it.Path)
				assert.Equal(t, info.SHA256, sha256Hex(got), "sha256 of %s against the upstream", it.Path)
			}
		}
	}
}

// itemGets counts the GETs of item files (not stream documents) by path.
func itemGets(reqs []upstreamtest.Request) map[string]int {
	n := map[string]int{}
	for _, r := range reqs {
		if r.Method == http.MethodGet && !strings.HasPrefix(r.Path, "streams/") {
			n[r.Path]++
		}
	}
	return n
}

// newFiles splits the latest items of ids into the paths to download (once
// each: content not in have) and the paths whose content is already there.
func newFiles(t *testing.T, tree *upstreamtest.Tree, ids []string, have map[string]bool) (map[string]int, []string) {
	t.Helper()
	gets := map[string]int{}
	var shared []string
	for _, id := range ids {
		for _, it := range latestVersionOf(t, tree, id).Items {
			if have[it.SHA256] {
				shared = append(shared, it.Path)
			} else {
				gets[it.Path] = 1
			}
		}
	}
	sort.Strings(shared)
	return gets, slices.Compact(shared)
}

// indexedDocs fetches our index and every product file it names (a stream
// of mirrored products only has no products.json).
func indexedDocs(t *testing.T, client *http.Client, base string) map[string][]byte {
	t.Helper()
	docs := map[string][]byte{publish.IndexPath: download(t, client, base+"/"+publish.IndexPath)}
	var index simplestreams.Index
	require.NoError(t, json.Unmarshal(docs[publish.IndexPath], &index))
	require.NotEmpty(t, index.Index, "the index lists no product file")
	for _, e := range index.Index {
		docs[e.Path] = download(t, client, base+"/"+e.Path)
	}
	return docs
}

func fileSize(path string) int64 {
	info, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return info.Size()
}

// expireLease moves the lease of the killed worker's task into the past.
// asynq hands an orphaned task to another worker only once its lease has
// been expired for 30 s, and checks once a minute: about 60 s after a crash,
// then a retry backoff of 15-44 s. The new worker's first check finds it at once.
func expireLease(t *testing.T, addr, taskID string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	key := "asynq:{" + jobs.QueueMirror + "}:lease" // asynq v0.26 internal/base.LeaseKey
	changed, err := rdb.ZAddArgs(context.Background(), key, redis.ZAddArgs{XX: true, Ch: true,
		Members: []redis.Z{{Score: float64(time.Now().Add(-time.Hour).Unix()), Member: taskID}}}).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, changed, "task %s holds no lease in %s: has asynq's layout changed?", taskID, key)
}

// waitJobFastForward waits, for at most within, until the mirror job is
// finished, running each scheduled retry at once instead of after asynq's
// backoff; it returns the job and the error of every attempt that went to retry.
func waitJobFastForward(t *testing.T, client *http.Client, base string, insp *asynq.Inspector, id string, within time.Duration) (apiJob, []string) {
	t.Helper()
	return waitJobRunningRetries(t, client, base, insp, id, jobs.QueueMirror, id, within)
}

// waitJobRunningRetries is waitJobFastForward for the job id, whose
// scheduled retries are those of the task taskID in queue.
func waitJobRunningRetries(t *testing.T, client *http.Client, base string, insp *asynq.Inspector, id, queue, taskID string, within time.Duration) (apiJob, []string) {
	t.Helper()
	deadline := time.Now().Add(within)
	var errs []string
	for {
		var job apiJob
		getJSON(t, client, base+"/api/jobs/"+id, testToken, &job)
		switch job.State {
		case "succeeded", "failed", "canceled":
			return job, errs
		}
		if info, err := insp.GetTaskInfo(queue, taskID); err == nil && info.State == asynq.TaskStateRetry {
			if err := insp.RunTask(queue, taskID); err == nil {
				errs = append(errs, info.LastErr)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is still %s after %s (progress %d/%d; attempt errors %q)", id, job.State, within,
				job.Progress.Done, job.Progress.Total, errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
