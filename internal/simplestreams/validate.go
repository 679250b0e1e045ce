package simplestreams

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Problem severities.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
)

// Clients a Problem names as the one that rejects (or ignores) what it reports.
const (
	MAAS37        = "3.7"
	MAAS38        = "3.8"
	MAASAll       = "all" // both MAAS generations and sstream-mirror
	SStreamMirror = "sstream-mirror"
)

// A problem that several clients (but not all) share is reported once per
// client, so that filtering on MAAS always finds it.
var (
	forAll  = []string{MAASAll}
	for38   = []string{MAAS38}
	forMAAS = []string{MAAS37, MAAS38}
	// MAAS 3.7 and sstream-mirror both read streams with Canonical's
	// simplestreams library, so they fail (or skip) the same way.
	forLib     = []string{MAAS37, SStreamMirror}
	forSStream = []string{SStreamMirror}
)

// maxDocumentSize caps one stream document: real product files are a few MiB.
const maxDocumentSize = 64 << 20

// ErrUnsafePath is returned for a path that could leave the mirror root.
var ErrUnsafePath = errors.New("unsafe path")

// Source reads the files of a stream by path relative to the mirror root (the parent of streams/).
type Source interface {
	ReadFile(path string) ([]byte, error)
}

type dirSource struct{ root string }

// DirSource reads a stream from the directory root; it refuses paths that escape root.
func DirSource(root string) Source { return dirSource{root: root} }

