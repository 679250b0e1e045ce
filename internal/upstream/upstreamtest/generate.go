// Package upstreamtest builds synthetic simplestreams trees shaped like
// images.maas.io, with real (small) item files, and serves them over HTTP
// with fault injection, for tests of mirroring and publishing.
package upstreamtest

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/customstream/customstream/internal/simplestreams"
)

// Paths of the index documents, relative to the mirror root.
const (
	IndexPath       = "streams/v1/index.json"
	SignedIndexPath = "streams/v1/index.sjson"
)

// Content ids of the three product files, as on images.maas.io.
const (
	BootContentID       = "com.ubuntu.maas:stable:v3:download"
	BootloaderContentID = "com.ubuntu.maas:stable:1:bootloader-download"
	CentosContentID     = "com.ubuntu.maas:stable:centos-bases-download"
)

// Release is an Ubuntu release, e.g. {"jammy", "22.04", "Jammy Jellyfish"}.
type Release struct{ Name, Version, Codename string }

// Options shape a generated tree; zero fields take the defaults noted.
type Options struct {
	Releases    []Release // default jammy 22.04 and noble 24.04
	Arches      []string  // default amd64, arm64
	Versions    []string  // version names of every product, default "20250615", "20250718"
	ItemSize    int       // bytes of squashfs and root-tgz; initrd 1/2, kernel 1/4, bootloader 1/8, manifest 1/16 of it; default 64 KiB
	Bootloaders bool      // write the bootloader product file (DefaultOptions sets it)
	Centos      bool      // write the centos single-file product file: centos 7 and 8 for every arch (DefaultOptions sets it)
	Seed        int64     // item contents are a function of (Seed, path), so two generations agree
	// SharedFraction (0..1) of the newest version's item files are byte copies
	// of the previous version's files for the same product and item (same
	// sha256, different path), for dedup tests; AddVersion applies it too.
	SharedFraction float64
	Updated        time.Time // `updated` of every document; zero means a fixed date, so generations agree
}

// DefaultOptions returns the options of a tree like images.maas.io: boot
// images, bootloaders and centos, with default releases, arches and versions.
func DefaultOptions() Options {
	return Options{Bootloaders: true, Centos: true, Seed: 1}
}

// Defaults filled in for zero Options fields.
var (
	DefaultReleases = []Release{{"jammy", "22.04", "Jammy Jellyfish"}, {"noble", "24.04", "Noble Numbat"}}
	DefaultArches   = []string{"amd64", "arm64"}
	DefaultVersions = []string{"20250615", "20250718"}
	defaultUpdated  = time.Date(2025, 7, 24, 8, 1, 49, 0, time.UTC)
)

// DefaultItemSize is the size of big items when Options.ItemSize is 0.
const DefaultItemSize = 64 << 10

// FileInfo is the size and sha256 (lowercase hex) of one item file.
type FileInfo struct {
	Size   int64
	SHA256 string
}

// Tree is a generated stream below Dir (the mirror root, parent of streams/).
type Tree struct {
	Dir      string
	Index    simplestreams.Index
	Products map[string]*simplestreams.Products // by content id
	Files    map[string]FileInfo                // item files by path relative to Dir; contents stay on disk

	opts     Options
	specs    []productSpec
	versions []string // sorted
	updated  time.Time
	sign     func([]byte) ([]byte, error) // set by Sign, reused by AddVersion
}

// sizeClass picks an item's size relative to Options.ItemSize.
type sizeClass int

const (
	sizeBig sizeClass = iota
	sizeInitrd
	sizeKernel
	sizeBootloader
	sizeManifest
)

// itemSpec is one item of one version, before its file exists.
type itemSpec struct {
	key, ftype, path string
	class            sizeClass
	extra            map[string]string
}

// productSpec is a product's fixed fields and how to name its items in a version.
type productSpec struct {
	contentID string
	id        string
	fields    map[string]string
	nulls     []string
	items     func(version string) []itemSpec
}

