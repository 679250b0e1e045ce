package upstream

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/simplestreams"
)

func TestFetchCatalogSigned(t *testing.T) {
	key := newKey(t)
	m := serveTree(t, buildTree(t, key, nil))

	tests := []struct {
		name string
		url  string
	}{
		{"directory URL", m.URL + "/"},
		{"directory URL without slash", m.URL},
		{"index.sjson URL", m.URL + "/streams/v1/index.sjson"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cat, err := m.client(publicKeyring(t, key)).FetchCatalog(context.Background(), tc.url)
			require.NoError(t, err)
			assert.Equal(t, tc.url, cat.URL)
			assert.Equal(t, m.URL+"/streams/v1/index.sjson", cat.IndexURL)
			assert.Equal(t, m.URL+"/", cat.Root)
			assert.True(t, cat.Signed)
			assert.Equal(t, fingerprint(key), cat.Signer)
			assert.False(t, cat.FetchedAt.IsZero())
			assert.Empty(t, cat.Warnings)
			assert.Equal(t, simplestreams.FormatIndex, cat.Index.Format)
			require.Len(t, cat.Products, 3)
			for _, cid := range []string{bootCID, centosCID, bootloaderCID} {
				require.Contains(t, cat.Products, cid)
				assert.Equal(t, cid, cat.Products[cid].ContentID)
				assert.ElementsMatch(t, cat.Index.Index[cid].Products, cat.Products[cid].ProductIDs())
			}
		})
	}

	// Only .sjson documents were read.
	for _, p := range m.requested() {
		assert.True(t, strings.HasSuffix(p, ".sjson"), p)
	}
}

func TestFetchCatalogUnsigned(t *testing.T) {
	m := serveTree(t, buildTree(t, nil, nil))
	// No keyring needed for an unsigned stream.
	cat, err := m.client(nil).FetchCatalog(context.Background(), m.URL+"/streams/v1/index.json")
	require.NoError(t, err)
	assert.False(t, cat.Signed)
	assert.Empty(t, cat.Signer)
	assert.Equal(t, m.URL+"/", cat.Root)
	assert.Empty(t, cat.Warnings)
	require.Len(t, cat.Products, 3)
	assert.Len(t, cat.Products[bootCID].Products, 4)
}

func TestFetchCatalogInSubdirectory(t *testing.T) {
	// A mirror root below the server root, as images.maas.io/ephemeral-v3/stable/.
	top := t.TempDir()
	tree := buildTree(t, nil, nil)
	require.NoError(t, os.MkdirAll(filepath.Join(top, "ephemeral-v3"), 0o755))
	require.NoError(t, os.Rename(tree, filepath.Join(top, "ephemeral-v3", "stable")))
	m := serveTree(t, top)

	cat, err := m.client(nil).FetchCatalog(context.Background(), m.URL+"/ephemeral-v3/stable/streams/v1/index.json")
	require.NoError(t, err)
	assert.Equal(t, m.URL+"/ephemeral-v3/stable/", cat.Root)
	require.Len(t, cat.Products, 3)
	u, err := cat.ItemURL("streams/v1/index.json")
	require.NoError(t, err)
	assert.Equal(t, m.URL+"/ephemeral-v3/stable/streams/v1/index.json", u)
}

