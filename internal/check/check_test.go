package check

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/upstream/upstreamtest"
)

func newKey(t *testing.T) *openpgp.Entity {
	t.Helper()
	key, err := openpgp.NewEntity("customstream test", "", "test@example.com", nil)
	require.NoError(t, err)
	return key
}

func fingerprint(key *openpgp.Entity) string {
	return strings.ToUpper(hex.EncodeToString(key.PrimaryKey.Fingerprint))
}

// generate writes a small tree; edit (optional) changes it on disk before signing.
func generate(t *testing.T, key *openpgp.Entity, edit func(tree *upstreamtest.Tree)) *upstreamtest.Tree {
	t.Helper()
	opts := upstreamtest.DefaultOptions()
	opts.ItemSize = 4 << 10
	tree, err := upstreamtest.Generate(t.TempDir(), opts)
	require.NoError(t, err)
	if edit != nil {
		edit(tree)
	}
	if key != nil {
		require.NoError(t, tree.Sign(func(p []byte) ([]byte, error) { return simplestreams.Clearsign(p, key) }))
	}
	return tree
}

func run(t *testing.T, rawURL string, o Options) (*Result, string) {
	t.Helper()
	var out bytes.Buffer
	o.Out = &out
	res, err := Run(context.Background(), rawURL, o)
	require.NoError(t, err, out.String())
	t.Log(out.String())
	return res, out.String()
}

func problemLines(res *Result) []string {
	var lines []string
	for _, p := range res.Problems {
		lines = append(lines, p.String())
	}
	return lines
}

// firstItem returns the path of some item of the tree, deterministically.
func firstItem(tree *upstreamtest.Tree) string {
	paths := make([]string, 0, len(tree.Files))
	for p := range tree.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths[0]
}

func TestCheckSignedTreeWithKeyringAndDownload(t *testing.T) {
	key := newKey(t)
	tree := generate(t, key, nil)
	srv := upstreamtest.NewServer(t, tree.Dir)

	var updates [][2]int64
	progress := func(done, total int64) { updates = append(updates, [2]int64{done, total}) }
	res, out := run(t, srv.URL+"/", Options{Keyring: openpgp.EntityList{key}, Download: true, Progress: progress})
	assert.True(t, res.OK(), out)
	require.NotEmpty(t, updates, "progress is reported")
	assert.Equal(t, [2]int64{0, res.BytesChecked}, updates[0], "the first report: nothing done out of every listed byte")
	assert.Equal(t, [2]int64{res.BytesChecked, res.BytesChecked}, updates[len(updates)-1], "the last: all of it")
	for i := 1; i < len(updates); i++ {
		assert.GreaterOrEqual(t, updates[i][0], updates[i-1][0], "progress never goes back")
	}
	assert.Empty(t, res.Errors(), out)
	assert.True(t, res.Signed)
	assert.Equal(t, []string{fingerprint(key)}, res.Signers)
	assert.Equal(t, srv.URL+"/streams/v1/index.sjson", res.IndexURL)
	assert.Equal(t, len(tree.Files), res.ItemsChecked)
	assert.Positive(t, res.BytesChecked)
	assert.Contains(t, out, "Signed: yes, by "+fingerprint(key))
	assert.Contains(t, out, "items: ")
	assert.NotContains(t, out, "Ubuntu cloud image key")
	assert.True(t, strings.HasPrefix(lastLine(out), "OK"), out)
}

func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

func TestCheckSignedTreeWrongKeyring(t *testing.T) {
	tree := generate(t, newKey(t), nil)
	srv := upstreamtest.NewServer(t, tree.Dir)

	res, out := run(t, srv.URL, Options{Keyring: openpgp.EntityList{newKey(t)}})
	assert.False(t, res.OK())
	assert.Empty(t, res.Signers)
	docs := map[string]bool{}
	for _, p := range res.Errors() {
		assert.Contains(t, p.Message, "signature", p.String())
		docs[p.Doc] = true
	}
	assert.True(t, docs["streams/v1/index.sjson"], out)
	assert.Len(t, docs, len(tree.Index.Index)+1, "the index and every product file are named")
	assert.Contains(t, out, "streams/v1/index.sjson: signature does not verify")
	assert.Contains(t, lastLine(out), "problems")
}

func TestCheckSignedTreeDefaultKeyring(t *testing.T) {
	tree := generate(t, newKey(t), nil)
	srv := upstreamtest.NewServer(t, tree.Dir)

	res, out := run(t, srv.URL+"/streams/v1/index.sjson", Options{})
	assert.False(t, res.OK())
	assert.Contains(t, out, "Ubuntu cloud image key")
	assert.Contains(t, out, "signature does not verify")
}

