package simplestreams

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseFilter(t *testing.T) {
	tests := []struct {
		expr             string
		key, op, value   string
		wantSearchRegexp bool
	}{
		{expr: "arch=amd64", key: "arch", op: "=", value: "amd64"},
		{expr: "arch!=amd64", key: "arch", op: "!=", value: "amd64"},
		{expr: "release~(jammy|noble)", key: "release", op: "~", value: "(jammy|noble)", wantSearchRegexp: true},
		{expr: "os!~^grub", key: "os", op: "!~", value: "^grub", wantSearchRegexp: true},
		{expr: "os~(grub*|pxelinux)", key: "os", op: "~", value: "(grub*|pxelinux)", wantSearchRegexp: true},
		// The first operator after the key wins; the rest is the value.
		{expr: "a=b~c", key: "a", op: "=", value: "b~c"},
		{expr: "a~b=c", key: "a", op: "~", value: "b=c", wantSearchRegexp: true},
		{expr: "a!=b=c", key: "a", op: "!=", value: "b=c"},
		{expr: "a=!b", key: "a", op: "=", value: "!b"},
		{expr: "a==b", key: "a", op: "=", value: "=b"},
		{expr: "a!~!~", key: "a", op: "!~", value: "!~", wantSearchRegexp: true},
		// Spaces around the operator are skipped, trailing spaces are kept.
		{expr: "arch = amd64", key: "arch", op: "=", value: "amd64"},
		{expr: "arch   !~  x", key: "arch", op: "!~", value: "x", wantSearchRegexp: true},
		{expr: "arch=amd64  ", key: "arch", op: "=", value: "amd64  "},
		{expr: "release_title~22.04 LTS", key: "release_title", op: "~", value: "22.04 LTS", wantSearchRegexp: true},
		// One final newline is dropped, as Python's "$" matches before it.
		{expr: "arch=amd64\n", key: "arch", op: "=", value: "amd64"},
		{expr: "arch=", key: "arch", op: "=", value: ""},
		{expr: "arch~", key: "arch", op: "~", value: "", wantSearchRegexp: true},
		{expr: "product_name~ga-22", key: "product_name", op: "~", value: "ga-22", wantSearchRegexp: true},
		{expr: "1=2", key: "1", op: "=", value: "2"},
		{expr: "ärch_2=x", key: "ärch_2", op: "=", value: "x"},
		{expr: "subarches~(^|,)hwe-22\\.04(,|$)", key: "subarches", op: "~", value: "(^|,)hwe-22\\.04(,|$)", wantSearchRegexp: true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			f, err := ParseFilter(tt.expr)
			require.NoError(t, err)
			assert.Equal(t, tt.key, f.Key)
			assert.Equal(t, tt.op, f.Op)
			assert.Equal(t, tt.value, f.Value)
			assert.Equal(t, tt.wantSearchRegexp, f.re != nil, "regexp compiled at parse time")
		})
	}
}

func TestParseFilterErrors(t *testing.T) {
	tests := []struct {
		name, expr string
		wantInErr  []string
	}{
		{"empty", "", []string{`filter ""`, "empty expression"}},
		{"key only", "arch", []string{`filter "arch"`, `no operator after key "arch"`}},
		{"no operator", "arch amd64", []string{`no operator after key "arch"`, `found "amd64"`}},
		{"bang without operator", "arch!amd64", []string{`no operator after key "arch"`}},
		{"empty key", "=amd64", []string{`filter "=amd64"`, `empty key before "="`}},
		{"empty key negated", "!~x", []string{`empty key before "!~"`}},
		// The library's key is \w+: "bootloader-type" cannot be filtered on.
		{"dash in key", "bootloader-type=uefi", []string{`no operator after key "bootloader"`, `found "-type=uefi"`, "letters, digits and underscores"}},
		{"leading space", " arch=amd64", []string{"no key"}},
		{"tab before operator", "arch\t=amd64", []string{"no operator"}},
		{"inner newline", "arch=amd64\nx", []string{"newline"}},
		{"two trailing newlines", "arch=amd64\n\n", []string{"newline"}},
		{"bad regexp", "release~(jammy", []string{`filter "release~(jammy"`, `bad regular expression "(jammy"`, "missing closing )"}},
		{"backreference", `release~(\w)\1`, []string{"bad regular expression", "RE2", "backreferences"}},
		{"lookahead", "release~jammy(?=x)", []string{`filter "release~jammy(?=x)"`, "RE2", "lookahead"}},
		{"negative lookbehind", "os!~(?<!grub)-efi", []string{"bad regular expression", "RE2"}},
		{"python end anchor", `release~jammy\Z`, []string{"bad regular expression", "RE2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFilter(tt.expr)
			require.Error(t, err)
			for _, want := range tt.wantInErr {
				assert.Contains(t, err.Error(), want)
			}
		})
	}
}

