// Package simplestreams holds the simplestreams document types, their
// generation and parsing, and the rules MAAS applies to a stream.
package simplestreams

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// Document format names and data types used in streams.
const (
	FormatIndex    = "index:1.0"
	FormatProducts = "products:1.0"
	DataTypeIDs    = "image-ids"
	DataTypeDL     = "image-downloads"
)

// TimeFormat is the RFC 2822 form with a numeric zone that both MAAS
// generations accept for `updated` ("GMT" is rejected by 3.8).
const TimeFormat = "Mon, 02 Jan 2006 15:04:05 -0700"

// FormatTime renders t as an `updated` value in UTC.
func FormatTime(t time.Time) string {
	return t.UTC().Format(TimeFormat)
}

// Index is a streams/v1/index.json document.
type Index struct {
	Format  string                `json:"format"`
	Updated string                `json:"updated"`
	Index   map[string]IndexEntry `json:"index"`
}

// IndexEntry names one product file in an index.
type IndexEntry struct {
	DataType string   `json:"datatype"`
	Format   string   `json:"format"`
	Path     string   `json:"path"`
	Products []string `json:"products"`
	Updated  string   `json:"updated"`
}

// Products is a product file (products:1.0).
type Products struct {
	ContentID string             `json:"content_id"`
	DataType  string             `json:"datatype"`
	Format    string             `json:"format"`
	Updated   string             `json:"updated"`
	Products  map[string]Product `json:"products"`
}

// Product is one product: free-form string fields plus its versions.
type Product struct {
	Fields map[string]string
	// NullFields are written as JSON null: MAAS 3.8 wants some keys (such
	// as support_eol) present even when their value is unknown.
	NullFields []string
	Versions   map[string]Version
}

// Version is one version of a product: optional fields plus items.
type Version struct {
	Fields map[string]string
	Items  map[string]Item
}

// Item is one file of a version.
type Item struct {
	FType  string
	Path   string
	SHA256 string
	Size   int64
	// Extra holds the other string fields (kpackage, src_package, …).
	Extra map[string]string
}

// ProductIDs returns the ids of p's products, sorted.
func (p *Products) ProductIDs() []string {
	ids := make([]string, 0, len(p.Products))
	for id := range p.Products {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// LatestVersion returns the greatest version name as a plain string, which
// is how MAAS and sstream pick the newest version.
func (p Product) LatestVersion() string {
	latest := ""
	for name := range p.Versions {
		if name > latest {
			latest = name
		}
	}
	return latest
}

// MarshalJSON flattens the fields next to "versions".
func (p Product) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(p.Fields)+len(p.NullFields)+1)
	for _, k := range p.NullFields {
		m[k] = nil
	}
	for k, v := range p.Fields {
		m[k] = v
	}
	m["versions"] = p.Versions
	return json.Marshal(m)
}

// UnmarshalJSON reads a product tolerantly: non-string scalar fields are
// kept in their JSON text form, nested objects other than versions are dropped.
func (p *Product) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	p.Fields = make(map[string]string, len(raw))
	p.Versions = nil
	for k, v := range raw {
		if k == "versions" {
			if err := json.Unmarshal(v, &p.Versions); err != nil {
				return fmt.Errorf("versions: %w", err)
			}
			continue
		}
		if s, ok := scalarString(v); ok {
			p.Fields[k] = s
		}
	}
	return nil
}

// MarshalJSON flattens the fields next to "items".
func (v Version) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(v.Fields)+1)
	for k, val := range v.Fields {
		m[k] = val
	}
	m["items"] = v.Items
	return json.Marshal(m)
}

// UnmarshalJSON reads a version tolerantly, like Product.
func (v *Version) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	v.Fields = make(map[string]string)
	v.Items = nil
	for k, val := range raw {
		if k == "items" {
			if err := json.Unmarshal(val, &v.Items); err != nil {
				return fmt.Errorf("items: %w", err)
			}
			continue
		}
		if s, ok := scalarString(val); ok {
			v.Fields[k] = s
		}
	}
	return nil
}

// MarshalJSON writes size as a JSON integer: a string crashes sstream-mirror.
func (it Item) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(it.Extra)+4)
	for k, v := range it.Extra {
		m[k] = v
	}
	m["ftype"] = it.FType
	m["path"] = it.Path
	m["sha256"] = it.SHA256
	m["size"] = it.Size
	return json.Marshal(m)
}

// UnmarshalJSON reads an item; a size that is not a JSON integer is an error.
func (it *Item) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*it = Item{Extra: make(map[string]string)}
	for k, v := range raw {
		switch k {
		case "size":
			if err := json.Unmarshal(v, &it.Size); err != nil {
				return fmt.Errorf("size %s is not an integer", string(v))
			}
		case "ftype", "path", "sha256":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("%s is not a string", k)
			}
			switch k {
			case "ftype":
				it.FType = s
			case "path":
				it.Path = s
			default:
				it.SHA256 = s
			}
		default:
			if s, ok := scalarString(v); ok {
				it.Extra[k] = s
			}
		}
	}
	return nil
}

// scalarString returns a JSON scalar as text; objects, arrays and null are skipped.
func scalarString(v json.RawMessage) (string, bool) {
	if len(v) == 0 {
		return "", false
	}
	switch v[0] {
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", false
		}
		return s, true
	case '{', '[', 'n':
		return "", false
	default:
		return string(v), true
	}
}
