// Package publish turns the image records into a simplestreams tree under
// DATA/publish, atomically: item files are hard-linked from the blob store,
// product files are written next, under names that hold their content's
// hash, and the index last; its rename is the one moment the stream changes,
// so a crash at any point leaves the old stream or the new one on disk.
// Product files the index no longer names stay for docGrace, for clients
// that read an older index a moment ago; other files are removed only after
// the new index is in place.
package publish

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/customstream/customstream/internal/blobs"
	"github.com/customstream/customstream/internal/metrics"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
)

// Paths of the stream documents, relative to the mirror root.
const (
	StreamsDir = "streams/v1"
	IndexPath  = "streams/v1/index.json"
	// SignedIndexPath is the clearsigned index MAAS reads from a bare URL.
	SignedIndexPath = "streams/v1/index.sjson"
	ProductsPath    = "streams/v1/products.json"
	// ProductsContentID is the content id of products.json, which lists
	// every uploaded product for tools of the original customstream.
	ProductsContentID = "com.customstream:uploads"
)

// Entry is one published file.
type Entry struct {
	SHA256 string
	Size   int64
	// Data is a document's content, served from memory; nil for image
	// files and for documents left by an earlier process.
	Data []byte
	// ModTime is when Data was written.
	ModTime time.Time
}

// Result describes one publish.
type Result struct {
	Versions int
	Files    int
	// Skipped are the ready versions left out, by image id, with the reason.
	Skipped map[string]string
	Took    time.Duration
}

// Publisher owns the publish directory.
type Publisher struct {
	dir   string
	blobs *blobs.Store
	log   *slog.Logger
	now   func() time.Time

	mu    sync.Mutex // one publish at a time
	files atomic.Pointer[map[string]Entry]
	// retired holds the product files that left the index, with when:
	// they stay served for docGrace.
	retired map[string]time.Time
	// onDisk is what the last publish left in the tree: every kept path,
	// with the blob sum of item links ("" for documents). Later publishes
	// link and prune against it instead of checking every file of every
	// version (with 5,000 versions that took most of a publish); the first
	// publish after a start checks the whole tree.
	onDisk map[string]string

	// sign, when set, writes a clearsigned .sjson beside every .json;
	// keyring checks that kept signed copies are the current key's.
	sign    func([]byte) ([]byte, error)
	keyring openpgp.EntityList
}

// SignWith makes every publish write signed copies, with sign, that the
// keys in keyring verify.
func (p *Publisher) SignWith(sign func([]byte) ([]byte, error), keyring openpgp.EntityList) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sign, p.keyring = sign, keyring
}

// New returns a publisher writing under dataDir/publish.
func New(dataDir string, b *blobs.Store, log *slog.Logger) (*Publisher, error) {
	p := &Publisher{dir: filepath.Join(dataDir, "publish"), blobs: b, log: log, now: time.Now, retired: map[string]time.Time{}}
	if err := os.MkdirAll(filepath.Join(p.dir, StreamsDir), 0o755); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	empty := map[string]Entry{}
	p.files.Store(&empty)
	return p, nil
}

// Dir is the root of the published tree.
func (p *Publisher) Dir() string { return p.dir }

// Lookup returns the published file at rel (relative to the mirror root):
// a document or an item of a published version; nothing else is found.
func (p *Publisher) Lookup(rel string) (Entry, bool) {
	e, ok := (*p.files.Load())[rel]
	return e, ok
}

