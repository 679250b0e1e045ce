// Package publish turns the image records into a simplestreams tree under
// DATA/publish, atomically: item files are hard-linked from the blob store
// while product files are written, under names that hold their content's
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
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

	mu sync.Mutex // one publish at a time
	// files is what a client may fetch.
	files atomic.Pointer[fileSet]
	// retired holds the product files that left the index, with when:
	// they stay served for docGrace.
	retired map[string]time.Time
	// onDisk is what the last publish left in the tree. Later publishes
	// link and prune against it instead of checking every file of every
	// version (with 5,000 versions that took most of a publish); the first
	// publish after a start checks the whole tree.
	onDisk fileSet
	// served is the set the last good publish served. A publish switches
	// from it, not from what a failed one left: each failure would add a
	// layer, with its documents, for as long as publishes keep failing.
	served fileSet
	// docs is each product document as the last publish wrote it, by
	// content id: a publish encodes only the products whose versions
	// changed, and compares and signs from memory. Nil after a failed
	// publish, which may have left other files: the next reads the disk.
	docs map[string]*docState

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
	p.docs = nil // signed copies by another key are checked again
}

// New returns a publisher writing under dataDir/publish.
func New(dataDir string, b *blobs.Store, log *slog.Logger) (*Publisher, error) {
	p := &Publisher{dir: filepath.Join(dataDir, "publish"), blobs: b, log: log, now: time.Now, retired: map[string]time.Time{}}
	if err := os.MkdirAll(filepath.Join(p.dir, StreamsDir), 0o755); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	p.files.Store(&fileSet{})
	return p, nil
}

// Dir is the root of the published tree.
func (p *Publisher) Dir() string { return p.dir }

// Lookup returns the published file at rel (relative to the mirror root):
// a document or an item of a published version; nothing else is found.
func (p *Publisher) Lookup(rel string) (Entry, bool) { return p.files.Load().lookup(rel) }

// fileSet is a set of published files in layers: the first layer that
// holds a path answers. Layers are never changed once in a set, so a
// publish builds the next set without copying the thousands of entries
// of the last.
type fileSet []map[string]Entry

func (set fileSet) lookup(rel string) (Entry, bool) {
	for _, layer := range set {
		if e, ok := layer[rel]; ok {
			return e, true
		}
	}
	return Entry{}, false
}

