package upstream

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/simplestreams"
)

// fixtureDir holds real images.maas.io metadata.
const fixtureDir = "../simplestreams/testdata/images.maas.io/streams/v1"

const (
	bootCID       = "com.ubuntu.maas:stable:v3:download"
	centosCID     = "com.ubuntu.maas:stable:centos-bases-download"
	bootloaderCID = "com.ubuntu.maas:stable:1:bootloader-download"
)

// newKey makes an EdDSA signing key: fast to generate.
func newKey(t *testing.T) *openpgp.Entity {
	t.Helper()
	key, err := openpgp.NewEntity("upstream test", "", "upstream@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	require.NoError(t, err)
	return key
}

// publicKeyring is key's public part, read back the way a configured keyring would be.
func publicKeyring(t *testing.T, keys ...*openpgp.Entity) openpgp.EntityList {
	t.Helper()
	var buf bytes.Buffer
	for _, k := range keys {
		require.NoError(t, k.Serialize(&buf))
	}
	el, err := simplestreams.ReadKeyring(buf.Bytes())
	require.NoError(t, err)
	return el
}

func fingerprint(key *openpgp.Entity) string {
	return strings.ToUpper(hex.EncodeToString(key.PrimaryKey.Fingerprint))
}

// buildTree copies the fixture stream into a new mirror root. edit (optional) changes
// the .json files first; with a key, every document also gets a clearsigned .sjson twin
// and index.sjson names the .sjson product files, as on images.maas.io.
func buildTree(t *testing.T, key *openpgp.Entity, edit func(t *testing.T, v1 string)) string {
	t.Helper()
	root := t.TempDir()
	v1 := filepath.Join(root, "streams", "v1")
	require.NoError(t, os.MkdirAll(v1, 0o755))
	names, err := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	require.NoError(t, err)
	require.Len(t, names, 4)
	for _, name := range names {
		data, err := os.ReadFile(name)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(v1, filepath.Base(name)), data, 0o644))
	}
	if edit != nil {
		edit(t, v1)
	}
	if key == nil {
		return root
	}
	names, err = filepath.Glob(filepath.Join(v1, "*.json"))
	require.NoError(t, err)
	for _, name := range names {
		data, err := os.ReadFile(name)
		require.NoError(t, err)
		if filepath.Base(name) == "index.json" {
			data = sjsonIndex(t, data)
		}
		signed, err := simplestreams.Clearsign(data, key)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(strings.TrimSuffix(name, ".json")+".sjson", signed, 0o644))
	}
	return root
}

// sjsonIndex rewrites an index's product paths from .json to .sjson.
func sjsonIndex(t *testing.T, data []byte) []byte {
	t.Helper()
	var idx map[string]any
	require.NoError(t, json.Unmarshal(data, &idx))
	for _, e := range idx["index"].(map[string]any) {
		entry := e.(map[string]any)
		if p, ok := entry["path"].(string); ok {
			entry["path"] = strings.TrimSuffix(p, ".json") + ".sjson"
		}
	}
	out, err := json.MarshalIndent(idx, "", " ")
	require.NoError(t, err)
	return append(out, '\n')
}

// editJSON changes one JSON document in place.
func editJSON(t *testing.T, path string, change func(doc map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(data, &doc))
	change(doc)
	out, err := json.MarshalIndent(doc, "", " ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, out, 0o644))
}

// indexEntry returns an index document's entry for cid, for editJSON callbacks.
func indexEntry(doc map[string]any, cid string) map[string]any {
	return doc["index"].(map[string]any)[cid].(map[string]any)
}

// mirror is an httptest server serving a tree, with per-path overrides.
type mirror struct {
	*httptest.Server
	mu        sync.Mutex
	overrides map[string]http.HandlerFunc
	requests  []string
}

func serveTree(t *testing.T, root string) *mirror {
	t.Helper()
	m := &mirror{overrides: make(map[string]http.HandlerFunc)}
	files := http.FileServer(http.Dir(root))
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.requests = append(m.requests, r.URL.Path)
		h := m.overrides[r.URL.Path]
		m.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(m.Close)
	return m
}

func (m *mirror) override(path string, h http.HandlerFunc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.overrides[path] = h
}

func (m *mirror) requested() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.requests...)
}

// client talks to m through the test server's own transport.
func (m *mirror) client(keyring openpgp.EntityList) *Client {
	return New(Options{Keyring: keyring, Transport: m.Client().Transport})
}
