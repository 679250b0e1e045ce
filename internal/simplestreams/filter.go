package simplestreams

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Filter operators, as sstream-query and sstream-mirror spell them.
const (
	OpEqual     = "="
	OpNotEqual  = "!="
	OpSearch    = "~"
	OpNotSearch = "!~"
)

const (
	filterSyntax  = "KEY=VALUE, KEY!=VALUE, KEY~REGEX or KEY!~REGEX"
	re2Limitation = "Go's RE2 syntax has no backreferences, lookahead, lookbehind or \\Z"
)

// Filter is one filter expression such as "arch=amd64" or "release~(jammy|noble)".
//
// The semantics are those of Canonical's simplestreams library (filters.py,
// ItemFilter), which sstream-query, sstream-mirror and MAAS 3.7 use:
//   - "=" and "!=" compare the whole value as a string;
//   - "~" and "!~" search the value for the regular expression anywhere in it
//     (Python's re.search, not a full match: "release~jammy" holds for "jammy-x");
//   - a missing key reads as the empty string, so "arch!=amd64" holds for a
//     product without arch and "arch=" holds only for one with no (or an empty) arch.
//
// Regexps are Go's RE2: Python-only syntax (backreferences, lookaround, \Z)
// is refused at parse time; \d, \w and \b are ASCII-only here, Unicode in Python.
type Filter struct {
	Key, Op, Value string
	re             *regexp.Regexp // compiled at parse time for "~" and "!~"
}

// ParseFilter parses one expression the way the library does: the key is the
// leading run of letters, digits and underscores (Python's \w+), spaces may
// surround the operator, the first operator after the key wins (so in
// "a=b~c" the value is "b~c"), and the value is the rest of the expression,
// trailing spaces included.
func ParseFilter(expr string) (Filter, error) {
	if expr == "" {
		return Filter{}, fmt.Errorf("filter %q: empty expression; want %s", expr, filterSyntax)
	}
	keyEnd := wordPrefixLen(expr)
	key := expr[:keyEnd]
	rest := strings.TrimLeft(expr[keyEnd:], " ")
	op := leadingOperator(rest)
	switch {
	case op == "" && key == "":
		return Filter{}, fmt.Errorf("filter %q: no key: an expression starts with a key of letters, digits or underscores; want %s", expr, filterSyntax)
	case op == "" && rest == "":
		return Filter{}, fmt.Errorf("filter %q: no operator after key %q; want %s", expr, key, filterSyntax)
	case op == "":
		return Filter{}, fmt.Errorf("filter %q: no operator after key %q (found %q): keys hold only letters, digits and underscores; want %s",
			expr, key, rest, filterSyntax)
	case key == "":
		return Filter{}, fmt.Errorf("filter %q: empty key before %q", expr, op)
	}
	value := strings.TrimLeft(rest[len(op):], " ")
	// The library's pattern ends "(.*)[ ]*$" without DOTALL: "." stops at a
	// newline and "$" also matches before one final newline, so only a single
	// trailing newline is allowed (and dropped).
	if i := strings.IndexByte(value, '\n'); i >= 0 {
		if i != len(value)-1 {
			return Filter{}, fmt.Errorf("filter %q: the value contains a newline", expr)
		}
		value = value[:i]
	}
	f := Filter{Key: key, Op: op, Value: value}
	if op == OpSearch || op == OpNotSearch {
		re, err := regexp.Compile(value)
		if err != nil {
			return Filter{}, fmt.Errorf("filter %q: bad regular expression %q: %s", expr, value, describeRegexpError(err))
		}
		f.re = re
	}
	return f, nil
}

// wordPrefixLen returns the byte length of s's leading run of word characters,
// approximating Python 3's Unicode \w: letters, numbers and underscore.
func wordPrefixLen(s string) int {
	n := 0
	for n < len(s) {
		r, size := utf8.DecodeRuneInString(s[n:]) // invalid UTF-8 gives RuneError, not a word character
		if r != '_' && !unicode.IsLetter(r) && !unicode.IsNumber(r) {
			break
		}
		n += size
	}
	return n
}

// leadingOperator returns the operator s starts with, or "".
func leadingOperator(s string) string {
	for _, op := range []string{OpNotEqual, OpNotSearch, OpEqual, OpSearch} {
		if strings.HasPrefix(s, op) {
			return op
		}
	}
	return ""
}

// describeRegexpError explains an RE2 error, pointing out Python-only syntax:
// RE2 reports "(?=" as a bad Perl operator, "\1" and "\Z" as bad escapes and
// "(?<!" or "(?<=" as a bad named capture.
func describeRegexpError(err error) string {
	var se *syntax.Error
	if errors.As(err, &se) && (se.Code == syntax.ErrInvalidPerlOp || se.Code == syntax.ErrInvalidEscape || se.Code == syntax.ErrInvalidNamedCapture) {
		return fmt.Sprintf("%v (%s)", err, re2Limitation)
	}
	return err.Error()
}

// String renders f as an expression that ParseFilter parses back to f.
func (f Filter) String() string { return f.Key + f.Op + f.Value }

// Holds reports whether f holds for value; pass "" for a missing key.
func (f Filter) Holds(value string) bool {
	switch f.Op {
	case OpEqual:
		return value == f.Value
	case OpNotEqual:
		return value != f.Value
	case OpSearch:
		found, ok := f.search(value)
		return ok && found
	case OpNotSearch:
		found, ok := f.search(value)
		return ok && !found
	}
	return false // an unknown operator never holds: fail closed
}

// search runs f's regexp; ok is false for an invalid one.
func (f Filter) search(value string) (found, ok bool) {
	re := f.re
	if re == nil {
		// A Filter built by hand rather than parsed: compile now (slow path).
		var err error
		if re, err = regexp.Compile(f.Value); err != nil {
			return false, false
		}
	}
	return re.MatchString(value), true
}

// Filters are filter expressions that must all hold (AND); none matches everything.
type Filters []Filter

// ParseFilters parses expressions; each string may hold several expressions
// separated by white space, as typed in the portal's single text field
// ("arch=amd64 release~(jammy|noble)"). An expression therefore cannot hold a
// space here (spell one \s or \x20 in a regexp); ParseFilter can. All errors
// are reported, joined.
func ParseFilters(exprs ...string) (Filters, error) {
	var fs Filters
	var errs []error
	for _, s := range exprs {
		for _, expr := range strings.Fields(s) {
			f, err := ParseFilter(expr)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			fs = append(fs, f)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return fs, nil
}

// Match reports whether every filter holds for the fields given by get (get
// returns "", false for a missing key, which reads as "").
//
// sstream-mirror and sstream-query filter each item on a flattened view: the
// product file's top-level fields, then the product's, the version's and the
// item's fields (later ones win), plus product_name, version_name and
// item_name. Only string and number fields take part; a JSON null counts as missing.
func (fs Filters) Match(get func(key string) (string, bool)) bool {
	for i := range fs {
		v, ok := get(fs[i].Key)
		if !ok {
			v = ""
		}
		if !fs[i].Holds(v) {
			return false
		}
	}
	return true
}

// MatchMap reports whether every filter holds for fields; a missing key reads as "".
func (fs Filters) MatchMap(fields map[string]string) bool {
	for i := range fs {
		if !fs[i].Holds(fields[fs[i].Key]) {
			return false
		}
	}
	return true
}

// String renders fs space-separated, in a form ParseFilters parses back to fs
// (when no value holds white space).
func (fs Filters) String() string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f.String()
	}
	return strings.Join(parts, " ")
}