// Publish rebuilds the tree from imgs; only ready versions are published.
func (p *Publisher) Publish(imgs []store.Image) (*Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := time.Now()
	defer metrics.ObservePublish(start)
	updated := simplestreams.FormatTime(p.now())

	// Until this publish ends well, the next one reads the disk.
	lastDocs := p.docs
	p.docs = nil
	docs, files, skipped := plan(imgs)
	// A publish that fails part way may have linked or written files that
	// no set names: the next one looks at the whole tree again.
	published := false
	defer func() {
		if !published {
			p.onDisk = nil
		}
	}()
	if p.onDisk == nil {
		found, err := p.scanTree()
		if err != nil {
			return nil, err
		}
		p.onDisk = found
	}
	lastIndex := p.readIndex()
	prev := lastIndex.entries
	// The documents do not depend on the links unless one fails: they are
	// written while the links are made (a full publish makes thousands),
	// and written again without the versions left out in that rare case.
	writing := p.startDocs(docs, lastDocs, prev, updated)
	// A version whose files cannot be linked (a blob gone, a path taken
	// by a directory) is left out; it must not stop every other one.
	failed := p.linkAll(imgs, skipped)
	states, err := writing()
	// linkedOut are the files of the versions left out: some of them were
	// linked before another failed, and no set names them for prune.
	var linkedOut map[string]Entry
	if len(failed) > 0 {
		left := map[string]string{}
		kept := imgs
		for len(failed) > 0 {
			maps.Copy(left, failed)
			kept = slices.DeleteFunc(slices.Clone(kept), func(img store.Image) bool { return failed[img.ID] != "" })
			hid := skipped
			docs, files, skipped = plan(kept)
			// A version that shared a path with one left out was itself
			// left out, and is in the stream now: its files are not linked.
			var unhidden []store.Image
			for _, img := range kept {
				if hid[img.ID] != "" && skipped[img.ID] == "" {
					unhidden = append(unhidden, img)
				}
			}
			failed = p.linkAll(unhidden, skipped)
		}
		maps.Copy(skipped, left)
		linkedOut = map[string]Entry{}
		for i := range imgs {
			if left[imgs[i].ID] != "" {
				for _, it := range imgs[i].Items {
					linkedOut[it.Path] = Entry{}
				}
			}
		}
		wasted := states
		for _, st := range wasted {
			if st != nil {
				st.discardStaged()
			}
		}
		if states, err = p.startDocs(docs, lastDocs, prev, updated)(); err == nil {
			p.removeWasted(wasted, states, lastDocs, prev)
		}
	}
	for _, st := range states {
		if err == nil {
			err = st.commitStaged() // every link is made: products.json may name them
		} else if st != nil {
			st.discardStaged()
		}
	}
	if err != nil {
		return nil, err
	}
	for i := range imgs {
		if why := skipped[imgs[i].ID]; why != "" {
			p.log.Error("Version left out of the stream", slog.String("image_id", imgs[i].ID),
				slog.String("product_id", imgs[i].ProductID), slog.String("version_name", imgs[i].VersionName), slog.String("reason", why))
		}
	}
	items := len(files)
	// served is every file a client may fetch and the tree keeps: items,
	// documents and the index.
	served := files
	index := simplestreams.Index{Format: simplestreams.FormatIndex, Index: map[string]simplestreams.IndexEntry{}}
	written := make(map[string]*docState, len(docs))
	for i, doc := range docs {
		st := states[i]
		written[doc.contentID] = st
		served[st.rel] = st.entry
		if st.signed != nil {
			served[signedPath(st.rel)] = *st.signed
		}
		if doc.contentID != ProductsContentID {
			index.Index[doc.contentID] = simplestreams.IndexEntry{
				DataType: simplestreams.DataTypeIDs, Format: simplestreams.FormatProducts, Path: st.rel,
				Products: st.productIDs(), Updated: st.updated,
			}
		}
	}
	p.keepRetired(prev, served)
	// While the index switches, serve both the old and the new files: the
	// old index until the new one is in place. (A failed publish leaves
	// this set; the next switches from the last good one again.)
	switching := append(fileSet{served}, p.served...)
	p.files.Store(&switching)
	indexes, err := p.writeIndex(&index, lastIndex, updated)
	if err != nil {
		return nil, err
	}
	next := fileSet{indexes, served}
	p.files.Store(&next)
	p.served = next
	if err := p.prune(append(fileSet{linkedOut}, p.onDisk...), next); err != nil {
		return nil, err
	}
	p.onDisk, published = next, true
	p.docs = written
	versions := 0
	for _, doc := range docs {
		if doc.contentID != ProductsContentID {
			versions += doc.versions
		}
	}
	res := &Result{Versions: versions, Files: items, Skipped: skipped, Took: time.Since(start)}
	p.log.Info("Published stream", slog.Int("versions", res.Versions), slog.Int("files", res.Files), slog.Duration("took", res.Took))
	return res, nil
}

// docPlan is a product document to write: the versions of each of its
// products, in the order of the records.
type docPlan struct {
	contentID string
	products  map[string][]*store.Image
	versions  int
}

