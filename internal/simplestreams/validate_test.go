package simplestreams

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	indexDoc = "streams/v1/index.json"
	bootDoc  = "streams/v1/test:v3:download.json"
	baseDoc  = "streams/v1/test:centos-bases-download.json"
	blDoc    = "streams/v1/test:1:bootloader-download.json"
	bootCID  = "test:v3:download"
	baseCID  = "test:centos-bases-download"
	blCID    = "test:1:bootloader-download"
	bootID   = "test.stable:v3:boot:24.04:amd64:ga-24.04"
	baseID   = "test.stable:centos-bases:9:amd64"
	blID     = "test.stable:1:grub-efi-signed:uefi:amd64"
	ver      = "20250101"
	updated  = "Thu, 24 Jul 2025 08:01:49 +0000"
)

// tree maps a path below the mirror root to a document: a map is written as
// JSON, a string as it is.
type tree map[string]any

func (tr tree) obj(doc string, keys ...string) map[string]any {
	o := tr[doc].(map[string]any)
	for _, k := range keys {
		o = o[k].(map[string]any)
	}
	return o
}

func (tr tree) entry(cid string) map[string]any { return tr.obj(indexDoc, "index", cid) }

func (tr tree) product(doc, id string) map[string]any { return tr.obj(doc, "products", id) }

func (tr tree) versions(doc, id string) map[string]any {
	return tr.obj(doc, "products", id, "versions")
}

func (tr tree) items(doc, id, version string) map[string]any {
	return tr.obj(doc, "products", id, "versions", version, "items")
}

func (tr tree) item(doc, id, version, key string) map[string]any {
	return tr.items(doc, id, version)[key].(map[string]any)
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func testItem(ftype, path string, extra ...string) map[string]any {
	it := map[string]any{"ftype": ftype, "path": path, "sha256": sum(path), "size": len(path)}
	for i := 0; i+1 < len(extra); i += 2 {
		it[extra[i]] = extra[i+1]
	}
	return it
}

func indexEntry(path string, products ...string) map[string]any {
	return map[string]any{
		"datatype": DataTypeIDs, "format": FormatProducts, "path": path,
		"products": products, "updated": updated,
	}
}

func productFile(cid string, products map[string]any) map[string]any {
	return map[string]any{
		"content_id": cid, "datatype": DataTypeIDs, "format": FormatProducts,
		"updated": updated, "products": products,
	}
}

func bootProduct() map[string]any {
	dir := "noble/amd64/" + ver + "/"
	return map[string]any{
		"arch": "amd64", "kflavor": "generic", "krel": "noble", "label": "stable", "os": "ubuntu",
		"release": "noble", "release_codename": "Noble Numbat", "release_title": "24.04 LTS",
		"subarch": "ga-24.04", "subarches": "generic,ga-24.04", "support_eol": "2029-05-31",
		"version": "24.04",
		"versions": map[string]any{ver: map[string]any{"items": map[string]any{
			"boot-kernel": testItem("boot-kernel", dir+"ga-24.04/generic/boot-kernel", "kpackage", "linux-generic"),
			"boot-initrd": testItem("boot-initrd", dir+"ga-24.04/generic/boot-initrd", "kpackage", "linux-generic"),
			"manifest":    testItem("manifest", dir+"squashfs.manifest"),
			"squashfs":    testItem("squashfs", dir+"squashfs"),
		}}},
	}
}

func baseProduct() map[string]any {
	dir := "centos/9/amd64/" + ver + "/"
	return map[string]any{
		"arch": "amd64", "label": "stable", "os": "centos", "release": "centos9",
		"release_title": "CentOS 9", "subarch": "generic", "subarches": "generic",
		"support_eol": "2027-05-31", "version": "9",
		"versions": map[string]any{ver: map[string]any{"items": map[string]any{
			"manifest": testItem("manifest", dir+"root-tgz.manifest"),
			"root-tgz": testItem("root-tgz", dir+"root-tgz"),
		}}},
	}
}

func bootloaderProduct() map[string]any {
	dir := "bootloaders/uefi/amd64/" + ver + "/"
	src := []string{"src_release", "noble", "src_version", "1.0"}
	return map[string]any{
		"arch": "amd64", "arches": "amd64", "bootloader-type": "uefi", "label": "stable",
		"os": "grub-efi-signed",
		"versions": map[string]any{ver: map[string]any{"items": map[string]any{
			"grub2-signed": testItem("archive.tar.xz", dir+"grub2-signed.tar.xz", append(src, "src_package", "grub2-signed")...),
			"shim-signed":  testItem("archive.tar.xz", dir+"shim-signed.tar.xz", append(src, "src_package", "shim-signed")...),
		}}},
	}
}

// validTree is a small stream with one product of each kind.
func validTree() tree {
	return tree{
		indexDoc: map[string]any{
			"format": FormatIndex, "updated": updated,
			"index": map[string]any{
				bootCID: indexEntry(bootDoc, bootID),
				baseCID: indexEntry(baseDoc, baseID),
				blCID:   indexEntry(blDoc, blID),
			},
		},
		bootDoc: productFile(bootCID, map[string]any{bootID: bootProduct()}),
		baseDoc: productFile(baseCID, map[string]any{baseID: baseProduct()}),
		blDoc:   productFile(blCID, map[string]any{blID: bootloaderProduct()}),
	}
}

func writeTree(t *testing.T, tr tree) string {
	t.Helper()
	root := t.TempDir()
	for path, doc := range tr {
		var data []byte
		switch d := doc.(type) {
		case string:
			data = []byte(d)
		default:
			var err error
			data, err = json.MarshalIndent(d, "", " ")
			require.NoError(t, err)
		}
		full := filepath.Join(root, filepath.FromSlash(path))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, data, 0o644))
	}
	return root
}