// triples reduces filters to comparable values (the compiled regexp is internal).
func triples(fs Filters) [][3]string {
	out := make([][3]string, len(fs))
	for i, f := range fs {
		out[i] = [3]string{f.Key, f.Op, f.Value}
	}
	return out
}

func TestParseFilters(t *testing.T) {
	tests := []struct {
		name  string
		exprs []string
		want  [][3]string
	}{
		{"none", nil, [][3]string{}},
		{"blank", []string{"", "  \t\n"}, [][3]string{}},
		{"one field", []string{"arch=amd64 release~(jammy|noble) label=stable"}, [][3]string{
			{"arch", "=", "amd64"}, {"release", "~", "(jammy|noble)"}, {"label", "=", "stable"},
		}},
		{"several strings", []string{"arch=amd64", "  release~(jammy|noble)\tlabel!=candidate\n"}, [][3]string{
			{"arch", "=", "amd64"}, {"release", "~", "(jammy|noble)"}, {"label", "!=", "candidate"},
		}},
		{"empty value", []string{"support_eol= arch=amd64"}, [][3]string{{"support_eol", "=", ""}, {"arch", "=", "amd64"}}},
		{"bootloaders", []string{"os~(grub*|pxelinux)"}, [][3]string{{"os", "~", "(grub*|pxelinux)"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, err := ParseFilters(tt.exprs...)
			require.NoError(t, err)
			assert.Equal(t, tt.want, triples(fs))
		})
	}
}

func TestParseFiltersReportsEveryError(t *testing.T) {
	fs, err := ParseFilters("arch=amd64 release~(jammy bootloader-type=uefi", "label=stable")
	require.Error(t, err)
	assert.Nil(t, fs)
	assert.Contains(t, err.Error(), `filter "release~(jammy"`)
	assert.Contains(t, err.Error(), `filter "bootloader-type=uefi"`)
	assert.NotContains(t, err.Error(), "arch=amd64")

	// Spaces around an operator split the expression in the portal's field.
	_, err = ParseFilters("arch = amd64")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `filter "arch"`)
}

