package simplestreams

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// The product, version and item types read themselves tolerantly. Doing that
// with an UnmarshalJSON per level made encoding/json re-scan every product,
// version and item once per level (a 20,000-product catalog took seconds),
// so a document is decoded once into generic values, with numbers kept in
// their JSON text, and converted from there.

// UnmarshalJSON reads a product file in one pass; see the types for the
// rules. Each product is converted as soon as it is parsed, so a large
// catalog never exists whole as generic values (that doubled the peak RSS).
func (p *Products) UnmarshalJSON(data []byte) error {
	var products map[string]Product
	d := genericDecoder{data: data, stream: func(id string, v any) error {
		var prod Product
		if err := prod.from(v); err != nil {
			return fmt.Errorf("products: product %s: %w", id, err)
		}
		if products == nil {
			products = make(map[string]Product)
		}
		products[id] = prod
		return nil
	}}
	v, err := d.document()
	if err != nil || v == nil {
		return err // null leaves p as it is, as encoding/json does
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("a products document is a JSON object, not %s", jsonKind(v))
	}
	for k, val := range m {
		var dst *string
		switch k {
		case "content_id":
			dst = &p.ContentID
		case "datatype":
			dst = &p.DataType
		case "format":
			dst = &p.Format
		case "updated":
			dst = &p.Updated
		case "products":
			if _, ok := val.(streamedObject); ok {
				p.Products = products
				if p.Products == nil {
					p.Products = map[string]Product{}
				}
			} else if err := p.productsFrom(val); err != nil {
				return fmt.Errorf("products: %w", err)
			}
			continue
		default:
			continue
		}
		s, ok := val.(string)
		if !ok && val != nil {
			return fmt.Errorf("%s is %s, not a string", k, jsonKind(val))
		}
		*dst = s
	}
	return nil
}

func (p *Products) productsFrom(v any) error {
	m, ok := v.(map[string]any)
	if !ok && v != nil {
		return fmt.Errorf("want a JSON object, not %s", jsonKind(v))
	}
	var err error
	p.Products, err = mapFrom[Product]("product", m)
	return err
}

// UnmarshalJSON reads a product tolerantly: non-string scalar fields are
// kept in their JSON text form, nested objects other than versions are dropped.
func (p *Product) UnmarshalJSON(data []byte) error { return unmarshalGeneric(data, p.from) }

func (p *Product) from(v any) error {
	fields, versions, err := splitObject("a product", v, "versions")
	if err != nil {
		return err
	}
	p.Fields = fields
	p.Versions, err = mapFrom[Version]("versions", versions)
	return err
}

// mapFrom converts each value of m (nil stays nil).
func mapFrom[T any, PT interface {
	*T
	from(any) error
}](what string, m map[string]any) (map[string]T, error) {
	if m == nil {
		return nil, nil
	}
	out := make(map[string]T, len(m))
	for k, v := range m {
		var t T
		if err := PT(&t).from(v); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", what, k, err)
		}
		out[k] = t
	}
	return out, nil
}

// splitObject reads an object (null reads as empty) of scalar fields and
// one nested object under key nested, which may be absent or null.
func splitObject(what string, v any, nested string) (fields map[string]string, inner map[string]any, err error) {
	m, ok := v.(map[string]any)
	if !ok && v != nil {
		return nil, nil, fmt.Errorf("%s is a JSON object, not %s", what, jsonKind(v))
	}
	fields = make(map[string]string, len(m))
	for k, val := range m {
		if k != nested {
			if s, ok := scalarText(val); ok {
				fields[k] = s
			}
			continue
		}
		if val == nil {
			continue
		}
		if inner, ok = val.(map[string]any); !ok {
			return nil, nil, fmt.Errorf("%s: want a JSON object, not %s", nested, jsonKind(val))
		}
	}
	return fields, inner, nil
}

// UnmarshalJSON reads a version tolerantly, like Product.
func (v *Version) UnmarshalJSON(data []byte) error { return unmarshalGeneric(data, v.from) }

func (v *Version) from(g any) error {
	fields, items, err := splitObject("a version", g, "items")
	if err != nil {
		return err
	}
	v.Fields = fields
	v.Items, err = mapFrom[Item]("items", items)
	return err
}

// UnmarshalJSON reads an item; a size that is not a JSON integer is an error.
func (it *Item) UnmarshalJSON(data []byte) error { return unmarshalGeneric(data, it.from) }