// Publish rebuilds the tree from imgs; only ready versions are published.
func (p *Publisher) Publish(imgs []store.Image) (*Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := time.Now()
	defer metrics.ObservePublish(start)
	updated := simplestreams.FormatTime(p.now())

	docs, files, skipped := build(imgs, updated)
	// A version whose files cannot be linked (a blob gone, a path taken
	// by a directory) is left out; it must not stop every other one.
	failed := map[string]bool{}
	for i := range imgs {
		img := &imgs[i]
		if img.Status != store.StatusReady || skipped[img.ID] != "" {
			continue
		}
		for _, it := range img.Items {
			if sum, ok := p.onDisk[it.Path]; ok && sum == it.SHA256 {
				continue
			}
			if err := p.link(it.Path, it.SHA256); err != nil {
				failed[img.ID] = true
				skipped[img.ID] = err.Error()
				break
			}
		}
	}
	if len(failed) > 0 {
		kept := make([]store.Image, 0, len(imgs))
		for _, img := range imgs {
			if !failed[img.ID] {
				kept = append(kept, img)
			}
		}
		var again map[string]string
		docs, files, again = build(kept, updated)
		for id, why := range again {
			skipped[id] = why
		}
	}
	for i := range imgs {
		if why := skipped[imgs[i].ID]; why != "" {
			p.log.Error("Version left out of the stream", slog.String("image_id", imgs[i].ID),
				slog.String("product_id", imgs[i].ProductID), slog.String("version_name", imgs[i].VersionName), slog.String("reason", why))
		}
	}
	items := len(files)
	// served is every file a client may fetch: items and documents.
	served := make(map[string]Entry, len(files)+len(docs)+1)
	for k, v := range files {
		served[k] = v
	}
	index := simplestreams.Index{Format: simplestreams.FormatIndex, Index: map[string]simplestreams.IndexEntry{}}
	keep := map[string]bool{IndexPath: true}
	prev := p.previousIndex()
	for _, doc := range docs {
		var rel string
		var e Entry
		var err error
		if doc.ContentID == ProductsContentID {
			rel = ProductsPath
			e, err = p.writeDoc(rel, doc, &doc.Updated, updated, served)
		} else {
			rel, e, err = p.writeProductDoc(doc, prev[doc.ContentID], updated, served)
		}
		if err != nil {
			return nil, err
		}
		keep[signedPath(rel)] = true
		if doc.ContentID != ProductsContentID {
			index.Index[doc.ContentID] = simplestreams.IndexEntry{
				DataType: doc.DataType, Format: doc.Format, Path: rel,
				Products: doc.ProductIDs(), Updated: doc.Updated,
			}
		}
		served[rel] = e
		keep[rel] = true
	}
	p.keepRetired(prev, keep, served)
	// While the index switches, serve both the old and the new files.
	union := make(map[string]Entry, len(served))
	for k, v := range *p.files.Load() {
		union[k] = v
	}
	for k, v := range served {
		union[k] = v
	}
	p.files.Store(&union)
	e, data, changed, err := p.writeJSON(IndexPath, &index, &index.Updated, updated)
	if err != nil {
		return nil, err
	}
	served[IndexPath] = e
	// The signed index names the signed product files: a client that starts
	// from index.sjson checks a signature on everything it reads.
	if p.sign != nil {
		signedIndex := index
		signedIndex.Index = make(map[string]simplestreams.IndexEntry, len(index.Index))
		for id, entry := range index.Index {
			entry.Path = signedPath(entry.Path)
			signedIndex.Index[id] = entry
		}
		if data, err = marshalDoc(&signedIndex); err != nil {
			return nil, fmt.Errorf("publish %s: %w", SignedIndexPath, err)
		}
		se, err := p.writeSigned(SignedIndexPath, data, changed)
		if err != nil {
			return nil, err
		}
		served[SignedIndexPath] = se
		keep[SignedIndexPath] = true
	}
	p.files.Store(&served)
	for rel := range files {
		keep[rel] = true
	}
	if err := p.prune(keep); err != nil {
		p.onDisk = nil
		return nil, err
	}
	p.onDisk = make(map[string]string, len(keep))
	for rel := range keep {
		p.onDisk[rel] = files[rel].SHA256
	}
	versions := 0
	for _, doc := range docs {
		if doc.ContentID == ProductsContentID {
			continue
		}
		for _, prod := range doc.Products {
			versions += len(prod.Versions)
		}
	}
	res := &Result{Versions: versions, Files: items, Skipped: skipped, Took: time.Since(start)}
	p.log.Info("Published stream", slog.Int("versions", res.Versions), slog.Int("files", res.Files), slog.Duration("took", res.Took))
	return res, nil
}