// plan groups ready images into product documents, one per content id,
// plus products.json for uploads (sorted by content id); no document is
// ever empty. A version whose path another version uses for different
// content is left out (skipped, by image id).
func plan(imgs []store.Image) ([]*docPlan, map[string]Entry, map[string]string) {
	byContent := map[string]*docPlan{}
	n := 0
	for i := range imgs {
		n += len(imgs[i].Items)
	}
	files := make(map[string]Entry, n+16) // the items, then a few documents

	skipped := map[string]string{}
	add := func(contentID string, img *store.Image) {
		doc := byContent[contentID]
		if doc == nil {
			doc = &docPlan{contentID: contentID, products: map[string][]*store.Image{}}
			byContent[contentID] = doc
		}
		doc.products[img.ProductID] = append(doc.products[img.ProductID], img)
		doc.versions++
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
	docs := make([]*docPlan, 0, len(byContent))
	for _, doc := range byContent {
		docs = append(docs, doc)
	}
	sort.Slice(docs, func(i, j int) bool { return docs[i].contentID < docs[j].contentID })
	return docs, files, skipped
}

// buildProduct is the product of versions: its fields come from the newest.
func buildProduct(versions []*store.Image) simplestreams.Product {
	prod := simplestreams.Product{Versions: make(map[string]simplestreams.Version, len(versions))}
	newest := ""
	for _, img := range versions {
		if img.VersionName >= newest {
			newest = img.VersionName
			prod.Fields = ProductFields(img)
			prod.NullFields = nil
			if _, ok := prod.Fields["support_eol"]; !ok && img.Kind != store.KindBootloader {
				prod.NullFields = []string{"support_eol"}
			}
		}
		ver := simplestreams.Version{Items: make(map[string]simplestreams.Item, len(img.Items))}
		for _, it := range img.Items {
			ver.Items[it.Name] = simplestreams.Item{FType: it.FType, Path: it.Path, SHA256: it.SHA256, Size: it.Size, Extra: it.Extra}
		}
		prod.Versions[img.VersionName] = ver
	}
	return prod
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
func (p *Publisher) keepRetired(prev map[string]*simplestreams.IndexEntry, served map[string]Entry) {
	now := p.now()
	for _, entry := range prev {
		for _, rel := range []string{entry.Path, signedPath(entry.Path)} {
			if _, ok := p.retired[rel]; !ok && !has(served, rel) {
				p.retired[rel] = now
			}
		}
	}
	for rel, since := range p.retired {
		if has(served, rel) || now.Sub(since) >= docGrace {
			delete(p.retired, rel)
			continue
		}
		e, ok := p.Lookup(rel)
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
	}
}

func has(files map[string]Entry, rel string) bool {
	_, ok := files[rel]
	return ok
}

// docPath names a product file by its content id and the start of its
// sha256 (hex): a changed document is a new file, and the index's rename
// switches to it.
func docPath(contentID, sum string) string {
	return path.Join(StreamsDir, contentID+"."+sum[:12]+".json")
}

// diskIndex is index.json as found on disk: its bytes, its `updated`, and
// the product files it names, by content id. Read once per publish.
type diskIndex struct {
	data    []byte
	updated string
	entries map[string]*simplestreams.IndexEntry
}

// readIndex reads index.json; an unreadable index is no previous
// generation.
func (p *Publisher) readIndex() diskIndex {
	out := diskIndex{entries: map[string]*simplestreams.IndexEntry{}}
	data, err := os.ReadFile(filepath.Join(p.dir, filepath.FromSlash(IndexPath)))
	if err != nil {
		return out
	}
	var index simplestreams.Index
	if json.Unmarshal(data, &index) != nil {
		return out
	}
	out.data, out.updated = data, index.Updated
	for id, entry := range index.Index {
		if strings.HasPrefix(entry.Path, StreamsDir+"/") && !strings.Contains(entry.Path, "..") {
			entry := entry
			out.entries[id] = &entry
		}
	}
	return out
}

// startDocs starts writing the product documents, each beside the others
// (independent files, all written before the index names them); the
// function it returns waits for them.
func (p *Publisher) startDocs(docs []*docPlan, lastDocs map[string]*docState, prev map[string]*simplestreams.IndexEntry, updated string) func() ([]*docState, error) {
	states := make([]*docState, len(docs))
	errs := make([]error, len(docs))
	var wg sync.WaitGroup
	for i, doc := range docs {
		wg.Go(func() {
			last := lastDocs[doc.contentID]
			if last == nil {
				last = p.readDoc(doc.contentID, prev[doc.contentID])
			}
			states[i], errs[i] = p.writeProductDoc(doc, last, updated)
		})
	}
	return func() ([]*docState, error) {
		wg.Wait()
		return states, errors.Join(errs...)
	}
}

// removeWasted removes the product documents written for a plan that a
// failed link changed, unless the final plan, the last publish or the
// index on disk names them (a content-hash name: the same bytes).
func (p *Publisher) removeWasted(wasted, final []*docState, lastDocs map[string]*docState, prev map[string]*simplestreams.IndexEntry) {
	used := map[string]bool{}
	for _, st := range final {
		used[st.rel] = true
	}
	for _, st := range lastDocs {
		used[st.rel] = true
	}
	for _, e := range prev {
		used[e.Path] = true
	}
	for _, st := range wasted {
		if st == nil || used[st.rel] {
			continue
		}
		for _, rel := range []string{st.rel, signedPath(st.rel)} {
			_ = os.Remove(filepath.Join(p.dir, filepath.FromSlash(rel)))
		}
	}
}

// docState is a product document as a publish wrote it (or found it on
// disk after a restart, then without products or signed copy).
type docState struct {
	rel     string
	updated string
	data    []byte
	entry   Entry
	signed  *Entry // nil without a signer, or not yet checked
	// products are the document's products, each with the bytes it was
	// encoded to and copies of the versions it was built from.
	products map[string]*encodedProduct

	mu     sync.Mutex
	staged []stagedFile // written, not yet renamed into place
}

// stagedFile is a document written and synced under a temporary name.
type stagedFile struct{ tmp, dst string }

// stage writes data for dst to a temporary file that commitStaged renames.
func (st *docState) stage(dst string, data []byte) error {
	tmp, err := writeTemp(dst, data, 0o644)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.staged = append(st.staged, stagedFile{tmp, dst})
	return nil
}

// commitStaged renames the staged files into place, then syncs their
// directory once.
func (st *docState) commitStaged() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	staged := st.staged
	st.staged = nil
	for i, f := range staged {
		if err := os.Rename(f.tmp, f.dst); err != nil {
			for _, rest := range staged[i:] {
				os.Remove(rest.tmp)
			}
			return fmt.Errorf("write %s: %w", f.dst, err)
		}
	}
	if len(staged) > 0 {
		syncDir(filepath.Dir(staged[0].dst))
	}
	return nil
}

// discardStaged removes the staged files.
func (st *docState) discardStaged() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, f := range st.staged {
		os.Remove(f.tmp)
	}
	st.staged = nil
}