func TestFetchCatalogSignatureFailures(t *testing.T) {
	key := newKey(t)
	bootSJSON := "/streams/v1/" + bootCID + ".sjson"

	tests := []struct {
		name    string
		keyring func(t *testing.T) openpgp.EntityList
		edit    func(t *testing.T, v1 string) // applied after signing
		is      error
		want    []string
	}{
		{
			name: "tampered product file",
			edit: func(t *testing.T, v1 string) {
				path := filepath.Join(v1, bootCID+".sjson")
				data, err := os.ReadFile(path)
				require.NoError(t, err)
				tampered := bytes.Replace(data, []byte(`"arch": "amd64"`), []byte(`"arch": "amd65"`), 1)
				require.NotEqual(t, data, tampered)
				require.NoError(t, os.WriteFile(path, tampered, 0o644))
			},
			is:   simplestreams.ErrBadSignature,
			want: []string{"bad signature", bootSJSON},
		},
		{
			name:    "unknown key",
			keyring: func(t *testing.T) openpgp.EntityList { return publicKeyring(t, newKey(t)) },
			is:      simplestreams.ErrUnknownKey,
			want:    []string{"unknown key", strings.ToUpper(key.PrimaryKey.KeyIdString()), "/streams/v1/index.sjson"},
		},
		{
			name: "unsigned product file in a signed index",
			edit: func(t *testing.T, v1 string) {
				data, err := os.ReadFile(filepath.Join(v1, bootCID+".json"))
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(v1, bootCID+".sjson"), data, 0o644))
			},
			is:   simplestreams.ErrNoSignature,
			want: []string{"no signature", bootSJSON},
		},
		{
			name: "signed index naming a .json product file",
			edit: func(t *testing.T, v1 string) {
				data, err := os.ReadFile(filepath.Join(v1, "index.json"))
				require.NoError(t, err)
				signed, err := simplestreams.Clearsign(data, key)
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(v1, "index.sjson"), signed, 0o644))
			},
			want: []string{"not a .sjson file", bootloaderCID},
		},
		{
			name: "unsigned index renamed .sjson",
			edit: func(t *testing.T, v1 string) {
				data, err := os.ReadFile(filepath.Join(v1, "index.json"))
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(v1, "index.sjson"), data, 0o644))
			},
			is:   simplestreams.ErrNoSignature,
			want: []string{"no signature", "/streams/v1/index.sjson"},
		},
		{
			name:    "no keyring",
			keyring: func(t *testing.T) openpgp.EntityList { return nil },
			want:    []string{"no keyring", "/streams/v1/index.sjson"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := buildTree(t, key, nil)
			if tc.edit != nil {
				tc.edit(t, filepath.Join(root, "streams", "v1"))
			}
			m := serveTree(t, root)
			keyring := publicKeyring(t, key)
			if tc.keyring != nil {
				keyring = tc.keyring(t)
			}
			cat, err := m.client(keyring).FetchCatalog(context.Background(), m.URL)
			require.Error(t, err)
			assert.Nil(t, cat)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestFetchCatalogHTTPAndDocumentFailures(t *testing.T) {
	bootJSON := "/streams/v1/" + bootCID + ".json"
	tests := []struct {
		name    string
		edit    func(t *testing.T, v1 string)
		serve   func(m *mirror)
		maxSize int64
		want    []string
		check   func(t *testing.T, err error)
	}{
		{
			name: "404",
			edit: func(t *testing.T, v1 string) { require.NoError(t, os.Remove(filepath.Join(v1, bootCID+".json"))) },
			want: []string{"404 Not Found", bootJSON},
			check: func(t *testing.T, err error) {
				var se *StatusError
				require.ErrorAs(t, err, &se)
				assert.Equal(t, http.StatusNotFound, se.StatusCode)
			},
		},
		{
			name: "500",
			serve: func(m *mirror) {
				m.override(bootJSON, func(w http.ResponseWriter, r *http.Request) {
					http.Error(w, "boom", http.StatusInternalServerError)
				})
			},
			want: []string{"500 Internal Server Error", bootJSON},
		},
		{
			name: "malformed product JSON",
			edit: func(t *testing.T, v1 string) {
				require.NoError(t, os.WriteFile(filepath.Join(v1, bootCID+".json"), []byte(`{"content_id": `), 0o644))
			},
			want: []string{"not a valid products document", bootJSON},
		},
		{
			name: "malformed index JSON",
			edit: func(t *testing.T, v1 string) {
				require.NoError(t, os.WriteFile(filepath.Join(v1, "index.json"), []byte("<html>not json</html>"), 0o644))
			},
			want: []string{"index", "not valid JSON", "/streams/v1/index.json"},
		},
		{
			name: "not an index",
			edit: func(t *testing.T, v1 string) {
				data, err := os.ReadFile(filepath.Join(v1, bootCID+".json"))
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(v1, "index.json"), data, 0o644))
			},
			want: []string{"not a simplestreams index", `"products:1.0"`},
		},
		{
			name:    "document over the cap",
			maxSize: 8000, // the index is ~1.5 KB, the other product files ≤ 6.4 KB, the boot one ~11 KB
			want:    []string{"too large", "8000-byte limit", bootJSON},
			check:   func(t *testing.T, err error) { assert.ErrorIs(t, err, ErrTooLarge) },
		},
		{
			name: "document over the cap without Content-Length",
			serve: func(m *mirror) {
				m.override(bootJSON, func(w http.ResponseWriter, r *http.Request) {
					w.WriteHeader(http.StatusOK)
					for range 100 {
						_, _ = w.Write(bytes.Repeat([]byte(" "), 100))
						w.(http.Flusher).Flush() // chunked: no Content-Length to reject early
					}
				})
			},
			maxSize: 8000,
			want:    []string{"too large", bootJSON},
		},
		{
			name: "clearsigned product in an unsigned index",
			edit: func(t *testing.T, v1 string) {
				path := filepath.Join(v1, bootCID+".json")
				data, err := os.ReadFile(path)
				require.NoError(t, err)
				signed, err := simplestreams.Clearsign(data, newKey(t))
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(path, signed, 0o644))
			},
			want: []string{"clearsigned", "plain JSON", bootJSON},
		},
		{
			name: "unsafe item path",
			edit: func(t *testing.T, v1 string) {
				editJSON(t, filepath.Join(v1, centosCID+".json"), func(doc map[string]any) {
					p := doc["products"].(map[string]any)["com.ubuntu.maas.stable:centos-bases:8:amd64"].(map[string]any)
					v := p["versions"].(map[string]any)["20211104_01"].(map[string]any)
					v["items"].(map[string]any)["root-tgz"].(map[string]any)["path"] = "../../etc/passwd"
				})
			},
			want: []string{"unsafe path", "root-tgz", "../../etc/passwd", "/streams/v1/" + centosCID + ".json"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := serveTree(t, buildTree(t, nil, tc.edit))
			if tc.serve != nil {
				tc.serve(m)
			}
			c := New(Options{Transport: m.Client().Transport, MaxDocumentSize: tc.maxSize})
			cat, err := c.FetchCatalog(context.Background(), m.URL+"/streams/v1/index.json")
			require.Error(t, err)
			assert.Nil(t, cat)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			if tc.check != nil {
				tc.check(t, err)
			}
		})
	}
}