func validateTree(t *testing.T, tr tree, index string) *Report {
	t.Helper()
	r, err := Validate(DirSource(writeTree(t, tr)), index)
	require.NoError(t, err)
	return r
}

type want struct {
	severity, maas, msg string
}

func errorFor(maas, msg string) want { return want{SeverityError, maas, msg} }

func warningFor(maas, msg string) want { return want{SeverityWarning, maas, msg} }

func hasProblem(r *Report, w want) bool {
	for _, p := range r.Problems {
		if p.Severity == w.severity && p.MAAS == w.maas && strings.Contains(p.Message, w.msg) {
			return true
		}
	}
	return false
}

func problemList(r *Report) string {
	var b strings.Builder
	for _, p := range r.Problems {
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

func TestValidateRealImagesMAASIO(t *testing.T) {
	r, err := Validate(DirSource("testdata/images.maas.io"), indexDoc)
	require.NoError(t, err)
	assert.Empty(t, r.Errors(), problemList(r))
	assert.True(t, r.OK())

	// images.maas.io carries a pxelinux bootloader for amd64, which MAAS
	// ignores: reported, but only as a warning.
	for _, maas := range []string{MAAS37, MAAS38} {
		assert.True(t, hasProblem(r, warningFor(maas, "pxe/pxelinux/amd64")), problemList(r))
	}
	assert.Len(t, r.Problems, 2, problemList(r))

	require.NotNil(t, r.Index)
	assert.Len(t, r.Index.Index, 3)
	require.Len(t, r.Products, 3)
	paths := map[string]bool{}
	for _, doc := range r.Products {
		for _, p := range doc.Products {
			for _, v := range p.Versions {
				for _, it := range v.Items {
					paths[it.Path] = true
				}
			}
		}
	}
	assert.Len(t, r.Items, len(paths))
	for i := 1; i < len(r.Items); i++ {
		assert.Less(t, r.Items[i-1].Path, r.Items[i].Path)
	}
}

func TestValidateSmallTreeIsClean(t *testing.T) {
	r := validateTree(t, validTree(), indexDoc)
	assert.Empty(t, r.Problems, problemList(r))
	assert.Len(t, r.Products, 3)
	assert.Len(t, r.Items, 8)
	require.NotNil(t, r.Index)
	assert.Equal(t, updated, r.Index.Updated)
	assert.Contains(t, r.Items, ItemRef{
		Path: "centos/9/amd64/" + ver + "/root-tgz", Size: int64(len("centos/9/amd64/" + ver + "/root-tgz")),
		SHA256: sum("centos/9/amd64/" + ver + "/root-tgz"),
		Doc:    baseDoc, ProductID: baseID, Version: ver, Key: "root-tgz",
	})
}

func TestValidateBrokenTrees(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(tree)
		want   []want // each must be reported
		absent []want // none may be reported
		ok     bool   // only warnings expected
	}{
		// index document
		{"index not JSON", func(tr tree) { tr[indexDoc] = "{not json" },
			[]want{errorFor(MAASAll, "is not valid JSON")}, nil, false},
		{"index format", func(tr tree) { tr.obj(indexDoc)["format"] = "index:2.0" },
			[]want{errorFor(MAAS37, "Unknown format"), errorFor(SStreamMirror, "Unknown format")}, nil, false},
		{"index updated missing", func(tr tree) { delete(tr.obj(indexDoc), "updated") },
			[]want{errorFor(MAAS38, "has no updated")}, nil, false},
		{"index updated GMT", func(tr tree) { tr.obj(indexDoc)["updated"] = "Thu, 24 Jul 2025 08:01:49 GMT" },
			[]want{errorFor(MAAS38, "named time zone")}, nil, false},
		{"index updated garbage", func(tr tree) { tr.obj(indexDoc)["updated"] = "yesterday" },
			[]want{errorFor(MAAS38, "neither RFC 2822")}, nil, false},
		{"index updated ISO 8601", func(tr tree) { tr.obj(indexDoc)["updated"] = "2025-07-24T08:01:49Z" },
			nil, nil, true},
		{"index without entries", func(tr tree) { tr.obj(indexDoc)["index"] = map[string]any{} },
			[]want{errorFor(MAAS38, "lists no product files")}, nil, false},

		// index entries
		{"entry format missing", func(tr tree) { delete(tr.entry(bootCID), "format") },
			[]want{errorFor(MAAS37, "silently skip"), errorFor(SStreamMirror, "silently skip")},
			[]want{errorFor(MAAS38, "format")}, false},
		{"entry format wrong", func(tr tree) { tr.entry(bootCID)["format"] = "products:2.0" },
			[]want{errorFor(MAAS37, "silently skip"), errorFor(SStreamMirror, "silently skip")}, nil, false},
		{"entry datatype wrong", func(tr tree) { tr.entry(bootCID)["datatype"] = "image-metadata" },
			[]want{errorFor(MAAS38, `datatype is "image-metadata"`)}, nil, false},
		{"entry datatype missing", func(tr tree) { delete(tr.entry(bootCID), "datatype") },
			[]want{warningFor(MAASAll, "has no datatype")}, nil, true},
		{"entry updated GMT", func(tr tree) { tr.entry(blCID)["updated"] = "Thu, 24 Jul 2025 08:01:49 GMT" },
			[]want{errorFor(MAAS38, "named time zone")}, nil, false},
		{"entry path missing", func(tr tree) { delete(tr.entry(bootCID), "path") },
			[]want{errorFor(MAASAll, "has no path")}, nil, false},
		{"entry path absolute", func(tr tree) { tr.entry(bootCID)["path"] = "/" + bootDoc },
			[]want{errorFor(MAASAll, "is absolute")}, nil, false},
		{"entry path dotdot", func(tr tree) { tr.entry(bootCID)["path"] = "streams/../" + bootDoc },
			[]want{errorFor(MAASAll, `".." segment`)}, nil, false},
		{"entry path URL", func(tr tree) { tr.entry(bootCID)["path"] = "http://elsewhere/" + bootDoc },
			[]want{errorFor(MAASAll, "is a URL")}, nil, false},
		{"entry products missing", func(tr tree) { delete(tr.entry(bootCID), "products") },
			[]want{errorFor(MAAS38, "has no products list")}, nil, false},
		{"entry lists a product the file lacks", func(tr tree) {
			tr.entry(bootCID)["products"] = []string{bootID, "test.stable:v3:boot:22.04:amd64:ga-22.04"}
		}, []want{errorFor(MAASAll, "which its product file does not have")}, nil, false},
		{"entry misses a product of the file", func(tr tree) { tr.entry(bootCID)["products"] = []string{} },
			[]want{errorFor(MAASAll, "does not list product "+bootID)}, nil, false},

		// product file documents
		{"product file missing", func(tr tree) { delete(tr, bootDoc) },
			[]want{errorFor(MAASAll, "cannot be read")}, nil, false},
		{"product file not JSON", func(tr tree) { tr[bootDoc] = `{"content_id": ` },
			[]want{errorFor(MAASAll, "is not valid JSON")}, nil, false},
		{"content_id missing", func(tr tree) { delete(tr.obj(bootDoc), "content_id") },
			[]want{errorFor(MAASAll, "has no content_id")}, nil, false},
		{"content_id differs from index key", func(tr tree) { tr.obj(bootDoc)["content_id"] = "other" },
			[]want{errorFor(MAASAll, `but the index names it "`+bootCID+`"`)}, nil, false},
		{"product datatype wrong", func(tr tree) { tr.obj(bootDoc)["datatype"] = "image-metadata" },
			[]want{errorFor(MAAS38, "MAAS 3.8 rejects the file")}, nil, false},
		{"product datatype missing", func(tr tree) { delete(tr.obj(baseDoc), "datatype") },
			[]want{errorFor(MAAS38, "datatype is missing")}, nil, false},
		{"product format missing", func(tr tree) { delete(tr.obj(bootDoc), "format") },
			[]want{errorFor(MAAS37, "Unknown format"), errorFor(SStreamMirror, "Unknown format")}, nil, false},
		{"product updated missing", func(tr tree) { delete(tr.obj(blDoc), "updated") },
			[]want{errorFor(MAAS38, "has no updated")}, nil, false},
		{"product file without products", func(tr tree) {
			tr.obj(bootDoc)["products"] = map[string]any{}
			tr.entry(bootCID)["products"] = []string{}
		}, []want{errorFor(MAAS38, "fail the whole source")}, nil, false},
		{"product file mixes kinds", func(tr tree) {
			tr.obj(bootDoc, "products")[baseID] = baseProduct()
			tr.entry(bootCID)["products"] = []string{bootID, baseID}
		}, []want{errorFor(MAAS38, "mixes product kinds")}, nil, false},
		{"product of no known kind", func(tr tree) {
			items := tr.items(bootDoc, bootID, ver)
			delete(items, "boot-kernel")
			delete(items, "boot-initrd")
		}, []want{errorFor(MAAS38, "neither a boot image")}, nil, false},

		// multi-file products
		{"ubuntu id without v3", func(tr tree) { renameProduct(tr, bootDoc, bootCID, bootID, "test.stable:boot:24.04:amd64:ga-24.04") },
			[]want{errorFor(MAAS38, `lacks ":v3:"`), errorFor(MAAS37, `lacks ":v3:"`)}, nil, false},
		{"custom multi-file id without v3", func(tr tree) {
			tr.product(bootDoc, bootID)["os"] = "custom"
			renameProduct(tr, bootDoc, bootCID, bootID, "test.stable:boot:custom:amd64")
		}, []want{errorFor(MAAS38, `lacks ":v3:"`)}, []want{errorFor(MAAS37, `lacks ":v3:"`)}, false},
		{"field not a string", func(tr tree) { tr.product(bootDoc, bootID)["version"] = 24.04 },
			[]want{errorFor(MAAS38, "field version is 24.04, not a string")}, nil, false},
		{"field empty", func(tr tree) { tr.product(bootDoc, bootID)["subarches"] = "" },
			[]want{errorFor(MAAS38, "field subarches is empty")}, nil, false},
		{"support_eol not YYYY-MM-DD", func(tr tree) { tr.product(bootDoc, bootID)["support_eol"] = "2029-5-31" },
			[]want{errorFor(MAAS38, "not a YYYY-MM-DD date")}, nil, false},
		{"support_eol not a date", func(tr tree) { tr.product(baseDoc, baseID)["support_eol"] = "2029-02-30" },
			[]want{errorFor(MAAS38, "not a YYYY-MM-DD date")}, nil, false},
		{"support_eol null", func(tr tree) { tr.product(bootDoc, bootID)["support_eol"] = nil },
			nil, nil, true},
		{"support_eol absent", func(tr tree) { delete(tr.product(bootDoc, bootID), "support_eol") },
			[]want{warningFor(MAAS38, "has no support_eol")}, nil, true},
		{"version support_esm_eol bad", func(tr tree) { tr.obj(bootDoc, "products", bootID, "versions", ver)["support_esm_eol"] = "2034" },
			[]want{errorFor(MAAS38, "support_esm_eol is \"2034\"")}, nil, false},
		{"version without boot-kernel", func(tr tree) { delete(tr.items(bootDoc, bootID, ver), "boot-kernel") },
			[]want{errorFor(MAAS37, "has no boot-kernel item"), errorFor(MAAS38, "has no boot-kernel item")}, nil, false},
		{"version without boot-initrd", func(tr tree) { delete(tr.items(bootDoc, bootID, ver), "boot-initrd") },
			[]want{errorFor(MAAS38, "has no boot-initrd item")}, nil, false},
		{"version without manifest", func(tr tree) { delete(tr.items(bootDoc, bootID, ver), "manifest") },
			[]want{errorFor(MAAS38, "has no manifest item")}, []want{errorFor(MAAS37, "manifest")}, false},
		{"version without squashfs", func(tr tree) { delete(tr.items(bootDoc, bootID, ver), "squashfs") },
			[]want{errorFor(MAAS38, "neither a squashfs nor a root-image.gz")}, nil, false},
		{"version with root-image.gz instead of squashfs", func(tr tree) {
			items := tr.items(bootDoc, bootID, ver)
			delete(items, "squashfs")
			items["root-image.gz"] = testItem("root-image.gz", "noble/amd64/"+ver+"/root-image.gz")
		}, nil, nil, true},

		// single-file products
		{"single-file os unknown", func(tr tree) { tr.product(baseDoc, baseID)["os"] = "freebsd" },
			[]want{errorFor(MAAS37, `os "freebsd" is not one MAAS knows`), errorFor(MAAS38, `os "freebsd"`)}, nil, false},
		{"single-file without manifest", func(tr tree) { delete(tr.items(baseDoc, baseID, ver), "manifest") },
			[]want{errorFor(MAAS38, "has no manifest item")}, nil, false},
		{"single-file version without root", func(tr tree) {
			tr.versions(baseDoc, baseID)["20250202"] = map[string]any{"items": map[string]any{
				"manifest": testItem("manifest", "centos/9/amd64/20250202/root-tgz.manifest"),
			}}
		}, []want{errorFor(MAAS38, "has no root image item")}, nil, false},
		{"single-file with only root-dd", func(tr tree) {
			items := tr.items(baseDoc, baseID, ver)
			delete(items, "root-tgz")
			items["root-dd.xz"] = testItem("root-dd.xz", "centos/9/amd64/"+ver+"/root-dd.xz")
		}, []want{warningFor(MAAS38, "MAAS 3.8 ignores them")}, nil, true},
		{"single-file with root-txz only", func(tr tree) {
			items := tr.items(baseDoc, baseID, ver)
			delete(items, "root-tgz")
			items["root-txz"] = testItem("root-txz", "centos/9/amd64/"+ver+"/root-txz")
		}, []want{warningFor(MAAS38, "has no root-tgz item")}, nil, true},

		// bootloaders
		{"bootloader id without :1:", func(tr tree) { renameProduct(tr, blDoc, blCID, blID, "test.stable:grub-efi-signed:uefi:amd64") },
			[]want{errorFor(MAAS37, `lacks ":1:"`), errorFor(MAAS38, `lacks ":1:"`)}, nil, false},
		{"bootloader combination unknown", func(tr tree) { tr.product(blDoc, blID)["arch"] = "riscv64" },
			[]want{warningFor(MAAS37, "uefi/grub-efi-signed/riscv64"), warningFor(MAAS38, "is not one MAAS installs")}, nil, true},
		{"bootloader item not archive.tar.xz", func(tr tree) { tr.item(blDoc, blID, ver, "grub2-signed")["ftype"] = "root-tgz" },
			[]want{errorFor(MAAS38, `ftype is "root-tgz", want "archive.tar.xz"`)}, nil, false},
		{"bootloader item without src_version", func(tr tree) { delete(tr.item(blDoc, blID, ver, "shim-signed"), "src_version") },
			[]want{errorFor(MAAS38, "has no src_version")}, nil, false},
		{"bootloader version without known keys", func(tr tree) {
			items := tr.items(blDoc, blID, ver)
			items["grub2-unsigned"] = items["grub2-signed"]
			delete(items, "grub2-signed")
			delete(items, "shim-signed")
		}, []want{errorFor(MAAS38, "has none of the bootloader items")}, nil, false},

		// versions
		{"product without versions", func(tr tree) { tr.product(baseDoc, baseID)["versions"] = map[string]any{} },
			[]want{errorFor(MAAS38, "has no versions")}, nil, false},
		{"empty version name", func(tr tree) {
			vs := tr.versions(bootDoc, bootID)
			vs[""] = vs[ver]
			delete(vs, ver)
		}, []want{errorFor(MAASAll, "version name is empty")}, nil, false},
		{"version without items", func(tr tree) { tr.versions(bootDoc, bootID)["20250202"] = map[string]any{"items": map[string]any{}} },
			[]want{errorFor(MAASAll, "has no items")}, nil, false},

		// items
		{"item ftype unknown", func(tr tree) { tr.item(bootDoc, bootID, ver, "manifest")["ftype"] = "manifest.txt" },
			[]want{errorFor(MAASAll, `ftype is "manifest.txt", not a known item type`)}, nil, false},
		{"item ftype missing", func(tr tree) { delete(tr.item(bootDoc, bootID, ver, "manifest"), "ftype") },
			[]want{errorFor(MAASAll, "ftype is missing")}, nil, false},
		{"item path dotdot", func(tr tree) { tr.item(bootDoc, bootID, ver, "squashfs")["path"] = "noble/../../etc/passwd" },
			[]want{errorFor(MAASAll, `".." segment`)}, nil, false},
		{"item path absolute", func(tr tree) { tr.item(bootDoc, bootID, ver, "squashfs")["path"] = "/srv/squashfs" },
			[]want{errorFor(MAASAll, "is absolute")}, nil, false},
		{"item path missing", func(tr tree) { delete(tr.item(bootDoc, bootID, ver, "squashfs"), "path") },
			[]want{errorFor(MAASAll, "empty path")}, nil, false},
		{"item sha256 uppercase", func(tr tree) {
			it := tr.item(bootDoc, bootID, ver, "squashfs")
			it["sha256"] = strings.ToUpper(it["sha256"].(string))
		}, []want{errorFor(MAASAll, "want 64 lowercase hex digits")}, nil, false},
		{"item sha256 short", func(tr tree) { tr.item(bootDoc, bootID, ver, "squashfs")["sha256"] = "abc" },
			[]want{errorFor(MAASAll, "want 64 lowercase hex digits")}, nil, false},
		{"item size a string", func(tr tree) { tr.item(bootDoc, bootID, ver, "squashfs")["size"] = "455872512" },
			[]want{errorFor(SStreamMirror, "sstream-mirror crashes")}, nil, false},
		{"item size negative", func(tr tree) { tr.item(bootDoc, bootID, ver, "squashfs")["size"] = -1 },
			[]want{errorFor(MAASAll, "size -1 is not a non-negative integer")}, nil, false},
		{"item size fractional", func(tr tree) { tr.item(bootDoc, bootID, ver, "squashfs")["size"] = 1.5 },
			[]want{errorFor(MAASAll, "size 1.5 is not")}, nil, false},
		{"item size missing", func(tr tree) { delete(tr.item(bootDoc, bootID, ver, "squashfs"), "size") },
			[]want{errorFor(MAASAll, "size is missing")}, nil, false},
		{"one path with a bad size and a good one", func(tr tree) {
			other := bootProduct()
			id := "test.stable:v3:boot:24.04:amd64:hwe-24.04"
			tr.obj(bootDoc, "products")[id] = other
			tr.entry(bootCID)["products"] = []string{bootID, id}
			tr.item(bootDoc, id, ver, "squashfs")["size"] = "12"
		}, []want{errorFor(SStreamMirror, "JSON string")}, []want{errorFor(MAASAll, "different size or sha256")}, false},
		{"one path with two contents", func(tr tree) {
			tr.item(baseDoc, baseID, ver, "manifest")["path"] = tr.item(bootDoc, bootID, ver, "manifest")["path"]
		}, []want{errorFor(MAASAll, "with a different size or sha256")}, nil, false},
		{"one path shared by two products", func(tr tree) {
			other := bootProduct()
			other["subarch"] = "hwe-24.04"
			id := "test.stable:v3:boot:24.04:amd64:hwe-24.04"
			tr.obj(bootDoc, "products")[id] = other
			tr.entry(bootCID)["products"] = []string{bootID, id}
		}, nil, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := validTree()
			tc.mutate(tr)
			r := validateTree(t, tr, indexDoc)
			for _, w := range tc.want {
				assert.True(t, hasProblem(r, w), "want %s [%s] %q in:%s", w.severity, w.maas, w.msg, problemList(r))
			}
			for _, w := range tc.absent {
				assert.False(t, hasProblem(r, w), "do not want %s [%s] %q in:%s", w.severity, w.maas, w.msg, problemList(r))
			}
			assert.Equal(t, tc.ok, r.OK(), problemList(r))
		})
	}
}

