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
	b := make([]byte, 0, 512*len(p.Products)+256)
	b = append(b, `{"content_id":`...)
	b = appendString(b, p.ContentID)
	b = append(b, `,"datatype":`...)
	b = appendString(b, p.DataType)
	b = append(b, `,"format":`...)
	b = appendString(b, p.Format)
	b = append(b, `,"updated":`...)
	b = appendString(b, p.Updated)
	b = append(b, `,"products":`...)
	b = appendMap(b, p.Products, Product.appendJSON)
	return append(b, '}'), nil
}

func (p Product) appendJSON(b []byte) []byte {
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
	return appendObject(b, keys, func(b []byte, k string) []byte {
		if k == "versions" {
			return appendMap(b, p.Versions, Version.appendJSON)
		}
		if v, ok := p.Fields[k]; ok {
			return appendString(b, v)
		}
		return append(b, "null"...)
	})
}

func (v Version) appendJSON(b []byte) []byte {
	keys := make([]string, 0, len(v.Fields)+1)
	for k := range v.Fields {
		keys = append(keys, k)
	}
	keys = append(keys, "items")
	return appendObject(b, keys, func(b []byte, k string) []byte {
		if k == "items" {
			return appendMap(b, v.Items, Item.appendJSON)
		}
		return appendString(b, v.Fields[k])
	})
}

func (it Item) appendJSON(b []byte) []byte {
	keys := make([]string, 0, len(it.Extra)+4)
	for k := range it.Extra {
		keys = append(keys, k)
	}
	keys = append(keys, "ftype", "path", "sha256", "size")
	return appendObject(b, keys, func(b []byte, k string) []byte {
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

// appendObject writes an object of the keys, sorted and each once (a key
// listed twice is a field that a fixed member overrides), with value
// writing each value.
func appendObject(b []byte, keys []string, value func([]byte, string) []byte) []byte {
	slices.Sort(keys)
	keys = slices.Compact(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = value(b, k)
	}
	return append(b, '}')
}

// appendMap writes m as an object with sorted keys, null when m is nil.
func appendMap[V any](b []byte, m map[string]V, value func(V, []byte) []byte) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return appendObject(b, keys, func(b []byte, k string) []byte { return value(m[k], b) })
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