type encodedProduct struct {
	versions []store.Image
	product  simplestreams.Product
	data     []byte
}

func (st *docState) productIDs() []string { return slices.Sorted(maps.Keys(st.products)) }

// readDoc reads the document of contentID that the index on disk names
// (products.json: its fixed path); nil when there is none.
func (p *Publisher) readDoc(contentID string, prev *simplestreams.IndexEntry) *docState {
	rel, updated := ProductsPath, ""
	if contentID != ProductsContentID {
		if prev == nil {
			return nil
		}
		rel, updated = prev.Path, prev.Updated
	}
	dst := filepath.Join(p.dir, filepath.FromSlash(rel))
	data, err := os.ReadFile(dst)
	if err != nil {
		return nil
	}
	if contentID == ProductsContentID {
		var doc struct {
			Updated string `json:"updated"`
		}
		if json.Unmarshal(data, &doc) != nil || doc.Updated == "" {
			return nil
		}
		updated = doc.Updated
	}
	return &docState{rel: rel, updated: updated, data: data, entry: keptEntryOf(dst, data)}
}

// writeProductDoc writes a product document (and its signed copy): under
// its content-hash name, products.json under its fixed one. When last
// holds exactly this content, it keeps that file and its `updated`, so
// clients see `updated` move only when something did.
func (p *Publisher) writeProductDoc(plan *docPlan, last *docState, now string) (*docState, error) {
	doc := simplestreams.Products{ContentID: plan.contentID, DataType: simplestreams.DataTypeIDs, Format: simplestreams.FormatProducts,
		Products: make(map[string]simplestreams.Product, len(plan.products))}
	st := &docState{products: make(map[string]*encodedProduct, len(plan.products))}
	reused := true
	for id, versions := range plan.products {
		e := (*encodedProduct)(nil)
		if last != nil {
			e = last.products[id]
		}
		if e == nil || !sameVersions(e.versions, versions) {
			prod := buildProduct(versions)
			e = &encodedProduct{versions: make([]store.Image, len(versions)), product: prod, data: prod.AppendIndented(nil)}
			for i, img := range versions {
				e.versions[i] = img.Clone()
			}
		}
		st.products[id], doc.Products[id] = e, e.product
		reused = reused && last != nil && e == last.products[id]
	}
	// Every product as it was (and no product gone): the document is too.
	if reused && last != nil && len(last.products) == len(st.products) {
		return last, nil
	}
	encode := func(updated string) []byte {
		doc.Updated = updated
		size := 256
		for _, e := range st.products {
			size += len(e.data) + len(e.versions[0].ProductID) + 8
		}
		data := doc.AppendIndented(make([]byte, 0, size), func(id string) []byte { return st.products[id].data })
		return append(data, '\n')
	}
	if last != nil {
		if data := encode(last.updated); bytes.Equal(data, last.data) {
			st.rel, st.updated, st.data, st.entry = last.rel, last.updated, last.data, last.entry
			st.signed = last.signed
			if p.sign != nil && st.signed == nil {
				se, err := p.writeSigned(signedPath(st.rel), st.data, false, writeFile)
				if err != nil {
					return nil, err
				}
				st.signed = &se
			}
			return st, nil
		}
	}
	st.updated = now
	st.data = encode(now)
	st.entry = entryOf(st.data)
	st.rel = ProductsPath
	if plan.contentID != ProductsContentID {
		st.rel = docPath(plan.contentID, st.entry.SHA256)
	}
	// The file is written and synced while its signed copy is made.
	var written sync.WaitGroup
	var err error
	// A content-hash name is part of the stream only once the index names
	// it. products.json, at a fixed path, waits for the links: Publish
	// renames it into place after them.
	write := writeFile
	if st.rel == ProductsPath {
		write = st.stage
	}
	written.Go(func() { err = write(filepath.Join(p.dir, filepath.FromSlash(st.rel)), st.data) })
	var signErr error
	if p.sign != nil {
		var se Entry
		se, signErr = p.writeSigned(signedPath(st.rel), st.data, true, write)
		st.signed = &se
	}
	written.Wait()
	if err := errors.Join(err, signErr); err != nil {
		return nil, err
	}
	return st, nil
}