// Generate writes index.json, one product file per kind (boot, bootloader,
// centos) and every item file under dir, and returns a Tree describing them.
func Generate(dir string, o Options) (*Tree, error) {
	o, err := normalize(o)
	if err != nil {
		return nil, err
	}
	t := &Tree{
		Dir:      dir,
		Products: make(map[string]*simplestreams.Products),
		Files:    make(map[string]FileInfo),
		opts:     o,
		updated:  o.Updated,
	}
	t.specs = bootSpecs(o.Releases, o.Arches)
	if o.Bootloaders {
		t.specs = append(t.specs, bootloaderSpecs(o.Releases[0].Name)...)
	}
	if o.Centos {
		t.specs = append(t.specs, centosSpecs(o.Arches)...)
	}
	versions := slices.Clone(o.Versions)
	slices.Sort(versions)
	for i, v := range versions {
		prev, share := "", 0.0
		if i > 0 && i == len(versions)-1 {
			prev, share = versions[i-1], o.SharedFraction
		}
		if err := t.generateVersion(v, prev, share); err != nil {
			return nil, err
		}
	}
	if err := t.writeDocuments(); err != nil {
		return nil, err
	}
	return t, nil
}

func normalize(o Options) (Options, error) {
	if len(o.Releases) == 0 {
		o.Releases = slices.Clone(DefaultReleases)
	}
	if len(o.Arches) == 0 {
		o.Arches = slices.Clone(DefaultArches)
	}
	if len(o.Versions) == 0 {
		o.Versions = slices.Clone(DefaultVersions)
	}
	if o.ItemSize == 0 {
		o.ItemSize = DefaultItemSize
	}
	if o.Updated.IsZero() {
		o.Updated = defaultUpdated
	}
	if o.ItemSize < 0 {
		return o, fmt.Errorf("upstreamtest: ItemSize %d is negative", o.ItemSize)
	}
	if o.SharedFraction < 0 || o.SharedFraction > 1 || math.IsNaN(o.SharedFraction) {
		return o, fmt.Errorf("upstreamtest: SharedFraction %v is not within 0..1", o.SharedFraction)
	}
	for _, r := range o.Releases {
		if err := checkName("release name", r.Name); err != nil {
			return o, err
		}
		if err := checkName("release version", r.Version); err != nil {
			return o, err
		}
	}
	for _, a := range o.Arches {
		if err := checkName("arch", a); err != nil {
			return o, err
		}
	}
	seen := make(map[string]bool)
	for _, v := range o.Versions {
		if err := checkName("version", v); err != nil {
			return o, err
		}
		if seen[v] {
			return o, fmt.Errorf("upstreamtest: version %q given twice", v)
		}
		seen[v] = true
	}
	return o, nil
}

// checkName refuses names that would not make one clean path segment.
func checkName(what, s string) error {
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\\ \t\n\x00") {
		return fmt.Errorf("upstreamtest: %s %q is not a plain path segment", what, s)
	}
	return nil
}

// bootSpecs returns ga- and hwe- products for every release and arch; the
// two share one squashfs and manifest per release, arch and version.
func bootSpecs(releases []Release, arches []string) []productSpec {
	var specs []productSpec
	for _, r := range releases {
		for _, arch := range arches {
			for _, kind := range []string{"ga", "hwe"} {
				specs = append(specs, bootSpec(r, arch, kind, ""))
			}
		}
	}
	return specs
}