func TestCheckTamperedSjson(t *testing.T) {
	key := newKey(t)
	tree := generate(t, key, nil)
	var productDoc string
	for _, e := range tree.Index.Index {
		productDoc = strings.TrimSuffix(e.Path, ".json") + ".sjson"
		break
	}
	name := filepath.Join(tree.Dir, filepath.FromSlash(productDoc))
	data, err := os.ReadFile(name)
	require.NoError(t, err)
	tampered := strings.Replace(string(data), `"format": "products:1.0"`, `"format":  "products:1.0"`, 1)
	if tampered == string(data) {
		tampered = strings.Replace(string(data), `"products:1.0"`, `"products:1.0" `, 1)
	}
	require.NotEqual(t, string(data), tampered)
	require.NoError(t, os.WriteFile(name, []byte(tampered), 0o644))
	srv := upstreamtest.NewServer(t, tree.Dir)

	res, out := run(t, srv.URL, Options{Keyring: openpgp.EntityList{key}})
	require.False(t, res.OK(), out)
	errs := res.Errors()
	require.Len(t, errs, 1, out)
	assert.Equal(t, productDoc, errs[0].Doc)
	assert.Contains(t, errs[0].Message, "signature")
	assert.Equal(t, "1 problem", lastLine(out))
}

func TestCheckUnsignedJSON(t *testing.T) {
	tree := generate(t, nil, nil)
	srv := upstreamtest.NewServer(t, tree.Dir)

	res, out := run(t, srv.URL+"/"+upstreamtest.IndexPath, Options{})
	assert.True(t, res.OK(), out)
	assert.False(t, res.Signed)
	assert.NotContains(t, out, "Ubuntu cloud image key")
	assert.Contains(t, out, "Signed: no")
	assert.Contains(t, out, "Items not downloaded")
	assert.Equal(t, len(tree.Files), len(res.Report.Items))
	assert.True(t, strings.HasPrefix(lastLine(out), "OK"), out)
}

func TestCheckCorruptItem(t *testing.T) {
	tree := generate(t, nil, nil)
	srv := upstreamtest.NewServer(t, tree.Dir)
	item := firstItem(tree)
	srv.Corrupt(item)
	indexURL := srv.URL + "/" + upstreamtest.IndexPath

	res, out := run(t, indexURL, Options{})
	assert.True(t, res.OK(), "without --download the corruption is not seen: %s", out)

	res, out = run(t, indexURL, Options{Download: true})
	require.False(t, res.OK(), out)
	errs := res.Errors()
	require.Len(t, errs, 1, out)
	assert.Contains(t, errs[0].Message, item)
	assert.Contains(t, errs[0].Message, "sha256")
	assert.Contains(t, out, errs[0].String())
	assert.Equal(t, "1 problem", lastLine(out))
}

func TestCheckMissingItem(t *testing.T) {
	tree := generate(t, nil, nil)
	item := firstItem(tree)
	require.NoError(t, os.Remove(filepath.Join(tree.Dir, filepath.FromSlash(item))))
	srv := upstreamtest.NewServer(t, tree.Dir)

	res, out := run(t, srv.URL+"/"+upstreamtest.IndexPath, Options{Download: true})
	require.Len(t, res.Errors(), 1, out)
	assert.Contains(t, res.Errors()[0].Message, item)
	assert.Contains(t, res.Errors()[0].Message, "404")
}

func TestCheckBrokenDocument(t *testing.T) {
	var productDoc string
	tree := generate(t, nil, func(tree *upstreamtest.Tree) {
		for _, e := range tree.Index.Index {
			productDoc = e.Path
			break
		}
		name := filepath.Join(tree.Dir, filepath.FromSlash(productDoc))
		data, err := os.ReadFile(name)
		require.NoError(t, err)
		var doc map[string]any
		require.NoError(t, json.Unmarshal(data, &doc))
		breakFirstSize(t, doc)
		data, err = json.Marshal(doc)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(name, data, 0o644))
	})
	srv := upstreamtest.NewServer(t, tree.Dir)

	res, out := run(t, srv.URL+"/"+upstreamtest.IndexPath, Options{})
	require.False(t, res.OK(), out)
	var named bool
	for _, p := range res.Errors() {
		assert.Contains(t, out, p.String())
		if p.Doc == productDoc && strings.Contains(p.Message, "size") {
			named = true
		}
	}
	assert.True(t, named, "a problem names the size in %s:\n%s", productDoc, out)
	assert.Contains(t, lastLine(out), "problem")
	assert.NotEmpty(t, problemLines(res))
}

// breakFirstSize sets the size of one item (the first in sorted order) to a string.
func breakFirstSize(t *testing.T, doc map[string]any) {
	t.Helper()
	products, ok := doc["products"].(map[string]any)
	require.True(t, ok)
	for _, pid := range sortedKeys(products) {
		versions := products[pid].(map[string]any)["versions"].(map[string]any)
		for _, v := range sortedKeys(versions) {
			items := versions[v].(map[string]any)["items"].(map[string]any)
			for _, k := range sortedKeys(items) {
				items[k].(map[string]any)["size"] = "big"
				return
			}
		}
	}
	t.Fatal("no item to break")
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestCheckUnreadableIndex(t *testing.T) {
	tree := generate(t, nil, nil)
	srv := upstreamtest.NewServer(t, tree.Dir)

	_, err := Run(context.Background(), srv.URL+"/streams/v1/missing.json", Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "404")

	_, err = Run(context.Background(), "ftp://example.com/", Options{})
	require.Error(t, err)
}