func TestFilterMatch(t *testing.T) {
	jammy := map[string]string{"arch": "amd64", "release": "jammy", "label": "stable", "os": "ubuntu"}
	tests := []struct {
		name   string
		expr   string
		fields map[string]string
		want   bool
	}{
		{"equal", "arch=amd64", jammy, true},
		{"equal other", "arch=arm64", jammy, false},
		{"equal is whole value", "release=jam", jammy, false},
		{"not equal", "arch!=arm64", jammy, true},
		{"not equal same", "arch!=amd64", jammy, false},
		{"search anywhere", "release~amm", jammy, true},
		{"search alternation", "release~(jammy|noble)", jammy, true},
		{"search alternation other", "release~(focal|noble)", jammy, false},
		{"search anchored", "release~^jammy$", jammy, true},
		{"search anchored prefix", "release~^jam$", jammy, false},
		{"not search", "release!~noble", jammy, true},
		{"not search hit", "release!~jam", jammy, false},
		{"case sensitive", "release=Jammy", jammy, false},
		{"case insensitive flag", "release~(?i)JAMMY", jammy, true},
		{"value with trailing space", "release=jammy ", jammy, false},
		// A missing key reads as "".
		{"missing equal", "kflavor=generic", jammy, false},
		{"missing not equal", "kflavor!=generic", jammy, true},
		{"missing equal empty", "kflavor=", jammy, true},
		{"present equal empty", "arch=", jammy, false},
		{"missing search any", "kflavor~", jammy, true},
		{"missing search one char", "kflavor~.", jammy, false},
		{"missing not search one char", "kflavor!~.", jammy, true},
		{"missing search start", "kflavor~^$", jammy, true},
		// "grub*" is "gru" then any number of "b": a search finds it in every grub os.
		{"bootloader grub-efi-signed", "os~(grub*|pxelinux)", map[string]string{"os": "grub-efi-signed"}, true},
		{"bootloader grub-ieee1275", "os~(grub*|pxelinux)", map[string]string{"os": "grub-ieee1275"}, true},
		{"bootloader pxelinux", "os~(grub*|pxelinux)", map[string]string{"os": "pxelinux"}, true},
		{"bootloader ubuntu", "os~(grub*|pxelinux)", map[string]string{"os": "ubuntu"}, false},
		{"bootloader missing os", "os~(grub*|pxelinux)", map[string]string{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, err := ParseFilters(tt.expr)
			if strings.HasSuffix(tt.expr, " ") {
				// ParseFilters splits at spaces; keep the value's trailing space.
				f, ferr := ParseFilter(tt.expr)
				require.NoError(t, ferr)
				fs, err = Filters{f}, nil
			}
			require.NoError(t, err)
			require.Len(t, fs, 1)
			assert.Equal(t, tt.want, fs.MatchMap(tt.fields), "MatchMap")
			assert.Equal(t, tt.want, fs.Match(func(k string) (string, bool) {
				v, ok := tt.fields[k]
				return v, ok
			}), "Match")
			assert.Equal(t, tt.want, fs[0].Holds(tt.fields[fs[0].Key]), "Holds")
		})
	}
}

func TestFiltersAreANDed(t *testing.T) {
	fs, err := ParseFilters("arch=amd64 release~(jammy|noble) label=stable")
	require.NoError(t, err)
	assert.True(t, fs.MatchMap(map[string]string{"arch": "amd64", "release": "noble", "label": "stable"}))
	assert.False(t, fs.MatchMap(map[string]string{"arch": "amd64", "release": "noble", "label": "candidate"}))
	assert.False(t, fs.MatchMap(map[string]string{"arch": "arm64", "release": "noble", "label": "stable"}))
	assert.False(t, fs.MatchMap(map[string]string{"arch": "amd64", "release": "focal", "label": "stable"}))

	var none Filters
	assert.True(t, none.MatchMap(nil), "no filters match everything")
	assert.True(t, none.Match(func(string) (string, bool) { return "", false }))
}

func TestFilterBuiltByHand(t *testing.T) {
	// Not parsed, so no precompiled regexp: still correct, only slower.
	fs := Filters{{Key: "release", Op: OpSearch, Value: "^(jammy|noble)$"}}
	assert.True(t, fs.MatchMap(map[string]string{"release": "noble"}))
	assert.False(t, fs.MatchMap(map[string]string{"release": "focal"}))

	// An invalid regexp or operator never holds, negated or not.
	assert.False(t, Filter{Key: "a", Op: OpSearch, Value: "("}.Holds("("))
	assert.False(t, Filter{Key: "a", Op: OpNotSearch, Value: "("}.Holds("x"))
	assert.False(t, Filter{Key: "a", Op: "<", Value: "x"}.Holds("a"))
}

func TestFilterString(t *testing.T) {
	f, err := ParseFilter("release ~ (jammy|noble)")
	require.NoError(t, err)
	assert.Equal(t, "release~(jammy|noble)", f.String())

	fs, err := ParseFilters("arch=amd64  release~(jammy|noble)\tlabel!=candidate os!~^grub")
	require.NoError(t, err)
	assert.Equal(t, "arch=amd64 release~(jammy|noble) label!=candidate os!~^grub", fs.String())
	again, err := ParseFilters(fs.String())
	require.NoError(t, err)
	assert.Equal(t, triples(fs), triples(again))
	assert.Equal(t, "", Filters(nil).String())
}