// bootSpec is one boot product; kind is "ga" or "hwe", a non-empty kflavor
// (e.g. "lowlatency") makes a "-kflavor" subarch with its own kernels.
func bootSpec(r Release, arch, kind, kflavor string) productSpec {
	flavor := "generic"
	subarch := kind + "-" + r.Version
	kernelDir := subarch
	if kflavor != "" {
		flavor = kflavor
		subarch += "-" + kflavor
	}
	subarches := "generic,ga-" + r.Version
	if kind == "hwe" {
		subarches += ",hwe-" + r.Version
	}
	kpackage := "linux-" + flavor
	if kind == "hwe" {
		kpackage += "-hwe-" + r.Version
	}
	codename := r.Codename
	if codename == "" {
		codename = strings.ToUpper(r.Name[:1]) + r.Name[1:]
	}
	fields := map[string]string{
		"arch": arch, "kflavor": flavor, "krel": r.Name, "label": "stable", "os": "ubuntu",
		"release": r.Name, "release_codename": codename, "release_title": releaseTitle(r.Version),
		"subarch": subarch, "subarches": subarches, "version": r.Version,
	}
	var nulls []string
	if eol, esm, ok := supportEOL(r.Version); ok {
		fields["support_eol"], fields["support_esm_eol"] = eol, esm
	} else {
		nulls = []string{"support_eol"} // MAAS 3.8 wants the key, null is fine
	}
	return productSpec{
		contentID: BootContentID,
		id:        fmt.Sprintf("com.ubuntu.maas.stable:v3:boot:%s:%s:%s", r.Version, arch, subarch),
		fields:    fields,
		nulls:     nulls,
		items: func(v string) []itemSpec {
			base := path.Join(r.Name, arch, v)
			kernels := path.Join(base, kernelDir, flavor)
			return []itemSpec{
				{key: "boot-kernel", ftype: "boot-kernel", path: kernels + "/boot-kernel", class: sizeKernel,
					extra: map[string]string{"kpackage": kpackage}},
				{key: "boot-initrd", ftype: "boot-initrd", path: kernels + "/boot-initrd", class: sizeInitrd,
					extra: map[string]string{"kpackage": kpackage}},
				{key: "manifest", ftype: "manifest", path: base + "/squashfs.manifest", class: sizeManifest},
				{key: "squashfs", ftype: "squashfs", path: base + "/squashfs", class: sizeBig},
			}
		},
	}
}

// releaseTitle is "22.04 LTS" for an April release of an even year, else the version.
func releaseTitle(version string) string {
	year, month, ok := strings.Cut(version, ".")
	if n, err := strconv.Atoi(year); ok && err == nil && n%2 == 0 && month == "04" {
		return version + " LTS"
	}
	return version
}

// supportEOL gives plausible support_eol and support_esm_eol dates (5 and 10 years on).
func supportEOL(version string) (eol, esm string, ok bool) {
	year, month, found := strings.Cut(version, ".")
	y, err1 := strconv.Atoi(year)
	m, err2 := strconv.Atoi(month)
	if !found || err1 != nil || err2 != nil || y < 0 || y > 7000 || m < 1 || m > 12 {
		return "", "", false
	}
	return fmt.Sprintf("%04d-%02d-30", 2000+y+5, m), fmt.Sprintf("%04d-%02d-30", 2000+y+10, m), true
}

// bootloaderSpecs are the four bootloaders MAAS installs.
func bootloaderSpecs(srcRelease string) []productSpec {
	type archive struct{ key, pkg, version string }
	grubSigned := []archive{
		{"grub2-signed", "grub2-signed", "1.187.6+2.06-2ubuntu14.4"},
		{"shim-signed", "shim-signed", "1.51.3+15.7-0ubuntu1"},
	}
	defs := []struct {
		os, typ, arch, arches string
		archives              []archive
	}{
		{"grub-efi-signed", "uefi", "amd64", "amd64", grubSigned},
		{"grub-efi", "uefi", "arm64", "arm64", grubSigned},
		{"grub-ieee1275", "open-firmware", "ppc64el", "ppc64el,ppc64", []archive{{"grub2", "grub2", "2.06-2ubuntu14.4"}}},
		{"pxelinux", "pxe", "i386", "i386,amd64", []archive{{"syslinux", "syslinux", "3:6.04~git20190206.bf6db5b4+dfsg1-3ubuntu1"}}},
	}
	specs := make([]productSpec, 0, len(defs))
	for _, d := range defs {
		specs = append(specs, productSpec{
			contentID: BootloaderContentID,
			id:        fmt.Sprintf("com.ubuntu.maas.stable:1:%s:%s:%s", d.os, d.typ, d.arch),
			fields: map[string]string{
				"arch": d.arch, "arches": d.arches, "bootloader-type": d.typ, "label": "stable", "os": d.os,
			},
			items: func(v string) []itemSpec {
				items := make([]itemSpec, 0, len(d.archives))
				for _, a := range d.archives {
					items = append(items, itemSpec{
						key: a.key, ftype: "archive.tar.xz", class: sizeBootloader,
						path: path.Join("bootloaders", d.typ, d.arch, v, a.key+".tar.xz"),
						extra: map[string]string{
							"src_package": a.pkg, "src_release": srcRelease, "src_version": a.version + "~" + v,
						},
					})
				}
				return items
			},
		})
	}
	return specs
}