// renameProduct gives a product a new id in its file and index entry.
func renameProduct(tr tree, doc, cid, from, to string) {
	products := tr.obj(doc, "products")
	products[to] = products[from]
	delete(products, from)
	tr.entry(cid)["products"] = []string{to}
}

func TestValidateRequiredFields(t *testing.T) {
	kinds := []struct {
		doc, id string
		fields  []fieldRule
	}{
		{bootDoc, bootID, multiFileFields},
		{baseDoc, baseID, imageFields},
		{blDoc, blID, bootloaderFields},
	}
	for _, k := range kinds {
		for _, f := range k.fields {
			t.Run(k.id+"/"+f.name, func(t *testing.T) {
				tr := validTree()
				delete(tr.product(k.doc, k.id), f.name)
				r := validateTree(t, tr, indexDoc)
				for _, maas := range f.clients {
					assert.True(t, hasProblem(r, errorFor(maas, "has no "+f.name+" field")), problemList(r))
				}
			})
		}
	}
}

func TestValidateIndexUnreadable(t *testing.T) {
	_, err := Validate(DirSource(t.TempDir()), indexDoc)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "read index")
}

// clearsign wraps text as a clearsigned message; the signature is not real.
func clearsign(text string) string {
	var b strings.Builder
	b.WriteString(pgpSignedHeader + "\nHash: SHA512\n\n")
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "-") {
			line = "- " + line
		}
		b.WriteString(line + "\n")
	}
	b.WriteString(pgpSignatureHeader + "\n\niQIzBAEBCgAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n")
	return b.String()
}

