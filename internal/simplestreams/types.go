// Package simplestreams holds the simplestreams document types, their
// generation and parsing, and the rules MAAS applies to a stream.
package simplestreams

import (
	"maps"
	"slices"
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
func (p *Products) ProductIDs() []string { return slices.Sorted(maps.Keys(p.Products)) }

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

// MarshalJSON flattens the fields next to "versions"; fields in
// NullFields without a value are written as null.
func (p Product) MarshalJSON() ([]byte, error) { return p.appendJSON(nil, compact, 0), nil }

// MarshalJSON flattens the fields next to "items".
func (v Version) MarshalJSON() ([]byte, error) { return v.appendJSON(nil, compact, 0), nil }

// MarshalJSON writes size as a JSON integer: a string crashes sstream-mirror.
func (it Item) MarshalJSON() ([]byte, error) { return it.appendJSON(nil, compact, 0), nil }
