package transfer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/signing"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
)

// progressLog records every progress report.
type progressLog [][2]int64

func (p *progressLog) report(done, total int64) { *p = append(*p, [2]int64{done, total}) }

// requireComplete wants reports that never go back and end at total of total.
func (p progressLog) requireComplete(t *testing.T, total int64) {
	t.Helper()
	require.NotEmpty(t, p)
	assert.Equal(t, [2]int64{total, total}, p[len(p)-1])
	for i := 1; i < len(p); i++ {
		assert.GreaterOrEqual(t, p[i][0], p[i-1][0], "progress goes back at report %d", i)
	}
}

// export writes src's archive into memory.
func export(t *testing.T, src *dataDir) []byte {
	t.Helper()
	var buf bytes.Buffer
	_, err := Export(context.Background(), &buf, src.Dir, ExportOptions{})
	require.NoError(t, err)
	return buf.Bytes()
}

func importInto(t *testing.T, dst *dataDir, archive []byte, o ImportOptions) (*ImportResult, error) {
	t.Helper()
	return Import(context.Background(), bytes.NewReader(archive), dst.Images, dst.Blobs, o)
}

// entry is one member of an archive.
type entry struct {
	hdr  tar.Header
	data []byte
}

func readEntries(t *testing.T, archive []byte) []entry {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(archive))
	var out []entry
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		out = append(out, entry{hdr: *hdr, data: data})
	}
}

func writeEntries(t *testing.T, es []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		hdr := e.hdr
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.data))
		}
		require.NoError(t, tw.WriteHeader(&hdr))
		_, err := tw.Write(e.data)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

func TestExportImportRoundTrip(t *testing.T) {
	src := newSource(t)
	file := filepath.Join(t.TempDir(), "stream.tar")
	var exported progressLog
	res, err := ExportFile(context.Background(), file, src.Dir, ExportOptions{Progress: exported.report})
	require.NoError(t, err)
	assert.NoFileExists(t, file+".part")
	files, bytesTotal := src.distinctFiles(t)
	assert.Equal(t, src.signer.Fingerprint(), res.Fingerprint)
	assert.Equal(t, len(src.images(t)), res.Versions)
	assert.Equal(t, files, res.Files, "every distinct file once")
	assert.Equal(t, bytesTotal, res.Bytes)

	archive, err := os.ReadFile(file)
	require.NoError(t, err)
	t.Run("layout", func(t *testing.T) {
		es := readEntries(t, archive)
		var names []string
		var docBytes int64
		for _, e := range es {
			names = append(names, e.hdr.Name)
			assert.Equal(t, byte(tar.TypeReg), e.hdr.Typeflag, e.hdr.Name)
			if strings.HasPrefix(e.hdr.Name, publish.StreamsDir) || e.hdr.Name == KeyringPath {
				docBytes += e.hdr.Size
			}
		}
		require.Len(t, es, res.Documents+1+res.Files)
		assert.Equal(t, []string{publish.IndexPath, publish.SignedIndexPath}, names[:2], "the indexes come first")
		for _, n := range names[2:res.Documents] {
			assert.True(t, strings.HasPrefix(n, publish.StreamsDir+"/"), "%s among the documents", n)
		}
		assert.Equal(t, KeyringPath, names[res.Documents], "then the keyring")
		assert.Equal(t, src.signer.PublicKeyring(), es[res.Documents].data, "the public key as /keyring.gpg serves it")
		for _, e := range es[res.Documents+1:] {
			assert.True(t, strings.HasPrefix(e.hdr.Name, "uploads/") || strings.HasPrefix(e.hdr.Name, "mirror/"), e.hdr.Name)
		}
		exported.requireComplete(t, docBytes+bytesTotal)
		assert.NotContains(t, string(archive), "PRIVATE KEY", "no private key travels")
	})

	dst := newDataDir(t)
	var imported progressLog
	var out bytes.Buffer
	ires, err := importInto(t, dst, archive, ImportOptions{Progress: imported.report, Out: &out})
	require.NoError(t, err)
	assert.Equal(t, res.Versions, ires.Added)
	assert.Zero(t, ires.Present)
	assert.Equal(t, bytesTotal, ires.Staged, "an empty data directory stores every file")
	imported.requireComplete(t, bytesTotal)
	assert.Contains(t, out.String(), "Signed by "+src.signer.Fingerprint()+" (verified with the archive's own keyring.gpg")

	t.Run("the imported stream verifies and matches the source's", func(t *testing.T) {
		res := dst.check(t)
		assert.Equal(t, len(res.Report.Items), res.ItemsChecked, "every item downloaded and checked")
		assert.Equal(t, src.streamProducts(t), dst.streamProducts(t), "products, ids, fields, versions and items as the source publishes them")
		assert.Equal(t, []string{images.ImportOrigin(src.signer.Fingerprint())}, dst.origins(t))
		for _, img := range dst.images(t) {
			assert.Equal(t, store.StatusReady, img.Status)
		}
	})

	t.Run("importing again changes nothing", func(t *testing.T) {
		before := dst.state(t)
		again, err := importInto(t, dst, archive, ImportOptions{})
		require.NoError(t, err)
		assert.Zero(t, again.Added)
		assert.Equal(t, res.Versions, again.Present)
		assert.Zero(t, again.Staged, "every file is in the blob store already")
		assert.Equal(t, before, dst.state(t))
	})

	t.Run("the source's keyring is required with --keyring", func(t *testing.T) {
		_, err := importInto(t, dst, archive, ImportOptions{Keyring: src.signer.Keyring()})
		require.NoError(t, err)
	})
}

