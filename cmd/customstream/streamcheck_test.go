package main

// The stream checker of the fault tests: while a process is killed,
// restarted or starved of disk, it reads the stream over and over as a
// client would and records every path that is missing or has another size
// than the stream states.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/upstream/upstreamtest"
)

// checkerPause is the pause between two rounds: short, so a round lands in
// every phase of a fault, yet the checker leaves the CPU to the server.
const checkerPause = 25 * time.Millisecond

// streamChecker runs rounds in the background until finish.
type streamChecker struct {
	base   string
	client *http.Client
	stop   chan struct{}
	done   chan struct{}

	mu       sync.Mutex
	clean    int      // rounds that read a stable stream and found nothing
	changed  int      // rounds during which the stream changed (a publish): not conclusive
	down     int      // rounds cut short by a connection error (the server is dead or restarting)
	findings []string // problems of stable rounds
}

// startStreamChecker starts checking the stream at base; finish stops it.
func startStreamChecker(t *testing.T, base string) *streamChecker {
	t.Helper()
	c := &streamChecker{
		base: base, stop: make(chan struct{}), done: make(chan struct{}),
		// A short timeout: a request to a killed server must not hold a round.
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 10 * time.Second},
	}
	t.Cleanup(c.halt) // a test that fails early still stops its checker
	go c.run()
	return c
}

func (c *streamChecker) run() {
	defer close(c.done)
	for {
		findings, err := c.round()
		c.mu.Lock()
		var down errDown
		switch {
		case errors.As(err, &down):
			c.down++
		case err != nil:
			c.changed++
		case len(findings) > 0:
			c.findings = append(c.findings, findings...)
		default:
			c.clean++
		}
		c.mu.Unlock()
		select {
		case <-c.stop:
			return
		case <-time.After(checkerPause):
		}
	}
}

// halt stops the checker and waits for its last round; it may run twice.
func (c *streamChecker) halt() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
	c.client.CloseIdleConnections()
}

// finish stops the checker and fails t on any finding, or when no round
// read a stable stream (the checker proved nothing then).
func (c *streamChecker) finish(t *testing.T) {
	t.Helper()
	clean, findings := c.results(t)
	assert.Empty(t, findings, "the stream checker found problems")
	require.Positive(t, clean, "the stream checker never completed a round against a stable stream")
}

// results stops the checker and returns its clean rounds and its findings,
// each once (the same finding repeats round after round).
func (c *streamChecker) results(t *testing.T) (int, []string) {
	t.Helper()
	c.halt()
	c.mu.Lock()
	defer c.mu.Unlock()
	t.Logf("stream checker: %d clean rounds, %d while the stream changed, %d while the server was unreachable, %d findings",
		c.clean, c.changed, c.down, len(c.findings))
	return c.clean, slices.Compact(slices.Sorted(slices.Values(c.findings)))
}

// errDown is a round cut short by a transport error: connection refused or
// reset while the server is dead, not a finding.
type errDown struct{ err error }

func (e errDown) Error() string { return "server unreachable: " + e.err.Error() }

// errChanged is a round during which the stream changed: a client that
// read an old product file may find its items pruned, which a publish
// allows, so the round's findings do not count.
var errChanged = errors.New("the stream changed during the round")

// round reads both indexes, every document they name and HEADs every item
// once; then reads the documents again. It returns the findings of a round
// that saw one stable stream, errDown or errChanged otherwise.
func (c *streamChecker) round() ([]string, error) {
	var findings []string
	finding := func(format string, args ...any) { findings = append(findings, fmt.Sprintf(format, args...)) }
	docs := map[string][]byte{}
	fetch := func(rel string) ([]byte, bool, error) {
		status, data, err := c.get(rel)
		if err != nil {
			return nil, false, err
		}
		if status != http.StatusOK {
			finding("GET %s: status %d", rel, status)
			return nil, false, nil
		}
		docs[rel] = data
		return data, true, nil
	}

	keyringData, ok, err := fetch("keyring.gpg")
	if err != nil {
		return nil, err
	}
	var keyring openpgp.EntityList
	if ok {
		if keyring, err = simplestreams.ReadKeyring(keyringData); err != nil {
			finding("keyring.gpg: %v", err)
		}
	}
	items := map[string]int64{} // path → size, from every product file read
	for _, indexPath := range []string{publish.IndexPath, publish.SignedIndexPath} {
		signed := indexPath == publish.SignedIndexPath
		data, ok, err := fetch(indexPath)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		var index simplestreams.Index
		if msg := decodeDoc(data, signed, keyring, &index); msg != "" {
			finding("%s: %s", indexPath, msg)
			continue
		}
		for cid, e := range index.Index {
			data, ok, err := fetch(e.Path)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			var doc simplestreams.Products
			if msg := decodeDoc(data, signed, keyring, &doc); msg != "" {
				finding("%s (named by %s): %s", e.Path, indexPath, msg)
				continue
			}
			if doc.ContentID != cid {
				finding("%s: content_id %q, %s names it for %q", e.Path, doc.ContentID, indexPath, cid)
			}
			if !slices.Equal(slices.Sorted(slices.Values(e.Products)), doc.ProductIDs()) {
				finding("%s lists products %v for %s, which holds %v", indexPath, e.Products, e.Path, doc.ProductIDs())
			}
			for id, p := range doc.Products {
				for vn, v := range p.Versions {
					for key, it := range v.Items {
						if prev, ok := items[it.Path]; ok && prev != it.Size {
							finding("%s is listed with sizes %d and %d", it.Path, prev, it.Size)
						}
						items[it.Path] = it.Size
						if it.Path == "" {
							finding("%s: %s %s %s has no path", e.Path, id, vn, key)
						}
					}
				}
			}
		}
	}
	for _, p := range slices.Sorted(maps.Keys(items)) {
		status, length, err := c.head(p)
		if err != nil {
			return nil, err
		}
		switch {
		case status != http.StatusOK:
			finding("HEAD %s: status %d", p, status)
		case length != items[p]:
			finding("HEAD %s: Content-Length %d, the stream says %d", p, length, items[p])
		}
	}
	// The same documents again: any difference means a publish ran.
	for rel, before := range docs {
		status, data, err := c.get(rel)
		if err != nil {
			return nil, err
		}
		if status != http.StatusOK || !bytes.Equal(before, data) {
			return nil, errChanged
		}
	}
	return findings, nil
}