// build groups ready images into product documents, one per content id,
// plus products.json for uploads; no document is ever empty. A version whose
// path another version uses for different content is left out (skipped,
// by image id). Product fields come from the newest version.
func build(imgs []store.Image, updated string) ([]*simplestreams.Products, map[string]Entry, map[string]string) {
	byContent := map[string]*simplestreams.Products{}
	files := map[string]Entry{}
	skipped := map[string]string{}
	newest := map[string]string{} // product id → version its fields come from
	add := func(contentID string, img *store.Image) {
		doc := byContent[contentID]
		if doc == nil {
			doc = &simplestreams.Products{ContentID: contentID, DataType: simplestreams.DataTypeIDs,
				Format: simplestreams.FormatProducts, Updated: updated, Products: map[string]simplestreams.Product{}}
			byContent[contentID] = doc
		}
		prod, ok := doc.Products[img.ProductID]
		if !ok {
			prod.Versions = map[string]simplestreams.Version{}
		}
		if img.VersionName >= newest[contentID+" "+img.ProductID] {
			newest[contentID+" "+img.ProductID] = img.VersionName
			prod.Fields = ProductFields(img)
			prod.NullFields = nil
			if _, ok := prod.Fields["support_eol"]; !ok && img.Kind != store.KindBootloader {
				prod.NullFields = []string{"support_eol"}
			}
		}
		ver := simplestreams.Version{Items: map[string]simplestreams.Item{}}
		for _, it := range img.Items {
			ver.Items[it.Name] = simplestreams.Item{FType: it.FType, Path: it.Path, SHA256: it.SHA256, Size: it.Size, Extra: it.Extra}
		}
		prod.Versions[img.VersionName] = ver
		doc.Products[img.ProductID] = prod
	}
	for i := range imgs {
		img := &imgs[i]
		if img.Status != store.StatusReady {
			continue
		}
		if why := pathConflict(files, img); why != "" {
			skipped[img.ID] = why
			continue
		}
		for _, it := range img.Items {
			files[it.Path] = Entry{SHA256: it.SHA256, Size: it.Size}
		}
		add(img.ContentID, img)
		if img.Origin == store.OriginUpload {
			add(ProductsContentID, img)
		}
	}
	ids := make([]string, 0, len(byContent))
	for id := range byContent {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	docs := make([]*simplestreams.Products, 0, len(ids))
	for _, id := range ids {
		docs = append(docs, byContent[id])
	}
	return docs, files, skipped
}

func pathConflict(files map[string]Entry, img *store.Image) string {
	for _, it := range img.Items {
		if prev, ok := files[it.Path]; ok && prev.SHA256 != it.SHA256 {
			return fmt.Sprintf("path %s is already published with other content", it.Path)
		}
	}
	return ""
}

// ProductFields are the product-level fields MAAS reads for an image: a
// mirrored product keeps its upstream fields.
func ProductFields(img *store.Image) map[string]string {
	if img.Fields != nil {
		f := make(map[string]string, len(img.Fields))
		for k, v := range img.Fields {
			f[k] = v
		}
		return f
	}
	f := map[string]string{
		"os": img.OS, "arch": img.Arch, "release": img.Release, "release_title": img.ReleaseTitle,
		"label": img.Label, "subarch": img.Subarch, "subarches": img.Subarches, "version": img.Version,
	}
	if img.Kind == store.KindBoot {
		f["kflavor"] = img.Kflavor
		f["krel"] = img.Release
	}
	if img.Kind == store.KindBoot || img.ReleaseCodename != "" {
		f["release_codename"] = img.ReleaseCodename
	}
	if img.SupportEOL != "" {
		f["support_eol"] = img.SupportEOL
	}
	return f
}

// docGrace is how long a product file stays after it leaves the index: a
// client that read the old index (MAAS, sstream-mirror) asks for it a moment
// later, and a mirror run may publish several times in between.
const docGrace = 10 * time.Minute

// keepRetired keeps (and serves) the product files of the previous index
// that the new one no longer names, for docGrace after they left it.
func (p *Publisher) keepRetired(prev map[string]*simplestreams.IndexEntry, keep map[string]bool, served map[string]Entry) {
	now := p.now()
	for _, entry := range prev {
		for _, rel := range []string{entry.Path, signedPath(entry.Path)} {
			if _, ok := p.retired[rel]; !ok && !keep[rel] {
				p.retired[rel] = now
			}
		}
	}
	for rel, since := range p.retired {
		if keep[rel] || now.Sub(since) >= docGrace {
			delete(p.retired, rel)
			continue
		}
		e, ok := (*p.files.Load())[rel]
		if !ok {
			// After a restart: what is on disk.
			data, err := os.ReadFile(filepath.Join(p.dir, filepath.FromSlash(rel)))
			if err != nil {
				delete(p.retired, rel)
				continue
			}
			e = entryOf(data)
		}
		served[rel] = e
		keep[rel] = true
	}
}

// docPath names a product file by its content id and the hash of its bytes:
// a changed document is a new file, and the index's rename switches to it.
func docPath(contentID string, data []byte) string {
	sum := sha256.Sum256(data)
	return path.Join(StreamsDir, contentID+"."+hex.EncodeToString(sum[:6])+".json")
}

// previousIndex returns the entries of the index on disk, by content id; an
// unreadable index is no previous generation.
func (p *Publisher) previousIndex() map[string]*simplestreams.IndexEntry {
	out := map[string]*simplestreams.IndexEntry{}
	data, err := os.ReadFile(filepath.Join(p.dir, filepath.FromSlash(IndexPath)))
	if err != nil {
		return out
	}
	var index simplestreams.Index
	if json.Unmarshal(data, &index) != nil {
		return out
	}
	for id, entry := range index.Index {
		if strings.HasPrefix(entry.Path, StreamsDir+"/") && !strings.Contains(entry.Path, "..") {
			entry := entry
			out[id] = &entry
		}
	}
	return out
}

// writeProductDoc writes a product document (and its signed copy) under its
// content-hash name, unless the previous generation's file already holds
// exactly this content: then it keeps that file and its `updated`.
func (p *Publisher) writeProductDoc(doc *simplestreams.Products, prev *simplestreams.IndexEntry, now string, served map[string]Entry) (string, Entry, error) {
	if prev != nil {
		doc.Updated = prev.Updated
		data, err := marshalDoc(doc)
		if err != nil {
			return "", Entry{}, fmt.Errorf("publish %s: %w", doc.ContentID, err)
		}
		old, err := os.ReadFile(filepath.Join(p.dir, filepath.FromSlash(prev.Path)))
		if err == nil && bytes.Equal(old, data) {
			if err := p.writeSignedDoc(prev.Path, data, false, served); err != nil {
				return "", Entry{}, err
			}
			return prev.Path, keptEntryOf(filepath.Join(p.dir, filepath.FromSlash(prev.Path)), data), nil
		}
	}
	doc.Updated = now
	data, err := marshalDoc(doc)
	if err != nil {
		return "", Entry{}, fmt.Errorf("publish %s: %w", doc.ContentID, err)
	}
	rel := docPath(doc.ContentID, data)
	if err := WriteFileAtomic(filepath.Join(p.dir, filepath.FromSlash(rel)), data, 0o644); err != nil {
		return "", Entry{}, err
	}
	return rel, entryOf(data), p.writeSignedDoc(rel, data, true, served)
}

// writeSignedDoc writes the signed copy of a document, with a signer.
func (p *Publisher) writeSignedDoc(rel string, data []byte, changed bool, served map[string]Entry) error {
	if p.sign == nil {
		return nil
	}
	se, err := p.writeSigned(signedPath(rel), data, changed)
	if err != nil {
		return err
	}
	served[signedPath(rel)] = se
	return nil
}

// link makes publish/rel a hard link to the blob, replacing a different file
// by rename so a reader never sees a partial one.
func (p *Publisher) link(rel, sum string) error {
	src := p.blobs.Path(sum)
	srcInfo, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("publish %s: blob %s: %w", rel, sum, err)
	}
	dst := filepath.Join(p.dir, filepath.FromSlash(rel))
	if info, err := os.Stat(dst); err == nil && os.SameFile(info, srcInfo) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("publish %s: %w", rel, err)
	}
	tmp := dst + ".tmp-link"
	_ = os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		return fmt.Errorf("publish %s: %w", rel, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("publish %s: %w", rel, err)
	}
	return nil
}