// centosSpecs are centos 7 and 8 single-file products for every arch.
func centosSpecs(arches []string) []productSpec {
	defs := []struct{ release, version, title, eol string }{
		{"centos70", "7.0", "CentOS 7", "2024-06-30"},
		{"centos8", "8", "CentOS 8", "2029-05-31"},
	}
	var specs []productSpec
	for _, d := range defs {
		for _, arch := range arches {
			specs = append(specs, productSpec{
				contentID: CentosContentID,
				id:        fmt.Sprintf("com.ubuntu.maas.stable:centos-bases:%s:%s", d.version, arch),
				fields: map[string]string{
					"arch": arch, "label": "stable", "os": "centos", "release": d.release, "release_title": d.title,
					"subarch": "generic", "subarches": "generic", "support_eol": d.eol, "version": d.version,
				},
				items: func(v string) []itemSpec {
					base := path.Join("centos", d.release, arch, v)
					return []itemSpec{
						{key: "manifest", ftype: "manifest", path: base + "/root-tgz.manifest", class: sizeManifest},
						{key: "root-tgz", ftype: "root-tgz", path: base + "/root-tgz", class: sizeBig},
					}
				},
			})
		}
	}
	return specs
}

// generateVersion adds version v to every product and writes its files. When
// prev is set, a share fraction of the new files copy prev's files.
func (t *Tree) generateVersion(v, prev string, share float64) error {
	sources := t.sharedSources(v, prev, share)
	for _, spec := range t.specs {
		doc := t.productsDoc(spec.contentID)
		p, ok := doc.Products[spec.id]
		if !ok {
			p = simplestreams.Product{
				Fields:     spec.fields,
				NullFields: spec.nulls,
				Versions:   make(map[string]simplestreams.Version),
			}
		}
		items := make(map[string]simplestreams.Item)
		for _, it := range spec.items(v) {
			info, err := t.itemFile(it, sources[it.path])
			if err != nil {
				return err
			}
			items[it.key] = simplestreams.Item{
				FType: it.ftype, Path: it.path, SHA256: info.SHA256, Size: info.Size, Extra: it.extra,
			}
		}
		p.Versions[v] = simplestreams.Version{Items: items}
		doc.Products[spec.id] = p
	}
	t.versions = append(t.versions, v)
	slices.Sort(t.versions)
	return nil
}

// sharedSources picks which new item paths copy an item of prev: a fraction
// of the distinct new paths, chosen by a seeded hash so the choice is stable.
func (t *Tree) sharedSources(v, prev string, share float64) map[string]string {
	if prev == "" || share <= 0 {
		return nil
	}
	from := make(map[string]string)
	for _, spec := range t.specs {
		old := make(map[string]string)
		for _, it := range spec.items(prev) {
			old[it.key] = it.path
		}
		for _, it := range spec.items(v) {
			if src, ok := old[it.key]; ok {
				from[it.path] = src
			}
		}
	}
	rank := make(map[string]string, len(from))
	candidates := make([]string, 0, len(from))
	for p := range from {
		rank[p] = seededHex(t.opts.Seed, "share", p)
		candidates = append(candidates, p)
	}
	slices.SortFunc(candidates, func(a, b string) int { return strings.Compare(rank[a], rank[b]) })
	n := int(math.Round(share * float64(len(candidates))))
	chosen := make(map[string]string, n)
	for _, p := range candidates[:n] {
		chosen[p] = from[p]
	}
	return chosen
}

func (t *Tree) productsDoc(contentID string) *simplestreams.Products {
	doc, ok := t.Products[contentID]
	if !ok {
		doc = &simplestreams.Products{
			ContentID: contentID,
			DataType:  simplestreams.DataTypeIDs,
			Format:    simplestreams.FormatProducts,
			Products:  make(map[string]simplestreams.Product),
		}
		t.Products[contentID] = doc
	}
	return doc
}

