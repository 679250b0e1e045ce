package simplestreams

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// mapProducts marshals as the stream types did before they wrote
// themselves: a map per product, version and item.
type mapProducts Products

func (p mapProducts) MarshalJSON() ([]byte, error) {
	products := map[string]any(nil)
	if p.Products != nil {
		products = map[string]any{}
		for id, prod := range p.Products {
			products[id] = mapProduct(prod)
		}
	}
	return json.Marshal(struct {
		ContentID string         `json:"content_id"`
		DataType  string         `json:"datatype"`
		Format    string         `json:"format"`
		Updated   string         `json:"updated"`
		Products  map[string]any `json:"products"`
	}{p.ContentID, p.DataType, p.Format, p.Updated, products})
}

func mapProduct(p Product) map[string]any {
	m := map[string]any{}
	for _, k := range p.NullFields {
		m[k] = nil
	}
	for k, v := range p.Fields {
		m[k] = v
	}
	versions := map[string]any(nil)
	if p.Versions != nil {
		versions = map[string]any{}
		for name, v := range p.Versions {
			vm := map[string]any{}
			for k, val := range v.Fields {
				vm[k] = val
			}
			items := map[string]any(nil)
			if v.Items != nil {
				items = map[string]any{}
				for key, it := range v.Items {
					im := map[string]any{}
					for k, val := range it.Extra {
						im[k] = val
					}
					im["ftype"], im["path"], im["sha256"], im["size"] = it.FType, it.Path, it.SHA256, it.Size
					items[key] = im
				}
			}
			vm["items"] = items
			versions[name] = vm
		}
	}
	m["versions"] = versions
	return m
}

// The one-pass writer produces exactly the bytes of the map-based one, so
// published documents (and their content-hash names) do not change.
func TestMarshalMatchesMapEncoding(t *testing.T) {
	docs := map[string]Products{
		"tricky": {ContentID: "c<&>\"\\", Products: map[string]Product{
			"p\u2028<": {
				Fields:     map[string]string{"versions": "shadowed", "a": "\x01\xff", "é": "ü", "support_eol": "2030"},
				NullFields: []string{"support_eol", "support_esm_eol", "support_esm_eol"},
				Versions: map[string]Version{
					"v1": {Fields: map[string]string{"items": "shadowed", "label": "<b>", "lt": "a<b"}, Items: map[string]Item{
						"k": {FType: "squashfs", Path: "a/b&c", SHA256: "00", Size: -1, Extra: map[string]string{"size": "x", "kpackage": "linux"}},
					}},
					"v2": {},
					"v3": {Items: map[string]Item{}},
				},
			},
			"empty":       {},
			"no versions": {Versions: map[string]Version{}},
		}},
		"nil products":   {Format: FormatProducts},
		"empty products": {Products: map[string]Product{}},
	}
	entries, err := os.ReadDir(fuzzSeedDir)
	require.NoError(t, err)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || e.Name() == "index.json" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(fuzzSeedDir, e.Name()))
		require.NoError(t, err)
		var p Products
		require.NoError(t, json.Unmarshal(data, &p))
		docs[e.Name()] = p
	}
	for _, s := range brokenProducts {
		var p Products
		if json.Unmarshal([]byte(s), &p) == nil {
			docs[s] = p
		}
	}
	for name, p := range docs {
		t.Run(name, func(t *testing.T) {
			want, err := json.MarshalIndent(mapProducts(p), "", " ")
			require.NoError(t, err)
			got, err := json.MarshalIndent(&p, "", " ")
			require.NoError(t, err)
			require.Equal(t, string(want), string(got))
			// Without encoding/json's pass over the result, too.
			want, err = mapProducts(p).MarshalJSON()
			require.NoError(t, err)
			got, err = p.MarshalJSON()
			require.NoError(t, err)
			require.Equal(t, string(want), string(got))
			// Indented in the same pass, and from products encoded apart.
			want, err = json.MarshalIndent(mapProducts(p), "", " ")
			require.NoError(t, err)
			require.Equal(t, string(want), string(p.MarshalIndented()))
			got = p.AppendIndented(nil, func(id string) []byte { return p.Products[id].AppendIndented(nil) })
			require.Equal(t, string(want), string(got))
		})
	}
}