// fixtureProducts reads the real images.maas.io product files, flattened the
// way sstream-query filters a product: top-level fields, product fields and product_name.
func fixtureProducts(t testing.TB) map[string]map[string]string {
	t.Helper()
	dir := filepath.Join("testdata", "images.maas.io", "streams", "v1")
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	require.NoError(t, err)
	var idx Index
	require.NoError(t, json.Unmarshal(data, &idx))
	out := make(map[string]map[string]string)
	for cid, e := range idx.Index {
		data, err := os.ReadFile(filepath.Join("testdata", "images.maas.io", filepath.FromSlash(e.Path)))
		require.NoError(t, err, cid)
		var doc Products
		require.NoError(t, json.Unmarshal(data, &doc), cid)
		for id, p := range doc.Products {
			fields := map[string]string{
				"content_id": doc.ContentID, "datatype": doc.DataType, "format": doc.Format, "updated": doc.Updated,
			}
			for k, v := range p.Fields {
				fields[k] = v
			}
			fields["product_name"] = id
			out[id] = fields
		}
	}
	require.NotEmpty(t, out)
	return out
}

func TestFiltersMatchFixtureProducts(t *testing.T) {
	products := fixtureProducts(t)
	tests := []struct {
		exprs string
		// want is computed from the fixture without the filter code.
		want func(f map[string]string) bool
		// wantIDs pins the result for the fixture as checked in.
		wantIDs []string
	}{
		{
			exprs: "arch=amd64 release~(jammy|noble)",
			want: func(f map[string]string) bool {
				return f["arch"] == "amd64" && (strings.Contains(f["release"], "jammy") || strings.Contains(f["release"], "noble"))
			},
			wantIDs: []string{
				"com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04",
				"com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04",
			},
		},
		{
			exprs: "arch=amd64 release~(jammy|noble) label=stable",
			want: func(f map[string]string) bool {
				return f["arch"] == "amd64" && f["label"] == "stable" &&
					(strings.Contains(f["release"], "jammy") || strings.Contains(f["release"], "noble"))
			},
		},
		{
			exprs: "os~(grub*|pxelinux)",
			want: func(f map[string]string) bool {
				return strings.Contains(f["os"], "gru") || strings.Contains(f["os"], "pxelinux")
			},
			wantIDs: []string{
				"com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64",
				"com.ubuntu.maas.stable:1:grub-efi:uefi:arm64",
				"com.ubuntu.maas.stable:1:grub-ieee1275:open-firmware:ppc64el",
				"com.ubuntu.maas.stable:1:pxelinux:pxe:amd64",
				"com.ubuntu.maas.stable:1:pxelinux:pxe:i386",
			},
		},
		{
			exprs: "os=centos arch=amd64",
			want:  func(f map[string]string) bool { return f["os"] == "centos" && f["arch"] == "amd64" },
			wantIDs: []string{
				"com.ubuntu.maas.stable:centos-bases:7.0:amd64",
				"com.ubuntu.maas.stable:centos-bases:8:amd64",
			},
		},
		{
			// Bootloaders and centos have no kflavor: "" != "generic".
			exprs: "kflavor!=generic",
			want:  func(f map[string]string) bool { return f["kflavor"] != "generic" },
		},
		{
			exprs: "release!~^(jammy|noble)$ arch!=i386",
			want: func(f map[string]string) bool {
				return f["release"] != "jammy" && f["release"] != "noble" && f["arch"] != "i386"
			},
		},
		{
			exprs: "content_id~:v3: product_name~:arm64:",
			want: func(f map[string]string) bool {
				return strings.Contains(f["content_id"], ":v3:") && strings.Contains(f["product_name"], ":arm64:")
			},
			wantIDs: []string{
				"com.ubuntu.maas.stable:v3:boot:22.04:arm64:ga-22.04",
				"com.ubuntu.maas.stable:v3:boot:24.04:arm64:ga-24.04",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.exprs, func(t *testing.T) {
			fs, err := ParseFilters(tt.exprs)
			require.NoError(t, err)
			var got, want []string
			for id, fields := range products {
				if fs.MatchMap(fields) {
					got = append(got, id)
				}
				if tt.want(fields) {
					want = append(want, id)
				}
			}
			sort.Strings(got)
			sort.Strings(want)
			require.NotEmpty(t, want, "the fixture should exercise this filter")
			assert.Less(t, len(want), len(products), "the fixture should exercise this filter")
			assert.Equal(t, want, got)
			if tt.wantIDs != nil {
				assert.Equal(t, tt.wantIDs, got)
			}
		})
	}
}

func TestFiltersMatchDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	fs, err := ParseFilters("arch=amd64 release~(jammy|noble) label=stable os!~^grub subarch!=hwe-20.04")
	require.NoError(t, err)
	fields := map[string]string{"arch": "amd64", "release": "noble", "label": "stable", "os": "ubuntu", "subarch": "ga-24.04"}
	get := func(k string) (string, bool) {
		v, ok := fields[k]
		return v, ok
	}
	require.True(t, fs.MatchMap(fields))
	assert.Zero(t, testing.AllocsPerRun(100, func() { fs.MatchMap(fields) }), "MatchMap")
	assert.Zero(t, testing.AllocsPerRun(100, func() { fs.Match(get) }), "Match")
}