// decodeDoc parses a stream document into v, after verifying the signature
// of a signed one; it returns what is wrong, or "".
func decodeDoc(data []byte, signed bool, keyring openpgp.EntityList, v any) string {
	if signed {
		payload, _, err := simplestreams.VerifyClearsigned(data, keyring)
		if err != nil {
			return err.Error()
		}
		data = payload
	}
	if err := json.Unmarshal(data, v); err != nil {
		return "invalid JSON: " + err.Error()
	}
	return ""
}

func (c *streamChecker) get(rel string) (int, []byte, error) {
	resp, err := c.client.Get(c.base + "/" + rel)
	if err != nil {
		return 0, nil, errDown{err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, errDown{err}
	}
	return resp.StatusCode, data, nil
}

func (c *streamChecker) head(rel string) (int, int64, error) {
	resp, err := c.client.Head(c.base + "/" + rel)
	if err != nil {
		return 0, 0, errDown{err}
	}
	resp.Body.Close()
	length, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	if err != nil {
		length = -1
	}
	return resp.StatusCode, length, nil
}

// TestStreamCheckerFinds breaks a served stream in each way the checker
// must notice, so a clean report from it means something.
func TestStreamCheckerFinds(t *testing.T) {
	t.Parallel()
	key, _ := newUpstreamKey(t)
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, tree *upstreamtest.Tree, item string)
		want  string // in a finding; empty: none wanted
	}{
		{"nothing wrong", func(*testing.T, *upstreamtest.Tree, string) {}, ""},
		{"item shorter", func(t *testing.T, tree *upstreamtest.Tree, item string) {
			require.NoError(t, os.Truncate(filepath.Join(tree.Dir, item), 10))
		}, "Content-Length 10"},
		{"item missing", func(t *testing.T, tree *upstreamtest.Tree, item string) {
			require.NoError(t, os.Remove(filepath.Join(tree.Dir, item)))
		}, "status 404"},
		{"product file not JSON", func(t *testing.T, tree *upstreamtest.Tree, _ string) {
			p := filepath.Join(tree.Dir, filepath.FromSlash(tree.Index.Index[upstreamtest.CentosContentID].Path))
			require.NoError(t, os.WriteFile(p, []byte("{not json"), 0o644))
		}, "invalid JSON"},
		{"signed index tampered", func(t *testing.T, tree *upstreamtest.Tree, _ string) {
			p := filepath.Join(tree.Dir, filepath.FromSlash(publish.SignedIndexPath))
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(p, bytes.Replace(data, []byte("index:1.0"), []byte("index:1.1"), 1), 0o644))
		}, publish.SignedIndexPath},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := upstreamtest.DefaultOptions()
			opts.Versions = []string{"20250615"}
			tree, err := upstreamtest.Generate(t.TempDir(), opts)
			require.NoError(t, err)
			signTree(t, tree, key)
			var keyring bytes.Buffer
			require.NoError(t, key.Serialize(&keyring))
			require.NoError(t, os.WriteFile(filepath.Join(tree.Dir, "keyring.gpg"), keyring.Bytes(), 0o644))
			item := slices.Sorted(maps.Keys(tree.Files))[0]
			tc.spoil(t, tree, item)

			c := startStreamChecker(t, upstreamtest.NewServer(t, tree.Dir).URL)
			deadline := time.Now().Add(30 * time.Second)
			for {
				c.mu.Lock()
				rounds := c.clean + len(c.findings)
				c.mu.Unlock()
				if rounds > 0 {
					break
				}
				require.True(t, time.Now().Before(deadline), "the checker completed no round in 30 s")
				time.Sleep(10 * time.Millisecond)
			}
			clean, findings := c.results(t)
			if tc.want == "" {
				assert.Empty(t, findings)
				assert.Positive(t, clean)
				return
			}
			assert.Zero(t, clean, "a broken stream was found clean")
			require.NotEmpty(t, findings)
			assert.Contains(t, strings.Join(findings, "\n"), tc.want)
		})
	}
}