// sameVersions reports whether a product built from versions would be the
// one built from last (copies kept from an earlier publish).
func sameVersions(last []store.Image, versions []*store.Image) bool {
	if len(last) != len(versions) {
		return false
	}
	for i := range last {
		if !samePublished(&last[i], versions[i]) {
			return false
		}
	}
	return true
}

// samePublished compares what buildProduct reads of two versions
// (TestSamePublishedCoversBuildProduct checks that it is all of it).
func samePublished(a, b *store.Image) bool {
	if a.VersionName != b.VersionName || a.Kind != b.Kind || a.OS != b.OS || a.Arch != b.Arch || a.Release != b.Release ||
		a.Label != b.Label || a.ReleaseTitle != b.ReleaseTitle || a.Subarch != b.Subarch || a.Subarches != b.Subarches ||
		a.Version != b.Version || a.Kflavor != b.Kflavor || a.ReleaseCodename != b.ReleaseCodename || a.SupportEOL != b.SupportEOL ||
		(a.Fields == nil) != (b.Fields == nil) || !maps.Equal(a.Fields, b.Fields) || len(a.Items) != len(b.Items) {
		return false
	}
	for i := range a.Items {
		x, y := &a.Items[i], &b.Items[i]
		if x.Name != y.Name || x.FType != y.FType || x.Path != y.Path || x.SHA256 != y.SHA256 || x.Size != y.Size || !maps.Equal(x.Extra, y.Extra) {
			return false
		}
	}
	return true
}

// linkWorkers is how many links a publish makes at once. Each is a few
// metadata changes the file system journals: 5,000 one after another took
// 0.5–3 s here, 4 or more at once about 0.25 s.
const linkWorkers = 8

