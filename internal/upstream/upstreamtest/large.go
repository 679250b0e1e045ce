package upstreamtest

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/customstream/customstream/internal/simplestreams"
)

// GenerateLarge writes index.json and the product files, but no item files,
// for n boot-image products plus the four bootloaders, shaped like
// images.maas.io, for benchmarks of catalog fetch, parse and filter. Item
// sizes and sha256 sums are plausible and a function of (seed, path). The
// product files are compact JSON (20,000 products take about 40 MB), written
// one product at a time so memory stays small.
func GenerateLarge(dir string, n int, seed int64) error {
	if n < 0 {
		return fmt.Errorf("upstreamtest: GenerateLarge: n %d is negative", n)
	}
	stamp := simplestreams.FormatTime(defaultUpdated)
	index := simplestreams.Index{Format: simplestreams.FormatIndex, Updated: stamp, Index: make(map[string]simplestreams.IndexEntry)}
	kinds := []struct {
		contentID string
		specs     []productSpec
	}{
		{BootContentID, largeBootSpecs(n)},
		{BootloaderContentID, bootloaderSpecs("jammy")},
	}
	for _, k := range kinds {
		if len(k.specs) == 0 {
			continue // never publish an empty product file
		}
		rel := productsPath(k.contentID)
		ids, err := writeLargeProducts(dir, rel, k.contentID, stamp, k.specs, seed)
		if err != nil {
			return err
		}
		index.Index[k.contentID] = simplestreams.IndexEntry{
			DataType: simplestreams.DataTypeIDs, Format: simplestreams.FormatProducts, Path: rel, Products: ids, Updated: stamp,
		}
	}
	return writeJSON(dir, IndexPath, index, true)
}

// writeLargeProducts streams a product file with DefaultVersions of every
// spec and made-up item infos, and returns the product ids, sorted.
func writeLargeProducts(dir, rel, contentID, stamp string, specs []productSpec, seed int64) (ids []string, err error) {
	specs = slices.Clone(specs)
	slices.SortFunc(specs, func(a, b productSpec) int { return strings.Compare(a.id, b.id) })
	f, err := createItem(dir, rel)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("upstreamtest: %w", cerr)
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	header, err := json.Marshal(map[string]string{
		"content_id": contentID, "datatype": simplestreams.DataTypeIDs, "format": simplestreams.FormatProducts, "updated": stamp,
	})
	if err != nil {
		return nil, fmt.Errorf("upstreamtest: encode %s: %w", rel, err)
	}
	w.Write(header[:len(header)-1]) // reopen the object to append "products"
	w.WriteString(`,"products":{`)
	for i, spec := range specs {
		p := simplestreams.Product{Fields: spec.fields, NullFields: spec.nulls, Versions: make(map[string]simplestreams.Version)}
		for _, v := range DefaultVersions {
			items := make(map[string]simplestreams.Item)
			for _, it := range spec.items(v) {
				info := fakeInfo(seed, it.path, it.class)
				items[it.key] = simplestreams.Item{FType: it.ftype, Path: it.path, SHA256: info.SHA256, Size: info.Size, Extra: it.extra}
			}
			p.Versions[v] = simplestreams.Version{Items: items}
		}
		key, err := json.Marshal(spec.id)
		if err != nil {
			return nil, fmt.Errorf("upstreamtest: encode %s: %w", spec.id, err)
		}
		body, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("upstreamtest: encode %s: %w", spec.id, err)
		}
		if i > 0 {
			w.WriteByte(',')
		}
		w.Write(key)
		w.WriteByte(':')
		w.Write(body)
		ids = append(ids, spec.id)
	}
	w.WriteString("}}\n")
	if err := w.Flush(); err != nil { // bufio keeps the first write error, so checking here covers all
		return nil, fmt.Errorf("upstreamtest: write %s: %w", rel, err)
	}
	return ids, nil
}

// largeArches are the arches images.maas.io carries.
var largeArches = []string{"amd64", "arm64", "armhf", "i386", "ppc64el", "s390x"}

// largeBootSpecs enumerates n products: for each release (known ones first,
// then synthetic), each arch, ga/hwe and generic/lowlatency kernels.
func largeBootSpecs(n int) []productSpec {
	known := []Release{
		{"trusty", "14.04", "Trusty Tahr"}, {"xenial", "16.04", "Xenial Xerus"},
		{"bionic", "18.04", "Bionic Beaver"}, {"focal", "20.04", "Focal Fossa"},
		{"jammy", "22.04", "Jammy Jellyfish"}, {"noble", "24.04", "Noble Numbat"},
	}
	specs := make([]productSpec, 0, n)
	for i := 0; len(specs) < n; i++ {
		var r Release
		if i < len(known) {
			r = known[i]
		} else {
			k := i - len(known)
			r = Release{
				Name:     fmt.Sprintf("synthetic%04d", i),
				Version:  fmt.Sprintf("%d.%s", 26+k/2, [2]string{"04", "10"}[k%2]),
				Codename: fmt.Sprintf("Synthetic %04d", i),
			}
		}
		for _, arch := range largeArches {
			for _, kflavor := range []string{"", "lowlatency"} {
				for _, kind := range []string{"ga", "hwe"} {
					if len(specs) < n {
						specs = append(specs, bootSpec(r, arch, kind, kflavor))
					}
				}
			}
		}
	}
	return specs
}

// realSizes are typical images.maas.io sizes per class.
var realSizes = map[sizeClass]int64{
	sizeBig: 450 << 20, sizeInitrd: 110 << 20, sizeKernel: 12 << 20, sizeBootloader: 1200 << 10, sizeManifest: 18 << 10,
}

// fakeInfo gives an item a size near the real one for its class (±10%) and
// a sha256-shaped sum, both a function of (seed, path).
func fakeInfo(seed int64, rel string, class sizeClass) FileInfo {
	sum := seededSum(seed, "large", rel)
	base := realSizes[class]
	jitter := int64(binary.BigEndian.Uint64(sum[:8]) % uint64(base/5+1))
	return FileInfo{Size: base - base/10 + jitter, SHA256: hex.EncodeToString(sum)}
}
