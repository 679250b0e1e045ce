package simplestreams

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzSeedDir holds the real images.maas.io stream used as fuzz seeds.
const fuzzSeedDir = "testdata/images.maas.io/streams/v1"

// fuzzSeedFiles returns the real product files and index of the seed stream.
func fuzzSeedFiles(f *testing.F) (index []byte, products [][]byte) {
	f.Helper()
	entries, err := os.ReadDir(fuzzSeedDir)
	require.NoError(f, err)
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(fuzzSeedDir, e.Name()))
		require.NoError(f, err)
		if e.Name() == "index.json" {
			index = data
		} else {
			products = append(products, data)
		}
	}
	require.NotNil(f, index, "seed index.json")
	require.NotEmpty(f, products, "seed product files")
	return index, products
}

// brokenProducts are hand-written malformed product files.
var brokenProducts = []string{
	``,
	`null`,
	`{}`,
	`[]`,
	`{"products": null}`,
	`{"products": {"p": null}}`,
	`{"products": {"p": {"versions": {"v": {"items": {"k": {"size": "12"}}}}}}}`,
	`{"products": {"p": {"versions": {"v": {"items": {"k": {"size": 1.5}}}}}}}`,
	`{"products": {"p": {"arch": 1, "x": true, "y": null, "z": [1], "versions": {}}}}`,
	`{"products": {"p": {"versions": {"v": {"items": {"k": {"path": 7}}}}}}}`,
	`{"format": "products:1.0", "products": {"p": {"versions": {"v": {"items": {"k": {"path": "../../etc/passwd", "size": -1, "sha256": "zz"}}}}}}}`,
	"{\"products\": {\"\xff\": {\"k\xfe\": \"v\xfd\"}}}",
	`{"products": {"p": {"versions": {"v": {"a": 1e400, "items": {}}}}}}`,
	`{"content_id": 1}`,
}

// addProductSeeds adds the real product files and brokenProducts.
func addProductSeeds(f *testing.F) {
	_, products := fuzzSeedFiles(f)
	for _, p := range products {
		f.Add(p)
	}
	for _, s := range brokenProducts {
		f.Add([]byte(s))
	}
}

// FuzzProducts checks that parsing a product file never panics and that what
// parses survives a marshal/unmarshal round trip unchanged.
func FuzzProducts(f *testing.F) {
	addProductSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Products
		if err := json.Unmarshal(data, &p); err != nil {
			return
		}
		out, err := json.Marshal(p)
		require.NoError(t, err, "marshal what parsed")
		var again Products
		require.NoError(t, json.Unmarshal(out, &again), "re-parse %s", out)
		require.Equal(t, p, again, "round trip through %s", out)
	})
}

// FuzzDecodeGeneric checks the fast generic decoder against encoding/json:
// the same verdict on every input and the same value when it parses.
func FuzzDecodeGeneric(f *testing.F) {
	addProductSeeds(f)
	for _, s := range []string{`"a\u00e9\n"`, `[1, -0.5e+3, true, false, null, {}]`, `{"a":1}x`, `01`, `1.`, `"\x"`, "\"\t\"", `{"a" 1}`, ` [ ] `, strings.Repeat("[", 10001) + strings.Repeat("]", 10001)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeGeneric(data)
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var want any
		wantErr := dec.Decode(&want)
		if wantErr == nil && dec.More() {
			wantErr = errors.New("trailing data")
		}
		if wantErr == nil {
			if _, terr := dec.Token(); terr != io.EOF {
				wantErr = errors.New("trailing data")
			}
		}
		require.Equal(t, wantErr == nil, err == nil, "encoding/json: %v, decodeGeneric: %v", wantErr, err)
		if err == nil {
			require.Equal(t, want, got)
		}
	})
}

// FuzzValidate runs Validate on a fuzzed index and, when the index parses, a
// fuzzed product file at the first safe path it names: it must not panic and
// every problem must say what is wrong.
func FuzzValidate(f *testing.F) {
	index, products := fuzzSeedFiles(f)
	for _, p := range products {
		f.Add(index, p)
	}
	brokenIndexes := []string{
		``,
		`null`,
		`{}`,
		`{"format": "index:1.0", "index": null}`,
		`{"format": "index:1.0", "index": {"c": null}}`,
		`{"format": "index:1.0", "index": {"c": {"path": "../outside.json", "format": "products:1.0", "datatype": "image-ids"}}}`,
		`{"format": "index:1.0", "index": {"c": {"path": "/etc/passwd", "format": "products:1.0"}}}`,
		`{"format": "index:1.0", "index": {"c": {"path": "http://example.com/p.json"}}}`,
		`{"format": "index:1.0", "index": {"c": {"path": "streams/v1/c.json", "format": "products:1.0", "datatype": "image-downloads", "products": ["p"], "updated": "GMT"}}}`,
		`{"format": "index:1.0", "index": {"c": {"path": "streams/v1/index.json"}}}`,
		`{"format": "products:1.0", "index": [1, 2]}`,
		"{\"index\": {\"c\": {\"path\": \"streams/v1/a\\u0000b.json\"}}}",
	}
	for _, idx := range brokenIndexes {
		for _, p := range brokenProducts {
			f.Add([]byte(idx), []byte(p))
		}
	}
	f.Fuzz(func(t *testing.T, indexData, productData []byte) {
		dir := t.TempDir()
		const indexPath = "streams/v1/index.json"
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "streams", "v1"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, indexPath), indexData, 0o644))
		var idx Index
		if json.Unmarshal(indexData, &idx) == nil {
			for _, e := range idx.Index {
				if e.Path == indexPath || checkRelPath(e.Path) != nil || !filepath.IsLocal(e.Path) {
					continue
				}
				full := filepath.Join(dir, filepath.FromSlash(e.Path))
				if os.MkdirAll(filepath.Dir(full), 0o755) == nil && os.WriteFile(full, productData, 0o644) == nil {
					break
				}
			}
		}
		r, err := Validate(DirSource(dir), indexPath)
		if err != nil {
			return
		}
		require.NotNil(t, r)
		for _, p := range r.Problems {
			require.NotEmpty(t, p.Message, "problem without a message: %+v", p)
		}
		r.OK()
	})
}