// writeDoc writes a document at a fixed path and, with a signer, its signed
// copy.
func (p *Publisher) writeDoc(rel string, v any, updated *string, now string, served map[string]Entry) (Entry, error) {
	e, data, changed, err := p.writeJSON(rel, v, updated, now)
	if err != nil {
		return e, err
	}
	return e, p.writeSignedDoc(rel, data, changed, served)
}

// signedPath is the .sjson beside a .json document.
func signedPath(rel string) string {
	return strings.TrimSuffix(rel, ".json") + ".sjson"
}

// writeSigned clearsigns data into rel. An unchanged document keeps its
// signed copy, so a republish of the same records changes no byte.
func (p *Publisher) writeSigned(rel string, data []byte, changed bool) (Entry, error) {
	dst := filepath.Join(p.dir, filepath.FromSlash(rel))
	if !changed {
		if old, err := os.ReadFile(dst); err == nil && p.signedMatches(old, data) {
			return keptEntryOf(dst, old), nil
		}
	}
	signed, err := p.sign(data)
	if err != nil {
		return Entry{}, fmt.Errorf("sign %s: %w", rel, err)
	}
	return entryOf(signed), WriteFileAtomic(dst, signed, 0o644)
}

// signedMatches reports whether a signed copy holds data, signed by the
// current key (a rotated key signs everything again).
func (p *Publisher) signedMatches(signed, data []byte) bool {
	payload, _, err := simplestreams.VerifyClearsigned(signed, p.keyring)
	return err == nil && bytes.Equal(bytes.TrimRight(payload, "\r\n"), bytes.TrimRight(data, "\r\n"))
}

