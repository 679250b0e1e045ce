package upstream

import (
	"maps"
	"sort"
	"strings"

	"github.com/customstream/customstream/internal/simplestreams"
)

// Product kinds an Entry can have.
const (
	KindBoot       = "boot"       // kernel-booted: boot-kernel/boot-initrd items
	KindSingle     = "single"     // single-file root image: root-* items
	KindBootloader = "bootloader" // archive.tar.xz items or a bootloader-type field
	KindUnknown    = "unknown"    // none of the above
)

// Entry is one upstream product, flattened for listing and selection.
type Entry struct {
	ContentID, ProductID string
	Kind                 string            // KindBoot, KindSingle, KindBootloader or KindUnknown
	Fields               map[string]string // product fields (os, release, arch, subarch, kflavor, label, …)
	LatestVersion        string            // greatest version name as a plain string
	Size                 int64             // bytes of the latest version's items (each distinct path counted once)
	Versions             int
}

// Entries flattens the catalog: one Entry per product, sorted by product id.
func (c *Catalog) Entries() []Entry {
	var out []Entry
	for cid, file := range c.Products {
		if file == nil {
			continue
		}
		for id, p := range file.Products {
			latest := p.LatestVersion()
			out = append(out, Entry{
				ContentID:     cid,
				ProductID:     id,
				Kind:          ProductKind(p),
				Fields:        maps.Clone(p.Fields),
				LatestVersion: latest,
				Size:          versionSize(p.Versions[latest]),
				Versions:      len(p.Versions),
			})
		}
	}
	// Two product files may share a product id; the content id breaks the tie.
	sort.Slice(out, func(i, j int) bool {
		if out[i].ProductID != out[j].ProductID {
			return out[i].ProductID < out[j].ProductID
		}
		return out[i].ContentID < out[j].ContentID
	})
	return out
}

// ProductKind classifies a product the way MAAS 3.8 does: a bootloader-type field
// or archive item wins, then kernel/initrd items, then single-file root items.
func ProductKind(p simplestreams.Product) string {
	if _, ok := p.Fields["bootloader-type"]; ok {
		return KindBootloader
	}
	var boot, single, bootloader bool
	for _, v := range p.Versions {
		for key, it := range v.Items {
			t := it.FType
			if t == "" {
				t = key
			}
			switch {
			case t == "archive.tar.xz":
				bootloader = true
			case t == "boot-kernel" || t == "boot-initrd":
				boot = true
			// root-image.gz is the old root of a kernel-booted image, not a single-file image.
			case strings.HasPrefix(t, "root-") && t != "root-image.gz":
				single = true
			}
		}
	}
	switch {
	case bootloader:
		return KindBootloader
	case boot:
		return KindBoot
	case single:
		return KindSingle
	}
	return KindUnknown
}

// versionSize adds up item sizes, counting a path shared by several items once.
func versionSize(v simplestreams.Version) int64 {
	seen := make(map[string]bool, len(v.Items))
	var total int64
	for _, it := range v.Items {
		if seen[it.Path] {
			continue
		}
		seen[it.Path] = true
		total += it.Size
	}
	return total
}