// itemFile writes the item's file once (products may share a path) and returns its info.
func (t *Tree) itemFile(it itemSpec, copyFrom string) (FileInfo, error) {
	if info, ok := t.Files[it.path]; ok {
		return info, nil
	}
	var info FileInfo
	var err error
	if copyFrom != "" {
		info, err = copyFile(t.Dir, copyFrom, it.path)
	} else {
		info, err = writeItem(t.Dir, it.path, t.opts.Seed, itemSize(t.opts.ItemSize, it.class), it.class == sizeManifest)
	}
	if err != nil {
		return FileInfo{}, err
	}
	t.Files[it.path] = info
	return info, nil
}

func itemSize(big int, class sizeClass) int64 {
	div := map[sizeClass]int{sizeBig: 1, sizeInitrd: 2, sizeKernel: 4, sizeBootloader: 8, sizeManifest: 16}[class]
	return int64(max(big/div, 1))
}

// createItem creates the file for rel below dir, making its directories.
func createItem(dir, rel string) (*os.File, error) {
	name := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return nil, fmt.Errorf("upstreamtest: %w", err)
	}
	f, err := os.Create(name)
	if err != nil {
		return nil, fmt.Errorf("upstreamtest: %w", err)
	}
	return f, nil
}

// writeItem streams size deterministic bytes for (seed, rel) to disk while hashing them.
func writeItem(dir, rel string, seed int64, size int64, text bool) (FileInfo, error) {
	f, err := createItem(dir, rel)
	if err != nil {
		return FileInfo{}, err
	}
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 64<<10)
	_, err = io.CopyN(w, contentReader(seed, rel, text), size)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return FileInfo{}, fmt.Errorf("upstreamtest: write %s: %w", rel, err)
	}
	return FileInfo{Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// copyFile copies the item file src to dst (same bytes, different path).
func copyFile(dir, src, dst string) (FileInfo, error) {
	in, err := os.Open(filepath.Join(dir, filepath.FromSlash(src)))
	if err != nil {
		return FileInfo{}, fmt.Errorf("upstreamtest: %w", err)
	}
	defer in.Close()
	out, err := createItem(dir, dst)
	if err != nil {
		return FileInfo{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return FileInfo{}, fmt.Errorf("upstreamtest: copy %s to %s: %w", src, dst, err)
	}
	return FileInfo{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// contentReader yields an endless deterministic stream for (seed, rel):
// random bytes, or manifest-like text lines ("name\tversion\n").
func contentReader(seed int64, rel string, text bool) io.Reader {
	var key [32]byte
	copy(key[:], seededSum(seed, "content", rel))
	r := rand.NewChaCha8(key)
	if !text {
		return r
	}
	return &textReader{src: r}
}

type textReader struct {
	src *rand.ChaCha8
	pos int
}

const textAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789.-+~"

func (tr *textReader) Read(p []byte) (int, error) {
	if _, err := tr.src.Read(p); err != nil {
		return 0, err
	}
	for i := range p {
		switch tr.pos % 48 {
		case 23:
			p[i] = '\t'
		case 47:
			p[i] = '\n'
		default:
			p[i] = textAlphabet[int(p[i])%len(textAlphabet)]
		}
		tr.pos++
	}
	return len(p), nil
}

// seededSum hashes (seed, purpose, s) so unrelated uses of one seed do not correlate.
func seededSum(seed int64, purpose, s string) []byte {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	h.Write([]byte(purpose + "\x00" + s))
	return h.Sum(nil)
}

func seededHex(seed int64, purpose, s string) string {
	return hex.EncodeToString(seededSum(seed, purpose, s))
}

// writeDocuments writes every product file and index.json from t's model.
func (t *Tree) writeDocuments() error {
	stamp := simplestreams.FormatTime(t.updated)
	t.Index = simplestreams.Index{
		Format:  simplestreams.FormatIndex,
		Updated: stamp,
		Index:   make(map[string]simplestreams.IndexEntry, len(t.Products)),
	}
	for cid, doc := range t.Products {
		doc.Updated = stamp
		p := productsPath(cid)
		if err := writeJSON(t.Dir, p, doc, true); err != nil {
			return err
		}
		t.Index.Index[cid] = simplestreams.IndexEntry{
			DataType: doc.DataType, Format: doc.Format, Path: p, Products: doc.ProductIDs(), Updated: stamp,
		}
	}
	return writeJSON(t.Dir, IndexPath, t.Index, true)
}

// productsPath is where a content id's product file lives, as on images.maas.io.
func productsPath(contentID string) string { return "streams/v1/" + contentID + ".json" }

// writeJSON writes v at rel below dir, indented like images.maas.io (or compact).
func writeJSON(dir, rel string, v any, indent bool) error {
	var data []byte
	var err error
	if indent {
		data, err = json.MarshalIndent(v, "", " ")
	} else {
		data, err = json.Marshal(v)
	}
	if err != nil {
		return fmt.Errorf("upstreamtest: encode %s: %w", rel, err)
	}
	return writeFile(dir, rel, append(data, '\n'))
}

func writeFile(dir, rel string, data []byte) error {
	name := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return fmt.Errorf("upstreamtest: %w", err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		return fmt.Errorf("upstreamtest: %w", err)
	}
	return nil
}

// Versions returns the version names every product has, sorted (oldest first).
func (t *Tree) Versions() []string { return slices.Clone(t.versions) }

// AddVersion adds version name to every product, writes its item files and
// rewrites the documents with `updated` one hour later (re-signing them if
// Sign was called). Options.SharedFraction of its files copy the greatest
// older version's files.
func (t *Tree) AddVersion(name string) error {
	if err := checkName("version", name); err != nil {
		return err
	}
	if slices.Contains(t.versions, name) {
		return fmt.Errorf("upstreamtest: version %q already exists", name)
	}
	prev := ""
	for _, v := range t.versions {
		if v < name {
			prev = v
		}
	}
	if err := t.generateVersion(name, prev, t.opts.SharedFraction); err != nil {
		return err
	}
	t.updated = t.updated.Add(time.Hour)
	if err := t.writeDocuments(); err != nil {
		return err
	}
	if t.sign != nil {
		return t.Sign(t.sign)
	}
	return nil
}

// Sign writes a clearsigned .sjson beside every .json document, with
// index.sjson naming the .sjson product files. sign turns a payload into
// clearsigned bytes (FakeClearsign, or a real OpenPGP signer).
func (t *Tree) Sign(sign func([]byte) ([]byte, error)) error {
	if sign == nil {
		return errors.New("upstreamtest: Sign needs a signing function")
	}
	signed := simplestreams.Index{
		Format:  t.Index.Format,
		Updated: t.Index.Updated,
		Index:   make(map[string]simplestreams.IndexEntry, len(t.Index.Index)),
	}
	for cid, e := range t.Index.Index {
		payload, err := os.ReadFile(filepath.Join(t.Dir, filepath.FromSlash(e.Path)))
		if err != nil {
			return fmt.Errorf("upstreamtest: sign: %w", err)
		}
		sjson := strings.TrimSuffix(e.Path, ".json") + ".sjson"
		if err := signTo(t.Dir, sjson, payload, sign); err != nil {
			return err
		}
		e.Path = sjson
		signed.Index[cid] = e
	}
	payload, err := json.MarshalIndent(signed, "", " ")
	if err != nil {
		return fmt.Errorf("upstreamtest: encode signed index: %w", err)
	}
	if err := signTo(t.Dir, SignedIndexPath, append(payload, '\n'), sign); err != nil {
		return err
	}
	t.sign = sign
	return nil
}

func signTo(dir, rel string, payload []byte, sign func([]byte) ([]byte, error)) error {
	out, err := sign(payload)
	if err != nil {
		return fmt.Errorf("upstreamtest: sign %s: %w", rel, err)
	}
	return writeFile(dir, rel, out)
}

// FakeClearsign wraps payload in OpenPGP clearsigned armour with a bogus
// signature: enough for clients that only unwrap (the project's validator),
// never for gpgv.
func FakeClearsign(payload []byte) ([]byte, error) {
	var b strings.Builder
	b.WriteString("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n")
	lines := strings.Split(strings.TrimSuffix(string(payload), "\n"), "\n")
	for _, line := range lines {
		if strings.HasPrefix(line, "-") { // dash-escaping, RFC 4880 §7.1
			b.WriteString("- ")
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	b.WriteString("-----BEGIN PGP SIGNATURE-----\n\nbm90IGEgcmVhbCBzaWduYXR1cmU=\n-----END PGP SIGNATURE-----\n")
	return []byte(b.String()), nil
}