// signedTree turns tr into the .sjson tree, clearsigning every document.
func signedTree(t *testing.T, tr tree) tree {
	t.Helper()
	for _, cid := range []string{bootCID, baseCID, blCID} {
		e := tr.entry(cid)
		e["path"] = strings.TrimSuffix(e["path"].(string), ".json") + ".sjson"
	}
	out := tree{}
	for path, doc := range tr {
		data, err := json.MarshalIndent(doc, "", " ")
		require.NoError(t, err)
		out[strings.TrimSuffix(path, ".json")+".sjson"] = clearsign(string(data))
	}
	return out
}

func TestValidateSigned(t *testing.T) {
	const signedIndex = "streams/v1/index.sjson"
	t.Run("clearsigned tree", func(t *testing.T) {
		r := validateTree(t, signedTree(t, validTree()), signedIndex)
		assert.Empty(t, r.Problems, problemList(r))
		assert.Len(t, r.Products, 3)
	})
	t.Run("signed index naming a .json file", func(t *testing.T) {
		st := signedTree(t, validTree())
		var idx map[string]any
		payload, err := clearsignedPayload([]byte(st[signedIndex].(string)))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(payload, &idx))
		idx["index"].(map[string]any)[bootCID].(map[string]any)["path"] = bootDoc
		data, err := json.Marshal(idx)
		require.NoError(t, err)
		st[signedIndex] = clearsign(string(data))
		st[bootDoc] = st[strings.TrimSuffix(bootDoc, ".json")+".sjson"]
		r := validateTree(t, st, signedIndex)
		assert.True(t, hasProblem(r, errorFor(MAASAll, "is not a .sjson file")), problemList(r))
	})
	t.Run("unsigned product file", func(t *testing.T) {
		st := signedTree(t, validTree())
		sjson := strings.TrimSuffix(blDoc, ".json") + ".sjson"
		payload, err := clearsignedPayload([]byte(st[sjson].(string)))
		require.NoError(t, err)
		st[sjson] = string(payload)
		r := validateTree(t, st, signedIndex)
		assert.True(t, hasProblem(r, errorFor(MAASAll, "No signature found")), problemList(r))
	})
}