func TestFetchCatalogUnsafeIndexPaths(t *testing.T) {
	paths := []string{
		"../streams/v1/evil.json",
		"streams/v1/../../evil.json",
		"/etc/passwd",
		"http://evil.example/streams/v1/x.json",
		`streams\v1\x.json`,
		"streams/v1/x\x00.json",
		"",
	}
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			m := serveTree(t, buildTree(t, nil, func(t *testing.T, v1 string) {
				editJSON(t, filepath.Join(v1, "index.json"), func(doc map[string]any) {
					indexEntry(doc, bootCID)["path"] = p
				})
			}))
			_, err := m.client(nil).FetchCatalog(context.Background(), m.URL+"/streams/v1/index.json")
			require.ErrorIs(t, err, ErrUnsafePath)
			assert.Contains(t, err.Error(), bootCID)
			// Refused before any product file was requested.
			assert.Equal(t, []string{"/streams/v1/index.json"}, m.requested())
		})
	}
}

func TestFetchCatalogWarnings(t *testing.T) {
	m := serveTree(t, buildTree(t, nil, func(t *testing.T, v1 string) {
		editJSON(t, filepath.Join(v1, "index.json"), func(doc map[string]any) {
			delete(indexEntry(doc, bootloaderCID), "format")
			products := indexEntry(doc, centosCID)["products"].([]any)
			indexEntry(doc, centosCID)["products"] = append(products, "com.example:missing")
		})
		editJSON(t, filepath.Join(v1, bootCID+".json"), func(doc map[string]any) {
			doc["content_id"] = "com.example:other"
		})
	}))
	cat, err := m.client(nil).FetchCatalog(context.Background(), m.URL+"/streams/v1/index.json")
	require.NoError(t, err)
	assert.NotContains(t, cat.Products, bootloaderCID, "an entry without format is skipped, as sstream-mirror does")
	assert.Contains(t, cat.Products, bootCID)
	assert.Contains(t, cat.Products, centosCID)
	require.Len(t, cat.Warnings, 3)
	joined := strings.Join(cat.Warnings, "\n")
	assert.Contains(t, joined, "skipped index entry "+bootloaderCID)
	assert.Contains(t, joined, `content_id "com.example:other"`)
	assert.Contains(t, joined, "com.example:missing")
	for _, p := range m.requested() {
		assert.NotContains(t, p, bootloaderCID)
	}
}

func TestFetchCatalogUnreachable(t *testing.T) {
	m := serveTree(t, buildTree(t, nil, nil))
	c := m.client(nil)
	url := m.URL + "/streams/v1/index.json"
	m.Close() // nothing listens there any more

	_, err := c.FetchCatalog(context.Background(), url)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "fetch "+url)
	assert.Contains(t, err.Error(), "cannot connect")
}

func TestFetchCatalogCanceled(t *testing.T) {
	m := serveTree(t, buildTree(t, nil, nil))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := m.client(nil).FetchCatalog(ctx, m.URL+"/streams/v1/index.json")
	require.ErrorIs(t, err, context.Canceled)
}

func TestFetchCatalogBadURL(t *testing.T) {
	_, err := New(Options{}).FetchCatalog(context.Background(), "ftp://images.maas.io/")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"ftp"`)
}

func TestStatusErrorIsNotTooLarge(t *testing.T) {
	err := error(&StatusError{URL: "http://x/", StatusCode: 404, Status: "404 Not Found"})
	assert.False(t, errors.Is(err, ErrTooLarge))
	assert.Equal(t, "fetch http://x/: server answered 404 Not Found", err.Error())
}

// sortedIDs is a test helper shared with the entries tests.
func sortedIDs(m map[string]any) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