func FuzzParseFilters(f *testing.F) {
	for _, s := range []string{
		"arch=amd64 release~(jammy|noble) label=stable",
		"os~(grub*|pxelinux)",
		"a=b~c a~b=c a!=b=c a==b",
		"arch = amd64",
		"arch=amd64  \n",
		"bootloader-type=uefi",
		`release~(\w)\1`,
		"ärch=x\u00a0y",
		"=",
	} {
		f.Add(s)
	}
	fields := map[string]string{"arch": "amd64", "release": "noble", "os": "ubuntu"}
	f.Fuzz(func(t *testing.T, s string) {
		fs, err := ParseFilters(s)
		if err == nil {
			again, err := ParseFilters(fs.String())
			require.NoError(t, err, "re-parse %q", fs.String())
			require.Equal(t, triples(fs), triples(again), "re-parse %q", fs.String())
			fs.MatchMap(fields)
		}
		one, err := ParseFilter(s)
		if err != nil {
			return
		}
		again, err := ParseFilter(one.String())
		require.NoError(t, err, "re-parse %q", one.String())
		require.Equal(t, triples(Filters{one}), triples(Filters{again}), "re-parse %q", one.String())
		require.Equal(t, one.re != nil, again.re != nil)
		Filters{one}.MatchMap(fields)
	})
}

// benchFieldMaps builds n product field maps shaped like images.maas.io products.
func benchFieldMaps(n int) []map[string]string {
	releases := []string{"focal", "jammy", "noble", "oracular", "plucky", "questing"}
	arches := []string{"amd64", "arm64", "armhf", "i386", "ppc64el", "s390x"}
	out := make([]map[string]string, n)
	for i := range out {
		rel := releases[i%len(releases)]
		out[i] = map[string]string{
			"os": "ubuntu", "arch": arches[(i/len(releases))%len(arches)], "release": rel,
			"label": "stable", "kflavor": "generic", "krel": rel, "subarch": fmt.Sprintf("hwe-%d", i%7),
			"release_title": rel + " LTS", "version": fmt.Sprintf("%d.04", 20+i%6),
		}
	}
	return out
}

func BenchmarkFiltersMatch(b *testing.B) {
	products := benchFieldMaps(20000)
	fs, err := ParseFilters("arch=amd64 release~(jammy|noble) label=stable")
	require.NoError(b, err)
	b.ReportAllocs()
	matched := 0
	for b.Loop() {
		matched = 0
		for _, p := range products {
			if fs.MatchMap(p) {
				matched++
			}
		}
	}
	require.Positive(b, matched)
}