// otherKey is a key that did not sign anything of the source.
func otherKey(t *testing.T) *openpgp.Entity {
	t.Helper()
	key, err := signing.Generate()
	require.NoError(t, err)
	return key
}

// resign replaces the signed document at p with its text signed by key.
func resign(t *testing.T, src *dataDir, key *openpgp.Entity, es []entry, p string) {
	t.Helper()
	for i := range es {
		if es[i].hdr.Name == p {
			payload, _, err := simplestreams.VerifyClearsigned(es[i].data, src.signer.Keyring())
			require.NoError(t, err)
			es[i].data, err = simplestreams.Clearsign(payload, key)
			require.NoError(t, err)
			return
		}
	}
	t.Fatalf("%s is not in the archive", p)
}

// firstItem is the index of the archive's first item file.
func firstItem(es []entry) int {
	for i, e := range es {
		if strings.HasPrefix(e.hdr.Name, "uploads/") || strings.HasPrefix(e.hdr.Name, "mirror/") {
			return i
		}
	}
	return -1
}

func named(es []entry, name string) int {
	for i, e := range es {
		if e.hdr.Name == name {
			return i
		}
	}
	return -1
}

func productFile(es []entry, ext string) int {
	for i, e := range es {
		if strings.HasPrefix(e.hdr.Name, publish.StreamsDir+"/com.") && strings.HasSuffix(e.hdr.Name, ext) {
			return i
		}
	}
	return -1
}