// linkAll links the items of the ready versions that the tree does not
// hold yet, and returns the versions whose files could not be linked,
// with why.
func (p *Publisher) linkAll(imgs []store.Image, skipped map[string]string) map[string]string {
	type linkJob struct {
		rel, sum string
		ids      []string // the versions with this file
	}
	byPath := map[string]*linkJob{}
	var jobs []*linkJob
	for i := range imgs {
		img := &imgs[i]
		if img.Status != store.StatusReady || skipped[img.ID] != "" {
			continue
		}
		for _, it := range img.Items {
			if e, ok := p.onDisk.lookup(it.Path); ok && e.SHA256 == it.SHA256 {
				continue
			}
			j := byPath[it.Path]
			if j == nil {
				j = &linkJob{rel: it.Path, sum: it.SHA256}
				byPath[it.Path] = j
				jobs = append(jobs, j)
			}
			j.ids = append(j.ids, img.ID)
		}
	}
	failed := map[string]string{}
	var mu sync.Mutex
	work := make(chan *linkJob)
	var wg sync.WaitGroup
	for range min(linkWorkers, len(jobs)) {
		wg.Go(func() {
			for j := range work {
				if err := p.link(j.rel, j.sum); err != nil {
					mu.Lock()
					for _, id := range j.ids {
						if failed[id] == "" {
							failed[id] = err.Error()
						}
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
	return failed
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
	info, err := os.Stat(dst)
	if err == nil && os.SameFile(info, srcInfo) {
		return nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		// A new name: the link itself appears whole.
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("publish %s: %w", rel, err)
		}
		if err := os.Link(src, dst); err == nil || !errors.Is(err, fs.ErrExist) {
			if err != nil {
				return fmt.Errorf("publish %s: %w", rel, err)
			}
			return nil
		}
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

// signedPath is the .sjson beside a .json document.
func signedPath(rel string) string {
	return strings.TrimSuffix(rel, ".json") + ".sjson"
}

// writeSigned clearsigns data into rel. An unchanged document keeps its
// signed copy, so a republish of the same records changes no byte.
func (p *Publisher) writeSigned(rel string, data []byte, changed bool, write func(dst string, data []byte) error) (Entry, error) {
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
	// Hashed for its ETag while it is written.
	var written sync.WaitGroup
	written.Go(func() { err = write(dst, signed) })
	e := entryOf(signed)
	written.Wait()
	return e, err
}

// signedMatches reports whether a signed copy holds data, signed by the
// current key (a rotated key signs everything again).
func (p *Publisher) signedMatches(signed, data []byte) bool {
	payload, _, err := simplestreams.VerifyClearsigned(signed, p.keyring)
	return err == nil && bytes.Equal(bytes.TrimRight(payload, "\r\n"), bytes.TrimRight(data, "\r\n"))
}

// writeIndex writes index.json (last is the one on disk) and, with a
// signer, index.sjson beside it, and returns their entries. The signed index names the signed product
// files: a client that starts from it checks a signature on everything it
// reads. An index whose content is unchanged keeps its file and its old
// `updated` value, so clients see `updated` move only when something did.
func (p *Publisher) writeIndex(index *simplestreams.Index, last diskIndex, now string) (map[string]Entry, error) {
	dst := filepath.Join(p.dir, filepath.FromSlash(IndexPath))
	var data []byte
	changed := true
	if last.updated != "" {
		index.Updated = last.updated
		if again, err := marshalDoc(index); err == nil && bytes.Equal(last.data, again) {
			data, changed = last.data, false
		}
	}
	entries := map[string]Entry{}
	var written sync.WaitGroup
	var err error
	if changed {
		index.Updated = now
		if data, err = marshalDoc(index); err != nil {
			return nil, fmt.Errorf("publish %s: %w", IndexPath, err)
		}
		entries[IndexPath] = entryOf(data)
		written.Go(func() { err = WriteFileAtomic(dst, data, 0o644) })
	} else {
		entries[IndexPath] = keptEntryOf(dst, data)
	}
	var signErr error
	if p.sign != nil {
		signedIndex := *index
		signedIndex.Index = make(map[string]simplestreams.IndexEntry, len(index.Index))
		for id, entry := range index.Index {
			entry.Path = signedPath(entry.Path)
			signedIndex.Index[id] = entry
		}
		var signed []byte
		if signed, signErr = marshalDoc(&signedIndex); signErr == nil {
			var se Entry
			se, signErr = p.writeSigned(SignedIndexPath, signed, changed, writeFile)
			entries[SignedIndexPath] = se
		}
	}
	written.Wait()
	if err := errors.Join(err, signErr); err != nil {
		return nil, fmt.Errorf("publish the index: %w", err)
	}
	return entries, nil
}

// marshalDoc encodes a document as the published files are: indented by
// one space, with a final newline.
func marshalDoc(v any) ([]byte, error) {
	data, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
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
	tmp, err := writeTemp(dst, data, perm)
	if err != nil {
		return err
	}
	return commitTemp(tmp, dst)
}

// writeTemp writes data with mode perm to a synced temporary file beside
// dst, for commitTemp.
func writeTemp(dst string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(dst), ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", dst, err)
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
	if werr != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", dst, werr)
	}
	return tmp, nil
}

// commitTemp renames a file writeTemp wrote to dst.
func commitTemp(tmp, dst string) error {
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", dst, err)
	}
	syncDir(filepath.Dir(dst))
	return nil
}

// syncDir syncs a directory: a rename in it survives a power loss only
// once it is synced.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// writeFile writes a document at once (see WriteFileAtomic).
func writeFile(dst string, data []byte) error { return WriteFileAtomic(dst, data, 0o644) }

// prune removes every file of was (what may be in the tree) that keep does
// not name, and the directories that leaves empty: after the first publish,
// only what the last publish kept, or this one linked, can be there.
func (p *Publisher) prune(was, keep fileSet) error {
	for _, layer := range was {
		for rel := range layer {
			if _, ok := keep.lookup(rel); ok {
				continue
			}
			full := filepath.Join(p.dir, filepath.FromSlash(rel))
			// ENOTDIR: a file where a parent directory was, so no such file.
			if err := os.Remove(full); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
				return fmt.Errorf("publish: prune: %w", err)
			}
			// Parents that this leaves empty go too; Remove fails, as intended, on the first that is not.
			for dir := path.Dir(rel); !keptDir(dir); dir = path.Dir(dir) {
				if os.Remove(filepath.Join(p.dir, filepath.FromSlash(dir))) != nil {
					break
				}
			}
		}
	}
	return nil
}

// keptDir reports whether the tree keeps dir even when it is empty.
func keptDir(dir string) bool { return dir == "." || dir == "streams" || dir == StreamsDir }

// scanTree lists the files in the tree, for the first publish after a
// start, which links and prunes against it as later ones do against the
// last publish. Their content is unknown (no sum): each is checked before
// it is kept. Empty directories (a crash's leftovers) go at once. On a new
// tree this costs nothing, where a walk after linking 5,000 versions took
// a tenth of the publish.
func (p *Publisher) scanTree() (fileSet, error) {
	found := map[string]Entry{}
	if _, err := p.scanDir(".", found); err != nil {
		return nil, fmt.Errorf("publish: scan the tree: %w", err)
	}
	return fileSet{found}, nil
}

// scanDir adds the files under rel to found and reports whether rel is
// left empty.
func (p *Publisher) scanDir(rel string, found map[string]Entry) (bool, error) {
	entries, err := os.ReadDir(filepath.Join(p.dir, filepath.FromSlash(rel)))
	if err != nil {
		return false, err
	}
	left := len(entries)
	for _, e := range entries {
		child := path.Join(rel, e.Name())
		if !e.IsDir() {
			found[child] = Entry{}
			continue
		}
		empty, err := p.scanDir(child, found)
		if err != nil {
			return false, err
		}
		if empty && !keptDir(child) && os.Remove(filepath.Join(p.dir, filepath.FromSlash(child))) == nil {
			left--
		}
	}
	return left == 0, nil
}
