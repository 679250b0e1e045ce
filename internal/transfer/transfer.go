// Package transfer carries a published stream across an air gap: Export
// writes the published tree of a data directory (signed documents, public
// keyring, every item file once) as a tar archive, streaming, while the
// server runs; Import reads such an archive as a stream into another data
// directory, verifies every document and every file, and adds the images.
// It knows nothing of HTTP or queues.
package transfer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/upstream"
)

// KeyringPath is the public keyring in an archive, as the server serves it
// at /keyring.gpg: after the documents, before the files.
const KeyringPath = "keyring.gpg"

// Caps on what an import holds in memory: the documents and the keyring.
const (
	maxDocumentSize  = 64 << 20
	maxDocumentsSize = 512 << 20
	maxKeyringSize   = 1 << 20
)

// copyBufSize is the buffer of every file copy: large enough that sha256
// (SHA-NI, ~1 GB/s) and not the syscalls dominates.
const copyBufSize = 1 << 20

// ErrEmpty is a stream that publishes no version: nothing to transfer.
var ErrEmpty = errors.New("the stream publishes no version: nothing to transfer")

// Progress receives the bytes done out of the total; nil means none.
type Progress func(done, total int64)

// file is one distinct content of the stream: its size and the item paths
// that hold it. An archive carries it once, under its first path.
type file struct {
	sha   string
	size  int64
	paths []string // sorted
}

// first is the path the archive carries the file under.
func (f *file) first() string { return f.paths[0] }

// contents is what a stream's signed documents describe, verified.
type contents struct {
	fingerprint string
	docs        []string // document paths, in archive order
	versions    []images.ImportVersion
	files       []*file          // sorted by first path
	byPath      map[string]*file // every item path
	bytes       int64            // of every distinct file
}

// verifyDocuments checks a stream's documents, held in docs by path: the
// signed index and every signed product file it names verify with keyring
// (one key signs them all); each .json is its .sjson's signed text; the
// stream passes the validator of MAAS's rules; nothing else is there; every
// item path is a safe path below uploads/ or mirror/, and one path or one
// sha256 means one file.
func verifyDocuments(docs map[string][]byte, keyring openpgp.EntityList) (*contents, error) {
	c := &contents{byPath: map[string]*file{}}
	signedIndex, err := verified(docs, publish.SignedIndexPath, keyring, &c.fingerprint)
	if err != nil {
		return nil, err
	}
	var index simplestreams.Index
	if err := unmarshal(publish.SignedIndexPath, signedIndex, &index); err != nil {
		return nil, err
	}
	if err := samePlainIndex(docs, index); err != nil {
		return nil, err
	}
	if len(index.Index) == 0 {
		return nil, ErrEmpty
	}
	c.docs = []string{publish.IndexPath, publish.SignedIndexPath}
	byHash := map[string]*file{}
	for _, cid := range sortedKeys(index.Index) {
		entry := index.Index[cid]
		plain, ok := strings.CutSuffix(entry.Path, ".sjson")
		if err := checkDocPath(entry.Path); err != nil || !ok {
			return nil, fmt.Errorf("%s: entry %s names %q, not a signed product file in %s", publish.SignedIndexPath, cid, entry.Path, publish.StreamsDir)
		}
		plain += ".json"
		payload, err := verified(docs, entry.Path, keyring, &c.fingerprint)
		if err != nil {
			return nil, err
		}
		if err := sameText(docs, plain, entry.Path, payload); err != nil {
			return nil, err
		}
		var doc simplestreams.Products
		if err := unmarshal(entry.Path, payload, &doc); err != nil {
			return nil, err
		}
		if doc.ContentID != cid || !slices.Equal(slices.Sorted(slices.Values(entry.Products)), doc.ProductIDs()) {
			return nil, fmt.Errorf("%s: content id %q and products do not match the index entry %s", entry.Path, doc.ContentID, cid)
		}
		c.docs = append(c.docs, plain, entry.Path)
		if err := c.addVersions(&doc, byHash); err != nil {
			return nil, fmt.Errorf("%s: %w", entry.Path, err)
		}
	}
	for p := range docs {
		if !slices.Contains(c.docs, p) {
			return nil, fmt.Errorf("unknown document %s: the signed index does not name it", p)
		}
	}
	if err := validate(docs); err != nil {
		return nil, err
	}
	for _, f := range byHash {
		sort.Strings(f.paths)
		c.files = append(c.files, f)
		c.bytes += f.size
	}
	sort.Slice(c.files, func(i, j int) bool { return c.files[i].first() < c.files[j].first() })
	return c, nil
}

// checkDocPath accepts a document's path: a .json or .sjson file right in streams/v1.
func checkDocPath(p string) error {
	dir, name := path.Split(p)
	ext := path.Ext(name)
	if dir != publish.StreamsDir+"/" || strings.HasPrefix(name, ".") || strings.ContainsAny(name, "\\\x00") || (ext != ".json" && ext != ".sjson") {
		return fmt.Errorf("%q is not a stream document's path (a .json or .sjson file in %s)", p, publish.StreamsDir)
	}
	return nil
}

