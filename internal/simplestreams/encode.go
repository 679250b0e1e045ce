package simplestreams

import (
	"encoding/json"
	"slices"
	"strconv"
)

// The stream types write themselves in one pass, byte for byte what
// encoding/json wrote from a map per object (sorted keys, its escaping):
// that way encoding/json built a map for every product, version and item
// and re-scanned each nested result, most of publishing 5,000 versions.

// MarshalJSON writes a product file, its fields in struct order.
func (p Products) MarshalJSON() ([]byte, error) {
	return p.appendDoc(make([]byte, 0, 512*len(p.Products)+256), compact, nil), nil
}

// MarshalIndented writes a product file as json.MarshalIndent(p, "", " ")
// does, without encoding it compact first and indenting that again.
func (p Products) MarshalIndented() []byte {
	return p.appendDoc(make([]byte, 0, 800*len(p.Products)+256), indented, nil)
}

// AppendIndented writes p as MarshalIndented does, taking each product's
// bytes from product: what Product.AppendIndented wrote for it, maybe in
// an earlier publish. Every id of p.Products must have bytes.
func (p Products) AppendIndented(b []byte, product func(id string) []byte) []byte {
	return p.appendDoc(b, indented, product)
}

// AppendIndented writes p as it appears inside an indented product file.
func (p Product) AppendIndented(b []byte) []byte {
	return p.appendJSON(b, indented, productDepth)
}

// productDepth is the nesting level of a product in a product file.
const productDepth = 2

func (p Products) appendDoc(b []byte, f format, product func(id string) []byte) []byte {
	b = append(b, '{')
	for _, field := range [...][2]string{{"content_id", p.ContentID}, {"datatype", p.DataType}, {"format", p.Format}, {"updated", p.Updated}} {
		b = f.key(b, 1, field[0])
		b = appendString(b, field[1])
		b = append(b, ',')
	}
	b = f.key(b, 1, "products")
	b = appendMap(b, f, 1, p.Products, func(b []byte, id string, prod Product) []byte {
		if product != nil {
			return append(b, product(id)...)
		}
		return prod.appendJSON(b, f, productDepth)
	})
	b = f.newline(b, 0)
	return append(b, '}')
}

func (p Product) appendJSON(b []byte, f format, depth int) []byte {
	keys := make([]string, 0, len(p.Fields)+len(p.NullFields)+1)
	for k := range p.Fields {
		keys = append(keys, k)
	}
	for _, k := range p.NullFields {
		if _, ok := p.Fields[k]; !ok {
			keys = append(keys, k)
		}
	}
	keys = append(keys, "versions")
	return appendObject(b, f, depth, keys, func(b []byte, k string) []byte {
		if k == "versions" {
			return appendMap(b, f, depth+1, p.Versions, func(b []byte, _ string, v Version) []byte { return v.appendJSON(b, f, depth+2) })
		}
		if v, ok := p.Fields[k]; ok {
			return appendString(b, v)
		}
		return append(b, "null"...)
	})
}

func (v Version) appendJSON(b []byte, f format, depth int) []byte {
	keys := make([]string, 0, len(v.Fields)+1)
	for k := range v.Fields {
		keys = append(keys, k)
	}
	keys = append(keys, "items")
	return appendObject(b, f, depth, keys, func(b []byte, k string) []byte {
		if k == "items" {
			return appendMap(b, f, depth+1, v.Items, func(b []byte, _ string, it Item) []byte { return it.appendJSON(b, f, depth+2) })
		}
		return appendString(b, v.Fields[k])
	})
}

func (it Item) appendJSON(b []byte, f format, depth int) []byte {
	keys := make([]string, 0, len(it.Extra)+4)
	for k := range it.Extra {
		keys = append(keys, k)
	}
	keys = append(keys, "ftype", "path", "sha256", "size")
	return appendObject(b, f, depth, keys, func(b []byte, k string) []byte {
		switch k {
		case "ftype":
			return appendString(b, it.FType)
		case "path":
			return appendString(b, it.Path)
		case "sha256":
			return appendString(b, it.SHA256)
		case "size":
			return strconv.AppendInt(b, it.Size, 10)
		}
		return appendString(b, it.Extra[k])
	})
}

// format is compact (MarshalJSON) or indented as json.MarshalIndent with
// no prefix and a one-space indent (the published files).
type format bool

const (
	compact  format = false
	indented format = true
)

// newline starts a line at depth, in the indented format.
func (f format) newline(b []byte, depth int) []byte {
	if f == compact {
		return b
	}
	b = append(b, '\n')
	for range depth {
		b = append(b, ' ')
	}
	return b
}

// key writes an object key at depth and its colon.
func (f format) key(b []byte, depth int, k string) []byte {
	b = f.newline(b, depth)
	b = appendString(b, k)
	if f == indented {
		return append(b, ':', ' ')
	}
	return append(b, ':')
}

// appendObject writes an object at depth of the keys, sorted and each once
// (a key listed twice is a field that a fixed member overrides), with value
// writing each value.
func appendObject(b []byte, f format, depth int, keys []string, value func([]byte, string) []byte) []byte {
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if len(keys) == 0 {
		return append(b, '{', '}')
	}
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = f.key(b, depth+1, k)
		b = value(b, k)
	}
	b = f.newline(b, depth)
	return append(b, '}')
}

// appendMap writes m at depth as an object with sorted keys, null when m
// is nil.
func appendMap[V any](b []byte, f format, depth int, m map[string]V, value func([]byte, string, V) []byte) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return appendObject(b, f, depth, keys, func(b []byte, k string) []byte { return value(b, k, m[k]) })
}

// appendString writes s as encoding/json does: printable ASCII as it is,
// anything else (quotes, HTML characters, control and non-ASCII bytes)
// through encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