func TestImportRefusesBadArchives(t *testing.T) {
	src := newSource(t)
	good := export(t, src)
	stranger := otherKey(t)
	extra := func(name string, typ byte, link string) func(t *testing.T, es []entry) []entry {
		return func(t *testing.T, es []entry) []entry {
			e := entry{hdr: tar.Header{Typeflag: typ, Name: name, Linkname: link, Mode: 0o644}}
			if typ == tar.TypeReg {
				e.data = []byte("evil")
			}
			return append(es, e)
		}
	}
	tests := []struct {
		name    string
		edit    func(t *testing.T, es []entry) []entry // on the entries of the good archive
		raw     func(archive []byte) []byte            // or on its bytes
		keyring openpgp.EntityList
		want    string
	}{
		{name: "tampered item", edit: func(t *testing.T, es []entry) []entry {
			i := firstItem(es)
			es[i].data = bytes.Clone(es[i].data)
			es[i].data[len(es[i].data)/2] ^= 0xff
			return es
		}, want: "has sha256"},
		{name: "item of another size", edit: func(t *testing.T, es []entry) []entry {
			i := firstItem(es)
			es[i].data = append(bytes.Clone(es[i].data), 'x')
			return es
		}, want: "bytes in the archive, the signed documents say"},
		{name: "tampered product file", edit: func(t *testing.T, es []entry) []entry {
			i := productFile(es, ".json")
			es[i].data = bytes.Replace(es[i].data, []byte(`"sha256": "`), []byte(`"sha256": "0`), 1)
			return es
		}, want: "differs from the signed text"},
		{name: "tampered signed product file", edit: func(t *testing.T, es []entry) []entry {
			i := productFile(es, ".sjson")
			es[i].data = bytes.Replace(es[i].data, []byte(`"size": `), []byte(`"size": 1`), 1)
			return es
		}, want: "bad signature"},
		{name: "tampered index.json", edit: func(t *testing.T, es []entry) []entry {
			i := named(es, publish.IndexPath)
			es[i].data = bytes.Replace(es[i].data, []byte(`"updated": "`), []byte(`"updated": "Mon, `), 1)
			return es
		}, want: "differs from the signed"},
		{name: "index signed by a key the archive's keyring lacks", edit: func(t *testing.T, es []entry) []entry {
			resign(t, src, stranger, es, publish.SignedIndexPath)
			return es
		}, want: "unknown key"},
		{name: "product file signed by another key", edit: func(t *testing.T, es []entry) []entry {
			resign(t, src, stranger, es, es[productFile(es, ".sjson")].hdr.Name)
			return es
		}, want: "unknown key"},
		{name: "not signed with the required keyring", keyring: openpgp.EntityList{stranger}, want: "unknown key"},
		{name: "truncated in a file", raw: func(a []byte) []byte { return a[:len(a)*2/3] }, want: "truncated"},
		{name: "truncated between files", edit: func(t *testing.T, es []entry) []entry { return es[:len(es)-1] }, want: "incomplete"},
		{name: "truncated before the keyring", edit: func(t *testing.T, es []entry) []entry { return es[:2] }, want: "ends before keyring.gpg"},
		{name: "not a tar archive", raw: func(a []byte) []byte { return bytes.Repeat([]byte("not a tar "), 200) }, want: "not a tar archive"},
		{name: "path traversal", edit: extra("../evil", tar.TypeReg, ""), want: "not a clean path"},
		{name: "path traversal inside the tree", edit: extra("uploads/../../evil", tar.TypeReg, ""), want: "not a clean path"},
		{name: "absolute path", edit: extra("/etc/evil", tar.TypeReg, ""), want: "absolute path"},
		{name: "symlink", edit: extra("uploads/evil", tar.TypeSymlink, "/etc/passwd"), want: "only regular files"},
		{name: "hard link", edit: extra("uploads/evil", tar.TypeLink, "streams/v1/index.json"), want: "only regular files"},
		{name: "directory", edit: extra("uploads/", tar.TypeDir, ""), want: "only regular files"},
		{name: "unknown file", edit: extra("uploads/evil", tar.TypeReg, ""), want: "unknown file uploads/evil"},
		{name: "unknown document", edit: func(t *testing.T, es []entry) []entry {
			doc := entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: publish.ProductsPath, Mode: 0o644}, data: []byte("{}")}
			return append([]entry{doc}, es...)
		}, want: "unknown document streams/v1/products.json"},
		{name: "duplicate entry", edit: func(t *testing.T, es []entry) []entry {
			return append(es, es[firstItem(es)])
		}, want: "in the archive twice"},
		{name: "duplicate document", edit: func(t *testing.T, es []entry) []entry {
			return append([]entry{es[0]}, es...)
		}, want: "in the archive twice"},
		{name: "same content twice", edit: func(t *testing.T, es []entry) []entry {
			// ga and hwe share their squashfs: a second path of it, sent again.
			c, err := verifyDocuments(docsOf(es), src.signer.Keyring())
			require.NoError(t, err)
			for _, f := range c.files {
				if len(f.paths) > 1 {
					i := named(es, f.first())
					dup := es[i]
					dup.hdr.Name = f.paths[1]
					return append(es, dup)
				}
			}
			t.Fatal("no file has two paths")
			return nil
		}, want: "is in the archive twice"},
		{name: "file before the keyring", edit: func(t *testing.T, es []entry) []entry {
			k := named(es, KeyringPath)
			keyring := es[k]
			return append(append(es[:k:k], es[k+1:]...), keyring)
		}, want: "comes before keyring.gpg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			archive := good
			if tt.edit != nil {
				archive = writeEntries(t, tt.edit(t, readEntries(t, good)))
			}
			if tt.raw != nil {
				archive = tt.raw(good)
			}
			dst := newDataDir(t)
			dst.upload(t, images.Metadata{OS: "ubuntu", Release: "jammy", Arch: "amd64", Version: "22.04"},
				map[string]string{images.FileKernel: "k", images.FileInitrd: "i", images.FileRootfs: "r", images.FileManifest: "m"})
			before := dst.state(t)
			res, err := importInto(t, dst, archive, ImportOptions{Keyring: tt.keyring})
			require.Error(t, err, "imported %+v", res)
			assert.Contains(t, err.Error(), tt.want)
			assert.Equal(t, before, dst.state(t), "records, published tree, blobs and staging are as they were")
		})
	}
	t.Run("the good archive imports", func(t *testing.T) {
		_, err := importInto(t, newDataDir(t), writeEntries(t, readEntries(t, good)), ImportOptions{})
		require.NoError(t, err, "the edits above are what breaks each archive")
	})
}

func docsOf(es []entry) map[string][]byte {
	docs := map[string][]byte{}
	for _, e := range es {
		if strings.HasPrefix(e.hdr.Name, publish.StreamsDir+"/") {
			docs[e.hdr.Name] = e.data
		}
	}
	return docs
}

func TestImportRefusesAProductFromElsewhere(t *testing.T) {
	src := newSource(t)
	archive := export(t, src)
	dst := newDataDir(t)
	// The same boot image uploaded here: the product comes from an upload.
	local := dst.upload(t, images.Metadata{OS: "ubuntu", Release: "noble", Arch: "amd64", Version: "24.04"},
		map[string]string{images.FileKernel: "k", images.FileInitrd: "i", images.FileRootfs: "r", images.FileManifest: "m"})
	before := dst.state(t)
	_, err := importInto(t, dst, archive, ImportOptions{})
	require.Error(t, err)
	assert.ErrorIs(t, err, store.ErrConflict)
	assert.Contains(t, err.Error(), "product "+local.ProductID+" already comes from upload")
	assert.Equal(t, before, dst.state(t))
}