func TestClearsignedPayloadUndoesDashEscaping(t *testing.T) {
	got, err := clearsignedPayload([]byte(clearsign("{\n-x\n}")))
	require.NoError(t, err)
	assert.Equal(t, "{\n-x\n}", string(got)) // the line break before the signature is not signed text
}

func TestDirSource(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "streams/v1"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "streams/v1/index.json"), []byte("{}"), 0o644))
	outside := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(outside, []byte("secret"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(root, "link")))

	src := DirSource(root)
	data, err := src.ReadFile("streams/v1/index.json")
	require.NoError(t, err)
	assert.Equal(t, "{}", string(data))

	for _, p := range []string{"../x", "/etc/passwd", "streams/../../x", "a\x00b", "file:///etc/passwd"} {
		_, err := src.ReadFile(p)
		require.Error(t, err, p)
		assert.True(t, errors.Is(err, ErrUnsafePath), "%q: %v", p, err)
	}
	_, err = src.ReadFile("link")
	assert.Error(t, err, "a symlink out of the root must not be followed")
	_, err = src.ReadFile("streams/v1/missing.json")
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestHTTPSource(t *testing.T) {
	srv := httptest.NewServer(http.FileServer(http.Dir("testdata/images.maas.io")))
	defer srv.Close()
	src := HTTPSource(srv.URL, srv.Client())

	data, err := src.ReadFile(indexDoc)
	require.NoError(t, err)
	want, err := os.ReadFile("testdata/images.maas.io/" + indexDoc)
	require.NoError(t, err)
	assert.Equal(t, want, data)

	_, err = src.ReadFile("streams/v1/missing.json")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "404")

	_, err = src.ReadFile("../x")
	assert.ErrorIs(t, err, ErrUnsafePath)

	r, err := Validate(src, indexDoc)
	require.NoError(t, err)
	assert.True(t, r.OK(), problemList(r))
	assert.Len(t, r.Products, 3)
}

func TestHTTPSourceCapsDocumentSize(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.CopyN(w, zeroReader{}, maxDocumentSize+1)
	}))
	defer srv.Close()
	_, err := HTTPSource(srv.URL+"/", nil).ReadFile(indexDoc)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "larger than 64 MiB")
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestProblemString(t *testing.T) {
	p := Problem{Severity: SeverityError, MAAS: MAAS38, Doc: bootDoc, Where: "product P version V", Message: "has no manifest item"}
	assert.Equal(t, fmt.Sprintf("error [3.8] %s product P version V: has no manifest item", bootDoc), p.String())
	p.Where = ""
	assert.Equal(t, fmt.Sprintf("error [3.8] %s: has no manifest item", bootDoc), p.String())
}

func TestReportErrorsAndOK(t *testing.T) {
	r := &Report{Problems: []Problem{{Severity: SeverityWarning}}}
	assert.True(t, r.OK())
	assert.Empty(t, r.Errors())
	r.Problems = append(r.Problems, Problem{Severity: SeverityError, Message: "x"})
	assert.False(t, r.OK())
	assert.Len(t, r.Errors(), 1)
}
