// Package simplestreams holds the simplestreams document types, their
// generation and parsing, and the rules MAAS applies to a stream.
package simplestreams

import (
	"encoding/json"
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

// MarshalJSON flattens the fields next to "items".
func (v Version) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(v.Fields)+1)
	for k, val := range v.Fields {
		m[k] = val
	}
	m["items"] = v.Items
	return json.Marshal(m)
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