// verified returns the signed text of the clearsigned document at p; every
// document must be signed by the key that signed the first (*fingerprint).
func verified(docs map[string][]byte, p string, keyring openpgp.EntityList, fingerprint *string) ([]byte, error) {
	data, ok := docs[p]
	if !ok {
		return nil, fmt.Errorf("%s is missing", p)
	}
	payload, fp, err := simplestreams.VerifyClearsigned(data, keyring)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if *fingerprint != "" && fp != *fingerprint {
		return nil, fmt.Errorf("%s is signed by %s, the index by %s", p, fp, *fingerprint)
	}
	*fingerprint = fp
	return payload, nil
}

// sameText wants the document at plain to be the signed text of signedPath.
func sameText(docs map[string][]byte, plain, signedPath string, payload []byte) error {
	data, ok := docs[plain]
	if !ok {
		return fmt.Errorf("%s is missing", plain)
	}
	if !bytes.Equal(bytes.TrimRight(data, "\r\n"), bytes.TrimRight(payload, "\r\n")) {
		return fmt.Errorf("%s differs from the signed text of %s", plain, signedPath)
	}
	return nil
}

// samePlainIndex wants index.json to be the signed index but for its paths,
// which name the .json product files instead of the .sjson ones.
func samePlainIndex(docs map[string][]byte, signed simplestreams.Index) error {
	data, ok := docs[publish.IndexPath]
	if !ok {
		return fmt.Errorf("%s is missing", publish.IndexPath)
	}
	var plain simplestreams.Index
	if err := unmarshal(publish.IndexPath, data, &plain); err != nil {
		return err
	}
	same := plain.Format == signed.Format && plain.Updated == signed.Updated && len(plain.Index) == len(signed.Index)
	for cid, e := range signed.Index {
		p, ok := plain.Index[cid]
		e.Path = strings.TrimSuffix(e.Path, ".sjson") + ".json"
		same = same && ok && p.Path == e.Path && p.DataType == e.DataType && p.Format == e.Format &&
			p.Updated == e.Updated && slices.Equal(p.Products, e.Products)
	}
	if !same {
		return fmt.Errorf("%s differs from the signed %s", publish.IndexPath, publish.SignedIndexPath)
	}
	return nil
}

func unmarshal(p string, data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// addVersions adds the versions and item files of a verified product file.
func (c *contents) addVersions(doc *simplestreams.Products, byHash map[string]*file) error {
	for _, id := range doc.ProductIDs() {
		prod := doc.Products[id]
		kind := upstream.ProductKind(prod)
		for _, name := range sortedKeys(prod.Versions) {
			v := images.ImportVersion{ContentID: doc.ContentID, ProductID: id, Kind: kind, VersionName: name, Fields: prod.Fields}
			items := prod.Versions[name].Items
			for _, key := range sortedKeys(items) {
				it := items[key]
				if err := images.CheckImportPath(it.Path); err != nil {
					return fmt.Errorf("product %s version %s item %s: %w", id, name, key, err)
				}
				if err := c.addFile(it, byHash); err != nil {
					return fmt.Errorf("product %s version %s item %s: %w", id, name, key, err)
				}
				v.Items = append(v.Items, store.Item{Name: key, FType: it.FType, Path: it.Path, Size: it.Size, SHA256: it.SHA256, Extra: it.Extra})
			}
			c.versions = append(c.versions, v)
		}
	}
	return nil
}

// addFile records an item's content; a path with two contents, or one
// sha256 with two sizes, is an error.
func (c *contents) addFile(it simplestreams.Item, byHash map[string]*file) error {
	if prev, ok := c.byPath[it.Path]; ok {
		if prev.sha != it.SHA256 {
			return fmt.Errorf("path %s is listed with two sha256 sums", it.Path)
		}
		return nil
	}
	f, ok := byHash[it.SHA256]
	if !ok {
		f = &file{sha: it.SHA256, size: it.Size}
		byHash[it.SHA256] = f
	}
	if f.size != it.Size || it.Size < 0 {
		return fmt.Errorf("sha256 %s is listed with sizes %d and %d", it.SHA256, f.size, it.Size)
	}
	f.paths = append(f.paths, it.Path)
	c.byPath[it.Path] = f
	return nil
}

// memSource serves documents held in memory to the validator.
type memSource map[string][]byte

func (m memSource) ReadFile(p string) ([]byte, error) {
	data, ok := m[p]
	if !ok {
		return nil, fmt.Errorf("%s is not in the archive", p)
	}
	return data, nil
}

// validate runs the validator of MAAS's rules over the signed stream.
func validate(docs map[string][]byte) error {
	report, err := simplestreams.Validate(memSource(docs), publish.SignedIndexPath)
	if err != nil {
		return err
	}
	errs := report.Errors()
	if len(errs) == 0 {
		return nil
	}
	lines := make([]string, 0, 3)
	for _, p := range errs[:min(len(errs), 3)] {
		lines = append(lines, p.String())
	}
	return fmt.Errorf("the stream breaks %d rule(s) of MAAS, e.g. %s", len(errs), strings.Join(lines, "; "))
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// meter adds up bytes done and reports them.
type meter struct {
	done, total int64
	report      Progress
}

func (m *meter) add(n int64) {
	m.done += n
	if m.report != nil {
		m.report(m.done, m.total)
	}
}

// meteredReader counts what is read through it and stops once ctx is done.
type meteredReader struct {
	ctx context.Context
	r   io.Reader
	m   *meter
}

func (r *meteredReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	r.m.add(int64(n))
	return n, err
}