// writeJSON writes a document under a temporary name, syncs and renames it,
// and returns its hash for the ETag, its bytes and whether they changed. A
// document whose content is unchanged keeps its file and its old `updated`
// value (set through *updated), so clients see `updated` move only when
// something did.
func (p *Publisher) writeJSON(rel string, v any, updated *string, now string) (Entry, []byte, bool, error) {
	dst := filepath.Join(p.dir, filepath.FromSlash(rel))
	if old, err := os.ReadFile(dst); err == nil {
		var prev struct {
			Updated string `json:"updated"`
		}
		if json.Unmarshal(old, &prev) == nil && prev.Updated != "" {
			*updated = prev.Updated
			if data, err := marshalDoc(v); err == nil && bytes.Equal(old, data) {
				return keptEntryOf(dst, data), data, false, nil
			}
		}
	}
	*updated = now
	data, err := marshalDoc(v)
	if err != nil {
		return Entry{}, nil, false, fmt.Errorf("publish %s: %w", rel, err)
	}
	return entryOf(data), data, true, WriteFileAtomic(dst, data, 0o644)
}

// marshalDoc encodes a document as json.MarshalIndent(v, "", " ") does,
// plus a newline. A document that writes itself (the stream types) is
// indented straight from its own output: MarshalIndent would first check
// and compact those megabytes again, a third of a publish's time.
func marshalDoc(v any) ([]byte, error) {
	m, ok := v.(json.Marshaler)
	if !ok {
		data, err := json.MarshalIndent(v, "", " ")
		if err != nil {
			return nil, err
		}
		return append(data, '\n'), nil
	}
	compact, err := m.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(len(compact) + len(compact)/2)
	if err := json.Indent(&buf, compact, "", " "); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// entryOf describes a document written now.
func entryOf(data []byte) Entry {
	sum := sha256.Sum256(data)
	return Entry{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data)), Data: data, ModTime: time.Now()}
}

// keptEntryOf describes a document an earlier publish wrote at dst: its
// date is the file's.
func keptEntryOf(dst string, data []byte) Entry {
	e := entryOf(data)
	if fi, err := os.Stat(dst); err == nil {
		e.ModTime = fi.ModTime()
	}
	return e
}

// WriteFileAtomic writes data to dst with mode perm through a synced
// temporary file and a rename, so readers see the old or the new content.
func WriteFileAtomic(dst string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(dst), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp, perm)
	}
	if werr == nil {
		werr = os.Rename(tmp, dst)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", dst, werr)
	}
	// The rename itself survives a power loss only once the directory is synced.
	if d, err := os.Open(filepath.Dir(dst)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// prune removes every file under the tree that keep does not name, and the
// directories that leaves empty: after the first publish, only what the
// last publish kept can be there.
func (p *Publisher) prune(keep map[string]bool) error {
	if p.onDisk == nil {
		return p.pruneAll(keep)
	}
	for rel := range p.onDisk {
		if keep[rel] {
			continue
		}
		full := filepath.Join(p.dir, filepath.FromSlash(rel))
		if err := os.Remove(full); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("publish: prune: %w", err)
		}
		// Parents that this leaves empty go too; Remove fails, as intended, on the first that is not.
		for dir := path.Dir(rel); dir != "." && dir != "streams" && dir != StreamsDir; dir = path.Dir(dir) {
			if os.Remove(filepath.Join(p.dir, filepath.FromSlash(dir))) != nil {
				break
			}
		}
	}
	return nil
}

// pruneAll walks the whole tree for prune.
func (p *Publisher) pruneAll(keep map[string]bool) error {
	var dirs []string
	err := filepath.WalkDir(p.dir, func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(p.dir, full)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && rel != "streams" && rel != StreamsDir {
				dirs = append(dirs, full)
			}
			return nil
		}
		if keep[rel] {
			return nil
		}
		if err := os.Remove(full); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("publish: prune: %w", err)
	}
	// Deepest first, so parents empty out after their children.
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	for _, d := range dirs {
		_ = os.Remove(d) // fails, as intended, when not empty
	}
	return nil
}