func (it *Item) from(v any) error {
	m, ok := v.(map[string]any)
	if !ok && v != nil {
		return fmt.Errorf("an item is a JSON object, not %s", jsonKind(v))
	}
	*it = Item{Extra: make(map[string]string)}
	for k, val := range m {
		switch k {
		case "size":
			if val == nil {
				continue
			}
			n, ok := val.(json.Number)
			size, err := strconv.ParseInt(string(n), 10, 64)
			if !ok || err != nil {
				return fmt.Errorf("size %s is not an integer", jsonText(val))
			}
			it.Size = size
		case "ftype", "path", "sha256":
			s, ok := val.(string)
			if !ok && val != nil {
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
			if s, ok := scalarText(val); ok {
				it.Extra[k] = s
			}
		}
	}
	return nil
}

// unmarshalGeneric decodes data and hands the value to from.
func unmarshalGeneric(data []byte, from func(any) error) error {
	v, err := decodeGeneric(data)
	if err != nil {
		return err
	}
	return from(v)
}

// decodeGeneric parses one JSON value into maps, slices, strings, bools,
// nil and json.Number (so 1.0 stays "1.0" and 1e400 does not overflow).
// Its scanner is a plain loop over the bytes, several times faster than
// encoding/json's per-byte state machine; strings with escapes or invalid
// UTF-8 go through encoding/json, so every value reads as it would there;
// anything that is not valid JSON is an error, as in encoding/json.
func decodeGeneric(data []byte) (any, error) {
	d := genericDecoder{data: data}
	return d.document()
}

// document parses the whole input as one JSON value.
func (d *genericDecoder) document() (any, error) {
	d.space()
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	d.space()
	if d.pos != len(d.data) {
		return nil, d.errorf("trailing data")
	}
	return v, nil
}

// maxDepth is encoding/json's nesting limit: a hostile document of
// brackets must not exhaust the stack.
const maxDepth = 10000

type genericDecoder struct {
	data  []byte
	pos   int
	depth int
	// stream, when set, receives the members of the top-level object's
	// "products" object one at a time, instead of a map holding them all.
	stream func(key string, v any) error
	// interned holds the short strings seen so far, for intern.
	interned map[string]string
}

// maxInterned is the longest string intern shares: keys and values such as
// "arch" or "amd64" repeat in every product, hashes and paths do not.
const maxInterned = 32

// intern returns b as a string, one copy per distinct short string in the
// document: a 20,000-product catalog holds a few hundred distinct keys and
// values a million times over.
func (d *genericDecoder) intern(b []byte) string {
	if len(b) > maxInterned {
		return string(b)
	}
	if s, ok := d.interned[string(b)]; ok {
		return s
	}
	if d.interned == nil {
		d.interned = make(map[string]string)
	}
	s := string(b)
	d.interned[s] = s
	return s
}

// streamedObject stands for an object whose members went to stream.
type streamedObject struct{}

func (d *genericDecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", d.pos, fmt.Sprintf(format, args...))
}

func (d *genericDecoder) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *genericDecoder) value() (any, error) {
	if d.pos >= len(d.data) {
		return nil, d.errorf("unexpected end")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		return d.str()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	default:
		return nil, d.errorf("unexpected %q", c)
	}
}

func (d *genericDecoder) literal(word string) error {
	if !bytes.HasPrefix(d.data[d.pos:], []byte(word)) {
		return d.errorf("want %s", word)
	}
	d.pos += len(word)
	return nil
}

func (d *genericDecoder) number() (any, error) {
	start := d.pos
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		if (c < '0' || c > '9') && c != '-' && c != '+' && c != '.' && c != 'e' && c != 'E' {
			break
		}
		d.pos++
	}
	n := string(d.data[start:d.pos])
	if !json.Valid([]byte(n)) {
		return nil, d.errorf("bad number %q", n)
	}
	return json.Number(n), nil
}

func (d *genericDecoder) str() (string, error) {
	start := d.pos
	d.pos++ // the opening quote
	plain := true
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			raw := d.data[start:d.pos]
			if plain {
				return d.intern(raw[1 : len(raw)-1]), nil
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", d.errorf("bad string: %v", err)
			}
			return s, nil
		case c == '\\':
			plain = false
			d.pos += 2
		case c < 0x20:
			return "", d.errorf("control character in string")
		case c >= utf8.RuneSelf:
			plain = false
			d.pos++
		default:
			d.pos++
		}
	}
	return "", d.errorf("unterminated string")
}

func (d *genericDecoder) enter() error {
	d.depth++
	if d.depth > maxDepth {
		return d.errorf("nested more than %d deep", maxDepth)
	}
	return nil
}

func (d *genericDecoder) object() (any, error) {
	m := make(map[string]any)
	err := d.members(func(k string, v any) error {
		m[k] = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// members parses an object, handing each member to fn in document order.
func (d *genericDecoder) members(fn func(k string, v any) error) error {
	if err := d.enter(); err != nil {
		return err
	}
	defer func() { d.depth-- }()
	d.pos++ // {
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return nil
	}
	for {
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return d.errorf("want a key")
		}
		k, err := d.str()
		if err != nil {
			return err
		}
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return d.errorf("want ':'")
		}
		d.pos++
		d.space()
		var v any
		if d.stream != nil && d.depth == 1 && k == "products" && d.pos < len(d.data) && d.data[d.pos] == '{' {
			err, v = d.members(d.stream), streamedObject{}
		} else {
			v, err = d.value()
		}
		if err != nil {
			return err
		}
		if err := fn(k, v); err != nil {
			return err
		}
		d.space()
		if d.pos >= len(d.data) {
			return d.errorf("unexpected end")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			return nil
		default:
			return d.errorf("want ',' or '}'")
		}
	}
}

func (d *genericDecoder) array() (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer func() { d.depth-- }()
	d.pos++ // [
	a := []any{}
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return a, nil
	}
	for {
		d.space()
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		d.space()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unexpected end")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return a, nil
		default:
			return nil, d.errorf("want ',' or ']'")
		}
	}
}

// scalarText returns a JSON scalar as text; objects, arrays and null are skipped.
func scalarText(v any) (string, bool) {
	switch s := v.(type) {
	case string:
		return s, true
	case json.Number:
		return string(s), true
	case bool:
		return strconv.FormatBool(s), true
	default:
		return "", false
	}
}

// jsonText renders a generic value back as JSON, for error messages.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// jsonKind names a generic value's JSON type, for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	default:
		return "a number"
	}
}