// ReadFile reads path below the root; os.Root also stops symlinks leading out.
func (d dirSource) ReadFile(path string) ([]byte, error) {
	if err := checkRelPath(path); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	root, err := os.OpenRoot(d.root)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(path))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	data, err := readCapped(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

type httpSource struct {
	base   string
	client *http.Client
}

// HTTPSource reads a stream over HTTP from the mirror root URL base; a nil client means http.DefaultClient.
func HTTPSource(base string, client *http.Client) Source {
	if client == nil {
		client = http.DefaultClient
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	return httpSource{base: base, client: client}
}

// ReadFile GETs base+path; any status but 200 is an error.
func (h httpSource) ReadFile(path string) ([]byte, error) {
	if err := checkRelPath(path); err != nil {
		return nil, fmt.Errorf("get %s: %w", path, err)
	}
	url := h.base + path
	resp, err := h.client.Get(url)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get %s: status %s", url, resp.Status)
	}
	data, err := readCapped(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", url, err)
	}
	return data, nil
}

func readCapped(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxDocumentSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxDocumentSize {
		return nil, fmt.Errorf("document larger than %d MiB", maxDocumentSize>>20)
	}
	return data, nil
}

// checkRelPath refuses what clients refuse: absolute paths, ".." segments, URLs.
func checkRelPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty path", ErrUnsafePath)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%w: %q contains a NUL byte", ErrUnsafePath, p)
	case strings.Contains(p, "://"):
		return fmt.Errorf("%w: %q is a URL, not a path relative to the mirror root", ErrUnsafePath, p)
	case strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\`) || filepath.IsAbs(p):
		return fmt.Errorf("%w: %q is absolute", ErrUnsafePath, p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return fmt.Errorf("%w: %q has a \"..\" segment", ErrUnsafePath, p)
		}
	}
	return nil
}

// Problem is one thing a client would reject or ignore in a stream.
type Problem struct {
	Severity string // SeverityError or SeverityWarning
	MAAS     string // MAAS37, MAAS38, MAASAll or SStreamMirror
	Doc      string // document path, e.g. "streams/v1/index.json"
	Where    string // "product P version V item K", "index entry C", "" for the document itself
	Message  string
}

// String renders p on one line.
func (p Problem) String() string {
	if p.Where == "" {
		return fmt.Sprintf("%s [%s] %s: %s", p.Severity, p.MAAS, p.Doc, p.Message)
	}
	return fmt.Sprintf("%s [%s] %s %s: %s", p.Severity, p.MAAS, p.Doc, p.Where, p.Message)
}

// ItemRef is one item file a stream lists.
type ItemRef struct {
	Path   string
	Size   int64  // -1 when no listing has a valid size
	SHA256 string // as listed, even if invalid
	// Doc, ProductID, Version and Key locate the first listing of Path.
	Doc, ProductID, Version, Key string
}

// Report is the outcome of Validate.
type Report struct {
	Index    *Index
	Products map[string]*Products // by document path
	Items    []ItemRef            // de-duplicated by path, sorted by path
	Problems []Problem
}

// Errors returns the problems of severity error.
func (r *Report) Errors() []Problem {
	var errs []Problem
	for _, p := range r.Problems {
		if p.Severity == SeverityError {
			errs = append(errs, p)
		}
	}
	return errs
}

// OK reports whether the stream has no errors (warnings are allowed).
func (r *Report) OK() bool { return len(r.Errors()) == 0 }

// Validate reads indexPath (e.g. "streams/v1/index.json") from src and every
// product file it names, and checks them against what MAAS 3.7, MAAS 3.8 and
// sstream-mirror accept (see MAAS-STREAMS.md). An index ending in .sjson makes
// every document required to be clearsigned; signatures are not verified here.
// The error is only for an index that cannot be read at all.
func Validate(src Source, indexPath string) (*Report, error) {
	data, err := src.ReadFile(indexPath)
	if err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	v := &validator{
		src:    src,
		signed: strings.HasSuffix(indexPath, ".sjson"),
		r:      &Report{Products: make(map[string]*Products)},
		byPath: make(map[string]int),
	}
	v.index(indexPath, data)
	sort.Slice(v.r.Items, func(i, j int) bool { return v.r.Items[i].Path < v.r.Items[j].Path })
	return v.r, nil
}

// object is a JSON object decoded with UseNumber, so sizes keep their JSON type.
type object = map[string]any

type validator struct {
	src    Source
	signed bool
	r      *Report
	byPath map[string]int // item path → index in r.Items
}

func (v *validator) add(severity string, clients []string, doc, where, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for _, c := range clients {
		v.r.Problems = append(v.r.Problems, Problem{Severity: severity, MAAS: c, Doc: doc, Where: where, Message: msg})
	}
}

func (v *validator) errorf(clients []string, doc, where, format string, args ...any) {
	v.add(SeverityError, clients, doc, where, format, args...)
}

func (v *validator) warnf(clients []string, doc, where, format string, args ...any) {
	v.add(SeverityWarning, clients, doc, where, format, args...)
}

func (v *validator) docHasErrors(doc string) bool {
	for _, p := range v.r.Problems {
		if p.Doc == doc && p.Severity == SeverityError {
			return true
		}
	}
	return false
}

// decode unwraps a clearsigned document in a signed tree and parses the JSON.
func (v *validator) decode(doc string, data []byte) (object, []byte, bool) {
	if v.signed {
		payload, err := clearsignedPayload(data)
		if err != nil {
			v.errorf(forAll, doc, "", "is not OpenPGP clearsigned (%v): clients starting from a signed index fail with \"No signature found\"", err)
			return nil, nil, false
		}
		data = payload
	}
	obj, err := decodeObject(data)
	if err != nil {
		v.errorf(forAll, doc, "", "is not valid JSON: %v", err)
		return nil, nil, false
	}
	return obj, data, true
}

func decodeObject(data []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var obj object
	if err := dec.Decode(&obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, errors.New("not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	return obj, nil
}

const (
	pgpSignedHeader    = "-----BEGIN PGP SIGNED MESSAGE-----"
	pgpSignatureHeader = "-----BEGIN PGP SIGNATURE-----"
)

// clearsignedPayload returns the text of an OpenPGP clearsigned message
// (RFC 4880 §7) without checking its signature.
func clearsignedPayload(data []byte) ([]byte, error) {
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) != pgpSignedHeader {
		return nil, errors.New("no " + pgpSignedHeader + " line")
	}
	i := 1
	for i < len(lines) && strings.TrimSpace(lines[i]) != "" { // armour headers such as "Hash: SHA512"
		i++
	}
	var body []string
	for i++; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) == pgpSignatureHeader {
			return []byte(strings.Join(body, "\n")), nil
		}
		body = append(body, strings.TrimPrefix(lines[i], "- ")) // undo dash-escaping
	}
	return nil, errors.New("no signature block")
}

// ---- index ----

func (v *validator) index(doc string, data []byte) {
	raw, payload, ok := v.decode(doc, data)
	if !ok {
		return
	}
	if f, _ := raw["format"].(string); f != FormatIndex {
		v.errorf(forLib, doc, "", "format is %s, want %q: the simplestreams library fails with \"Unknown format\"", describe(raw, "format"), FormatIndex)
	}
	v.checkUpdated(doc, "", raw)
	entries, ok := raw["index"].(object)
	switch {
	case !ok:
		v.errorf(forAll, doc, "", "has no \"index\" object naming the product files")
	case len(entries) == 0:
		v.errorf(for38, doc, "", "lists no product files: MAAS 3.8 rejects the index")
	}
	for _, key := range sortedKeys(entries) {
		v.indexEntry(doc, key, entries[key])
	}
	var idx Index
	if err := json.Unmarshal(payload, &idx); err != nil {
		if !v.docHasErrors(doc) {
			v.errorf(forAll, doc, "", "does not decode as an index: %v", err)
		}
		return
	}
	v.r.Index = &idx
}

func (v *validator) indexEntry(indexDoc, contentID string, rawEntry any) {
	where := "index entry " + contentID
	e, ok := rawEntry.(object)
	if !ok {
		v.errorf(forAll, indexDoc, where, "is not a JSON object")
		return
	}
	switch f, present := e["format"]; {
	case !present:
		v.errorf(forLib, indexDoc, where, "has no format: MAAS 3.7 and sstream-mirror silently skip the entry, so nothing is mirrored")
	case f != FormatProducts:
		v.errorf(forLib, indexDoc, where, "format is %s, want %q: MAAS 3.7 and sstream-mirror silently skip the entry", describe(e, "format"), FormatProducts)
	}
	if _, present := e["datatype"]; !present {
		// No client rejects a missing entry datatype (3.8 makes it optional),
		// but MAAS-STREAMS.md asks for one: a warning for all.
		v.warnf(forAll, indexDoc, where, "has no datatype; give %q or %q", DataTypeIDs, DataTypeDL)
	} else if !validDataType(e["datatype"]) {
		v.errorf(for38, indexDoc, where, "datatype is %s, want %q or %q: MAAS 3.8 rejects the index", describe(e, "datatype"), DataTypeIDs, DataTypeDL)
	}
	v.checkUpdated(indexDoc, where, e)
	listed, listOK := stringList(e["products"])
	if !listOK {
		v.errorf(for38, indexDoc, where, "has no products list of strings: MAAS 3.8 rejects the index")
	}
	path, ok := v.entryPath(indexDoc, where, e)
	if !ok {
		return
	}
	ids, ok := v.productsFile(path, contentID)
	if ok && listOK {
		v.compareProductLists(indexDoc, where, listed, ids)
	}
}

// entryPath returns the entry's path if it is safe to read.
func (v *validator) entryPath(indexDoc, where string, e object) (string, bool) {
	path, ok := e["path"].(string)
	if !ok || path == "" {
		v.errorf(forAll, indexDoc, where, "has no path to its product file")
		return "", false
	}
	if err := checkRelPath(path); err != nil {
		v.errorf(forAll, indexDoc, where, "path must be relative to the mirror root: %v", err)
		return "", false
	}
	if v.signed && !strings.HasSuffix(path, ".sjson") {
		v.errorf(forAll, indexDoc, where, "path %q is not a .sjson file: every file read from a signed index must be clearsigned", path)
	}
	return path, true
}

func (v *validator) compareProductLists(indexDoc, where string, listed, inFile []string) {
	// Sets, not slices: a real catalog lists tens of thousands of products.
	listedSet := make(map[string]bool, len(listed))
	for _, id := range listed {
		listedSet[id] = true
	}
	fileSet := make(map[string]bool, len(inFile))
	for _, id := range inFile {
		fileSet[id] = true
	}
	for _, id := range listed {
		if !fileSet[id] {
			v.errorf(forAll, indexDoc, where, "lists product %s, which its product file does not have", id)
		}
	}
	for _, id := range inFile {
		if !listedSet[id] {
			v.errorf(forAll, indexDoc, where, "does not list product %s of its product file", id)
		}
	}
}

// checkUpdated checks o["updated"]: MAAS 3.8 parses it on the index, on
// every index entry and in every product file.
func (v *validator) checkUpdated(doc, where string, o object) {
	val, present := o["updated"]
	if !present {
		v.errorf(for38, doc, where, "has no updated timestamp: MAAS 3.8 requires one")
		return
	}
	s, ok := val.(string)
	if !ok {
		v.errorf(for38, doc, where, "updated is %s, not a string", describe(o, "updated"))
		return
	}
	if msg := checkTimestamp(s); msg != "" {
		v.errorf(for38, doc, where, "%s", msg)
	}
}

// Layouts MAAS 3.8 accepts: strptime "%a, %d %b %Y %H:%M:%S %z", else
// datetime.fromisoformat. Parsing accepts fractional seconds in all of them.
var (
	rfc2822Layouts = []string{"Mon, 2 Jan 2006 15:04:05 -0700", "Mon, 2 Jan 2006 15:04:05 -07:00"}
	isoLayouts     = []string{
		time.RFC3339, "2006-01-02T15:04:05-0700", "2006-01-02T15:04:05",
		"2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05-0700", "2006-01-02 15:04:05",
		"2006-01-02",
	}
	namedZoneLayouts = []string{"Mon, 2 Jan 2006 15:04:05 MST"}
)

// checkTimestamp returns why s is not an acceptable `updated` value, or "".
func checkTimestamp(s string) string {
	for _, layout := range slices.Concat(rfc2822Layouts, isoLayouts) {
		if _, err := time.Parse(layout, s); err == nil {
			return ""
		}
	}
	for _, layout := range namedZoneLayouts {
		if _, err := time.Parse(layout, s); err == nil {
			return fmt.Sprintf("updated %q has a named time zone: MAAS 3.8 accepts only a numeric zone, e.g. %q", s, FormatTime(time.Unix(0, 0)))
		}
	}
	return fmt.Sprintf("updated %q is neither RFC 2822 with a numeric zone (e.g. %q) nor ISO 8601", s, FormatTime(time.Unix(0, 0)))
}

// ---- product files ----

// productsFile validates one product file and returns its product ids.
func (v *validator) productsFile(doc, contentID string) ([]string, bool) {
	data, err := v.src.ReadFile(doc)
	if err != nil {
		v.errorf(forAll, doc, "", "cannot be read: %v", err)
		return nil, false
	}
	raw, payload, ok := v.decode(doc, data)
	if !ok {
		return nil, false
	}
	v.productsHeader(doc, contentID, raw)
	products, ok := raw["products"].(object)
	switch {
	case !ok:
		v.errorf(forAll, doc, "", "has no \"products\" object")
		return nil, false
	case len(products) == 0:
		v.errorf(for38, doc, "", "has no products: an empty product file makes MAAS 3.8 fail the whole source")
	}
	ids := sortedKeys(products)
	kinds := v.classifyAll(doc, ids, products)
	for _, id := range ids {
		if p, ok := products[id].(object); ok {
			v.product(doc, id, p, kinds[id])
		}
	}
	var typed Products
	if err := json.Unmarshal(payload, &typed); err != nil {
		if !v.docHasErrors(doc) {
			v.errorf(forAll, doc, "", "does not decode as a product file: %v", err)
		}
	} else {
		v.r.Products[doc] = &typed
	}
	return ids, true
}

func (v *validator) productsHeader(doc, contentID string, raw object) {
	switch cid, present := raw["content_id"]; {
	case !present:
		v.errorf(forAll, doc, "", "has no content_id: sstream-mirror and MAAS require it")
	case cid != contentID:
		// No client compares them, but sstream-mirror keys its state on the
		// file's content_id and MAAS on the index key: they must agree.
		v.errorf(forAll, doc, "", "content_id is %s but the index names it %q", describe(raw, "content_id"), contentID)
	}
	if !validDataType(raw["datatype"]) {
		v.errorf(for38, doc, "", "datatype is %s, want %q or %q: MAAS 3.8 rejects the file", describe(raw, "datatype"), DataTypeIDs, DataTypeDL)
	}
	if raw["format"] != FormatProducts {
		v.errorf(forLib, doc, "", "format is %s, want %q: the simplestreams library fails with \"Unknown format\"", describe(raw, "format"), FormatProducts)
	}
	v.checkUpdated(doc, "", raw)
}

// productKind is how MAAS 3.8 models a product; one file holds one kind.
type productKind int

const (
	kindUnknown productKind = iota
	kindMultiFile
	kindSingleFile
	kindBootloader
)

func (k productKind) String() string {
	switch k {
	case kindMultiFile:
		return "multi-file boot image"
	case kindSingleFile:
		return "single-file image"
	case kindBootloader:
		return "bootloader"
	}
	return "unknown"
}

func (v *validator) classifyAll(doc string, ids []string, products object) map[string]productKind {
	kinds := make(map[string]productKind, len(ids))
	firstOf := make(map[productKind]string)
	for _, id := range ids {
		p, ok := products[id].(object)
		if !ok {
			v.errorf(forAll, doc, "product "+id, "is not a JSON object")
			continue
		}
		k := classify(p)
		kinds[id] = k
		if k == kindUnknown {
			v.errorf(for38, doc, "product "+id, "has no boot-kernel/boot-initrd, root-* or archive.tar.xz item, so it is neither a boot image, a single-file image nor a bootloader: MAAS 3.8 rejects the file")
		} else if _, seen := firstOf[k]; !seen {
			firstOf[k] = id
		}
	}
	if len(firstOf) > 1 {
		var parts []string
		for _, k := range []productKind{kindMultiFile, kindSingleFile, kindBootloader} {
			if id, ok := firstOf[k]; ok {
				parts = append(parts, fmt.Sprintf("%s (%s)", k, id))
			}
		}
		v.errorf(for38, doc, "", "mixes product kinds %s: MAAS 3.8 fails the whole source; publish one file per kind", strings.Join(parts, ", "))
	}
	return kinds
}

// classify tells a product's kind from its bootloader-type field or its items' types.
func classify(p object) productKind {
	if _, ok := p["bootloader-type"]; ok {
		return kindBootloader
	}
	var multi, single, boot bool
	versions, _ := p["versions"].(object)
	for _, ver := range versions {
		items, _ := asObject(ver)["items"].(object)
		for key, it := range items {
			switch t := itemType(key, it); {
			case t == "boot-kernel" || t == "boot-initrd":
				multi = true
			case t == "archive.tar.xz":
				boot = true
			case isSingleFileRoot(t):
				single = true
			}
		}
	}
	switch {
	case boot:
		return kindBootloader
	case multi:
		return kindMultiFile
	case single:
		return kindSingleFile
	}
	return kindUnknown
}

// itemType is the item's ftype, or its key when ftype is missing.
func itemType(key string, item any) string {
	if t, ok := asObject(item)["ftype"].(string); ok {
		return t
	}
	return key
}

// isSingleFileRoot reports root-tgz, root-dd… ("root-image.gz" is the older
// root of a multi-file image).
func isSingleFileRoot(ftype string) bool {
	return strings.HasPrefix(ftype, "root-") && ftype != "root-image.gz"
}

func isRootDD(ftype string) bool { return strings.HasPrefix(ftype, "root-dd") }

func (v *validator) product(doc, id string, p object, kind productKind) {
	where := "product " + id
	switch kind {
	case kindMultiFile:
		v.multiFileProduct(doc, where, id, p)
	case kindSingleFile:
		v.singleFileProduct(doc, where, p)
	case kindBootloader:
		v.bootloaderProduct(doc, where, id, p)
	}
	versions, ok := p["versions"].(object)
	if !ok || len(versions) == 0 {
		v.errorf(for38, doc, where, "has no versions: MAAS 3.8 rejects the file")
		return
	}
	for _, name := range sortedKeys(versions) {
		v.version(doc, id, name, versions[name], kind)
	}
}

// fieldRule is a product field that must be a non-empty string.
type fieldRule struct {
	name    string
	clients []string
}

// MAAS 3.8's pydantic models require all of these; MAAS 3.7 indexes arch,
// label and release directly (a KeyError stops the import).
var (
	imageFields = []fieldRule{
		{"os", for38}, {"arch", forMAAS}, {"label", forMAAS}, {"release", forMAAS},
		{"release_title", for38}, {"subarch", for38}, {"subarches", for38}, {"version", for38},
	}
	multiFileFields  = slices.Concat(imageFields, []fieldRule{{"kflavor", for38}, {"krel", for38}, {"release_codename", for38}})
	bootloaderFields = []fieldRule{
		{"os", for38}, {"arch", forMAAS}, {"arches", for38}, {"bootloader-type", for38}, {"label", forMAAS},
	}
)

func (v *validator) requireStrings(doc, where string, o object, rules []fieldRule) {
	for _, f := range rules {
		val, present := o[f.name]
		s, isString := val.(string)
		switch {
		case !present:
			v.errorf(f.clients, doc, where, "has no %s field", f.name)
		case !isString:
			v.errorf(f.clients, doc, where, "field %s is %s, not a string", f.name, describe(o, f.name))
		case strings.TrimSpace(s) == "":
			v.errorf(f.clients, doc, where, "field %s is empty", f.name)
		}
	}
}

func (v *validator) multiFileProduct(doc, where, id string, p object) {
	if !strings.Contains(id, ":v3:") {
		v.errorf(for38, doc, where, "id lacks \":v3:\": MAAS 3.8 ignores multi-file products without it")
		if osName, _ := p["os"].(string); strings.Contains(strings.ToLower(osName), "ubuntu") {
			v.errorf([]string{MAAS37}, doc, where, "id lacks \":v3:\": MAAS 3.7 ignores ubuntu products without it")
		}
	}
	v.requireStrings(doc, where, p, multiFileFields)
	v.checkSupportEOL(doc, where, p, true)
}

// SingleFileOSes are the operating systems MAAS installs from a single-file image.
var SingleFileOSes = []string{"centos", "rhel", "ol", "suse", "esxi", "windows", "custom", "ubuntu"}

func (v *validator) singleFileProduct(doc, where string, p object) {
	v.requireStrings(doc, where, p, imageFields)
	if osName, ok := p["os"].(string); ok && osName != "" && !slices.Contains(SingleFileOSes, osName) {
		v.errorf(forMAAS, doc, where, "os %q is not one MAAS knows (%s)", osName, strings.Join(SingleFileOSes, ", "))
	}
	v.checkSupportEOL(doc, where, p, true)
}

// supportedBootloader is a (bootloader-type, os, arch) MAAS installs.
type supportedBootloader struct{ typ, os, arch string }

// Both MAAS generations ignore other combinations with "Ignoring unsupported
// product". That is a warning, not an error: real images.maas.io metadata
// carries pxe/pxelinux/amd64 (com.ubuntu.maas.stable:1:pxelinux:pxe:amd64).
var supportedBootloaders = []supportedBootloader{
	{"pxe", "pxelinux", "i386"},
	{"uefi", "grub-efi-signed", "amd64"},
	{"uefi", "grub-efi", "arm64"},
	{"open-firmware", "grub-ieee1275", "ppc64el"},
}

func (v *validator) bootloaderProduct(doc, where, id string, p object) {
	if !strings.Contains(id, ":1:") {
		v.errorf(forMAAS, doc, where, "bootloader id lacks \":1:\": MAAS ignores it")
	}
	v.requireStrings(doc, where, p, bootloaderFields)
	typ, ok1 := p["bootloader-type"].(string)
	osName, ok2 := p["os"].(string)
	arch, ok3 := p["arch"].(string)
	if ok1 && ok2 && ok3 && !slices.Contains(supportedBootloaders, supportedBootloader{typ, osName, arch}) {
		v.warnf(forMAAS, doc, where, "bootloader %s/%s/%s (type/os/arch) is not one MAAS installs; it is ignored", typ, osName, arch)
	}
}

var isoDate = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)

// checkSupportEOL checks support_eol (and, on versions, support_esm_eol):
// strictly YYYY-MM-DD or null.
func (v *validator) checkSupportEOL(doc, where string, o object, onProduct bool) {
	keys := []string{"support_eol"}
	if !onProduct {
		keys = append(keys, "support_esm_eol")
	}
	for _, key := range keys {
		val, present := o[key]
		if !present {
			if onProduct {
				// MAAS master's pydantic v2 model has `support_eol: date | None`
				// without a default: the key is required there, null accepted.
				v.warnf(for38, doc, where, "has no support_eol; recent MAAS 3.8 models require the key (null is accepted)")
			}
			continue
		}
		if val == nil {
			continue
		}
		s, _ := val.(string)
		if _, err := time.Parse(time.DateOnly, s); err != nil || !isoDate.MatchString(s) {
			v.errorf(for38, doc, where, "%s is %s, not a YYYY-MM-DD date", key, describe(o, key))
		}
	}
}

// ---- versions and items ----

func (v *validator) version(doc, id, name string, rawVersion any, kind productKind) {
	where := fmt.Sprintf("product %s version %s", id, name)
	if strings.TrimSpace(name) == "" {
		v.errorf(forAll, doc, where, "version name is empty")
	}
	ver, ok := rawVersion.(object)
	if !ok {
		v.errorf(forAll, doc, where, "is not a JSON object")
		return
	}
	items, ok := ver["items"].(object)
	if !ok || len(items) == 0 {
		v.errorf(forAll, doc, where, "has no items")
		return
	}
	for _, key := range sortedKeys(items) {
		v.item(doc, id, name, key, items[key], kind)
	}
	switch kind {
	case kindMultiFile:
		v.checkSupportEOL(doc, where, ver, false)
		v.multiFileVersion(doc, where, items)
	case kindSingleFile:
		v.singleFileVersion(doc, where, items)
	case kindBootloader:
		v.bootloaderVersion(doc, where, items)
	}
}

func (v *validator) multiFileVersion(doc, where string, items object) {
	for _, key := range []string{"boot-kernel", "boot-initrd"} {
		if _, ok := items[key]; !ok {
			v.errorf(forMAAS, doc, where, "has no %s item", key)
		}
	}
	if _, ok := items["manifest"]; !ok {
		v.errorf(for38, doc, where, "has no manifest item: MAAS 3.8 rejects a version without one")
	}
	_, squashfs := items["squashfs"]
	_, rootImage := items["root-image.gz"]
	if !squashfs && !rootImage {
		v.errorf(forMAAS, doc, where, "has neither a squashfs nor a root-image.gz item")
	}
}

func (v *validator) singleFileVersion(doc, where string, items object) {
	if _, ok := items["manifest"]; !ok {
		v.errorf(for38, doc, where, "has no manifest item: MAAS 3.8 rejects a version without one")
	}
	var roots []string
	for key, it := range items {
		if t := itemType(key, it); isSingleFileRoot(t) {
			roots = append(roots, t)
		}
	}
	switch {
	case len(roots) == 0:
		v.errorf(forMAAS, doc, where, "has no root image item (root-tgz, root-tbz, root-txz or root-dd*)")
	case !slices.Contains(roots, "root-tgz") && !slices.ContainsFunc(roots, func(t string) bool { return !isRootDD(t) }):
		v.warnf(for38, doc, where, "has only root-dd* images: MAAS 3.7 accepts them but MAAS 3.8 ignores them")
	case !slices.Contains(roots, "root-tgz"):
		v.warnf(for38, doc, where, "has no root-tgz item: MAAS 3.8's single-file model reads only root-tgz")
	}
}

// bootloaderKeys are the item keys MAAS 3.8's bootloader model reads.
var bootloaderKeys = []string{"grub2-signed", "shim-signed", "grub2", "syslinux"}

func (v *validator) bootloaderVersion(doc, where string, items object) {
	for _, key := range bootloaderKeys {
		if _, ok := items[key]; ok {
			return
		}
	}
	v.errorf(for38, doc, where, "has none of the bootloader items %s", strings.Join(bootloaderKeys, ", "))
}

// KnownFTypes are the item types MAAS and sstream-mirror know.
var KnownFTypes = []string{
	"boot-kernel", "boot-initrd", "boot-dtb", "squashfs", "manifest",
	"root-tgz", "root-tbz", "root-txz", "root-dd", "root-dd.xz", "root-dd.gz", "root-dd.bz2",
	"root-dd.tar", "root-dd.raw", "root-dd.tar.xz", "root-dd.tar.bz2", "root-image.gz",
	"archive.tar.xz",
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

func validSHA256(s string) bool { return sha256Hex.MatchString(s) }

func (v *validator) item(doc, id, version, key string, rawItem any, kind productKind) {
	where := fmt.Sprintf("product %s version %s item %s", id, version, key)
	it, ok := rawItem.(object)
	if !ok {
		v.errorf(forAll, doc, where, "is not a JSON object")
		return
	}
	ftype, _ := it["ftype"].(string)
	if !slices.Contains(KnownFTypes, ftype) {
		v.errorf(forAll, doc, where, "ftype is %s, not a known item type", describe(it, "ftype"))
	}
	sum, _ := it["sha256"].(string)
	if !validSHA256(sum) {
		v.errorf(forAll, doc, where, "sha256 is %s, want 64 lowercase hex digits", describe(it, "sha256"))
	}
	size, sizeOK := v.itemSize(doc, where, it)
	if kind == kindBootloader {
		v.bootloaderItem(doc, where, ftype, it)
	}
	path, _ := it["path"].(string)
	if err := checkRelPath(path); err != nil {
		v.errorf(forAll, doc, where, "path must be relative to the mirror root: %v", err)
		return
	}
	if !sizeOK {
		size = -1
	}
	v.addItem(ItemRef{Path: path, Size: size, SHA256: sum, Doc: doc, ProductID: id, Version: version, Key: key}, where)
}

// itemSize checks that size is a JSON integer >= 0.
func (v *validator) itemSize(doc, where string, it object) (int64, bool) {
	switch s := it["size"].(type) {
	case json.Number:
		n, err := s.Int64()
		if err == nil && n >= 0 {
			return n, true
		}
		v.errorf(forAll, doc, where, "size %s is not a non-negative integer", s)
	case string:
		v.errorf(forSStream, doc, where, "size %q is a JSON string, not an integer: sstream-mirror crashes on it", s)
	default:
		v.errorf(forAll, doc, where, "size is %s, not an integer", describe(it, "size"))
	}
	return 0, false
}

func (v *validator) bootloaderItem(doc, where, ftype string, it object) {
	if ftype != "archive.tar.xz" {
		v.errorf(forMAAS, doc, where, "bootloader item ftype is %q, want \"archive.tar.xz\"", ftype)
	}
	for _, f := range []string{"src_package", "src_release", "src_version"} {
		if s, ok := it[f].(string); !ok || s == "" {
			v.errorf(for38, doc, where, "bootloader item has no %s string", f)
		}
	}
}

// addItem records an item once per path; one path with two different
// contents can never pass sstream-mirror's size and sha256 check. Invalid
// values (already reported) are not compared.
func (v *validator) addItem(ref ItemRef, where string) {
	i, seen := v.byPath[ref.Path]
	if !seen {
		v.byPath[ref.Path] = len(v.r.Items)
		v.r.Items = append(v.r.Items, ref)
		return
	}
	first := &v.r.Items[i]
	sizeDiffers := first.Size >= 0 && ref.Size >= 0 && first.Size != ref.Size
	sumDiffers := validSHA256(first.SHA256) && validSHA256(ref.SHA256) && first.SHA256 != ref.SHA256
	if sizeDiffers || sumDiffers {
		v.errorf(forAll, ref.Doc, where, "path %s is also listed by %s product %s version %s item %s with a different size or sha256",
			ref.Path, first.Doc, first.ProductID, first.Version, first.Key)
		return
	}
	if first.Size < 0 {
		first.Size = ref.Size
	}
	if !validSHA256(first.SHA256) {
		first.SHA256 = ref.SHA256
	}
}

// ---- small helpers ----

func sortedKeys(o object) []string {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func asObject(v any) object {
	o, _ := v.(object)
	return o
}

func stringList(v any) ([]string, bool) {
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func validDataType(v any) bool { return v == DataTypeIDs || v == DataTypeDL }

// describe renders o[key] for a message: "missing", or its JSON text.
func describe(o object, key string) string {
	val, present := o[key]
	if !present {
		return "missing"
	}
	b, err := json.Marshal(val)
	if err != nil {
		return fmt.Sprint(val)
	}
	return string(b)
}
