// Package catalog keeps upstream catalogs: fetched once, cached in the
// database and in memory, filtered fast enough for live search, and turned
// into the versions a mirror job downloads.
package catalog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/upstream"
)

// DefaultURL is the upstream the portal offers first.
const DefaultURL = "https://images.maas.io/ephemeral-v3/stable/"

// BootloaderContentID is the content id of MAAS's bootloader products.
const BootloaderContentID = "com.ubuntu.maas:stable:1:bootloader-download"

// BadURLError is an upstream URL that cannot be used at all (as opposed to
// an upstream that fails to answer).
type BadURLError struct{ Err error }

func (e *BadURLError) Error() string { return e.Err.Error() }
func (e *BadURLError) Unwrap() error { return e.Err }

// Service loads catalogs through a cache.
type Service struct {
	store  *store.Store
	client *upstream.Client
	log    *slog.Logger

	mu      sync.Mutex
	loaded  map[string]*Loaded   // by index URL
	touched map[string]time.Time // last TouchUpstream by index URL
}

// New returns a catalog service.
func New(st *store.Store, client *upstream.Client, log *slog.Logger) *Service {
	return &Service{store: st, client: client, log: log, loaded: map[string]*Loaded{}, touched: map[string]time.Time{}}
}

// Loaded is one catalog ready for listing.
type Loaded struct {
	Catalog *upstream.Catalog
	Entries []upstream.Entry
	// search holds each entry's lower-cased id and field values, built
	// once so a keystroke's search does no allocation per entry.
	search []string
	byID   map[string]int
}

func newLoaded(c *upstream.Catalog) *Loaded {
	l := &Loaded{Catalog: c, Entries: c.Entries(), byID: map[string]int{}}
	l.search = make([]string, len(l.Entries))
	for i, e := range l.Entries {
		var b strings.Builder
		b.WriteString(strings.ToLower(e.ProductID))
		keys := make([]string, 0, len(e.Fields))
		for k := range e.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.WriteByte(' ')
			b.WriteString(strings.ToLower(e.Fields[k]))
		}
		l.search[i] = b.String()
		l.byID[e.ProductID] = i
	}
	return l
}

// Load returns the catalog of rawURL: from memory, else from the database,
// else (or when refresh is set) fetched from the upstream.
func (s *Service) Load(ctx context.Context, rawURL string, refresh bool) (*Loaded, error) {
	indexURL, _, err := upstream.ResolveURL(strings.TrimSpace(rawURL))
	if err == nil {
		err = s.client.CheckAllowed(indexURL)
	}
	if err != nil {
		return nil, &BadURLError{err}
	}
	if !refresh {
		s.mu.Lock()
		l := s.loaded[indexURL]
		s.mu.Unlock()
		if l != nil {
			s.touch(indexURL)
			return l, nil
		}
		if l, err := s.fromStore(indexURL); err == nil {
			s.keep(indexURL, l)
			s.touch(indexURL)
			return l, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("Cached catalog unreadable; fetching it again", slog.String("url", indexURL), slog.Any("error", err))
		}
	}
	// Forget the old copy first, so it can be freed while the new one is
	// parsed (two large catalogs at once doubled the peak memory); if the
	// fetch fails, the next load reads the database's copy.
	s.mu.Lock()
	delete(s.loaded, indexURL)
	s.mu.Unlock()
	start := time.Now()
	// The catalog keeps the URL as the admin gave it; the cache key is the index URL.
	cat, err := s.client.FetchCatalog(ctx, strings.TrimSpace(rawURL))
	if err != nil {
		return nil, err
	}
	l := newLoaded(cat)
	if err := s.save(cat, len(l.Entries)); err != nil {
		return nil, err
	}
	s.keep(indexURL, l)
	s.log.Info("Catalog fetched", slog.String("url", indexURL), slog.Bool("signed", cat.Signed),
		slog.Int("products", len(l.Entries)), slog.Duration("took", time.Since(start)))
	return l, nil
}

// touch records that an upstream was used, at most once a minute and off
// the request: every filter keystroke loads the catalog, and a database
// write (a sync to disk) must not hold one up.
func (s *Service) touch(indexURL string) {
	s.mu.Lock()
	recent := time.Since(s.touched[indexURL]) < time.Minute
	if !recent {
		s.touched[indexURL] = time.Now()
	}
	s.mu.Unlock()
	if !recent {
		go func() { _ = s.store.TouchUpstream(indexURL) }()
	}
}

// keep holds a few catalogs in memory; the database has the rest.
func (s *Service) keep(indexURL string, l *Loaded) {
	const inMemory = 4
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.loaded[indexURL]; !ok && len(s.loaded) >= inMemory {
		for k := range s.loaded {
			delete(s.loaded, k)
			break
		}
	}
	s.loaded[indexURL] = l
}

// save caches the catalog's documents, gzipped gob.
func (s *Service) save(cat *upstream.Catalog, products int) error {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return fmt.Errorf("cache catalog %s: %w", cat.IndexURL, err)
	}
	if err := gob.NewEncoder(zw).Encode(cat.TakeDocuments()); err != nil {
		return fmt.Errorf("cache catalog %s: %w", cat.IndexURL, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("cache catalog %s: %w", cat.IndexURL, err)
	}
	now := time.Now().UTC()
	return s.store.PutUpstream(&store.Upstream{URL: cat.IndexURL, Root: cat.Root, Signed: cat.Signed, Signer: cat.Signer,
		Products: products, FetchedAt: cat.FetchedAt, LastUsed: now}, buf.Bytes())
}

// fromStore reads a cached catalog. Versions before the documents were
// cached wrote the parsed catalog as JSON: those read as such.
func (s *Service) fromStore(indexURL string) (*Loaded, error) {
	data, err := s.store.GetCatalog(indexURL)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("cached catalog %s: %w", indexURL, err)
	}
	br := bufio.NewReader(zr)
	if first, err := br.Peek(1); err == nil && first[0] == '{' {
		var cat upstream.Catalog
		if err := json.NewDecoder(br).Decode(&cat); err != nil {
			return nil, fmt.Errorf("cached catalog %s: %w", indexURL, err)
		}
		return newLoaded(&cat), nil
	}
	var docs upstream.Documents
	if err := gob.NewDecoder(br).Decode(&docs); err != nil {
		return nil, fmt.Errorf("cached catalog %s: %w", indexURL, err)
	}
	cat, err := docs.Catalog()
	if err != nil {
		return nil, fmt.Errorf("cached catalog %s: %w", indexURL, err)
	}
	return newLoaded(cat), nil
}

// Upstreams lists the upstreams used before, most recent first.
func (s *Service) Upstreams() ([]store.Upstream, error) { return s.store.ListUpstreams() }

// Query selects entries: sstream filter expressions, free text matched
// against the id and every field, and exact field values (empty means any).
type Query struct {
	Filters simplestreams.Filters
	Text    string
	Fields  map[string]string
}

// Filter returns the entries that match q, in catalog order.
func (l *Loaded) Filter(q Query) []upstream.Entry {
	words := strings.Fields(strings.ToLower(q.Text))
	out := make([]upstream.Entry, 0, 64)
	for i := range l.Entries {
		e := &l.Entries[i]
		if !matchFields(e.Fields, q.Fields) || !q.Filters.MatchMap(e.Fields) || !containsAll(l.search[i], words) {
			continue
		}
		out = append(out, *e)
	}
	return out
}

func matchFields(fields, want map[string]string) bool {
	for k, v := range want {
		if v != "" && fields[k] != v {
			return false
		}
	}
	return true
}

func containsAll(haystack string, words []string) bool {
	for _, w := range words {
		if !strings.Contains(haystack, w) {
			return false
		}
	}
	return true
}

// Values lists the distinct values of a field, for the filter drop-downs.
func (l *Loaded) Values(field string) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range l.Entries {
		if v := e.Fields[field]; v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}

// Entry returns one product by id.
func (l *Loaded) Entry(productID string) (upstream.Entry, bool) {
	i, ok := l.byID[productID]
	if !ok {
		return upstream.Entry{}, false
	}
	return l.Entries[i], true
}

// Bootloaders returns the ids of the bootloader products, which a site with
// no other boot source needs.
func (l *Loaded) Bootloaders() []string {
	var ids []string
	for _, e := range l.Entries {
		if e.Kind == upstream.KindBootloader {
			ids = append(ids, e.ProductID)
		}
	}
	return ids
}

// Select gathers the product ids a mirror request or a sync rule names:
// the ids given, every product matching filters (none when filters is
// empty), and the bootloaders when asked. Ids the catalog lacks are
// returned apart.
func (l *Loaded) Select(ids []string, filters simplestreams.Filters, bootloaders bool) (selected, missing []string) {
	seen := map[string]bool{}
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			selected = append(selected, id)
		}
	}
	for _, id := range ids {
		if _, ok := l.byID[id]; ok {
			add(id)
		} else {
			missing = append(missing, id)
		}
	}
	if len(filters) > 0 {
		for _, e := range l.Entries {
			if filters.MatchMap(e.Fields) {
				add(e.ProductID)
			}
		}
	}
	if bootloaders {
		for _, id := range l.Bootloaders() {
			add(id)
		}
	}
	return selected, missing
}

// LatestVersions describes the newest version of each product.
func (l *Loaded) LatestVersions(ids []string) ([]images.MirrorVersion, error) {
	out := make([]images.MirrorVersion, 0, len(ids))
	for _, id := range ids {
		v, err := l.LatestVersion(id)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// LatestVersion describes the newest version of a product as a mirror job
// downloads it.
func (l *Loaded) LatestVersion(productID string) (images.MirrorVersion, error) {
	e, ok := l.Entry(productID)
	if !ok {
		return images.MirrorVersion{}, fmt.Errorf("product %s is not in the catalog of %s", productID, l.Catalog.URL)
	}
	if e.Kind == upstream.KindUnknown {
		return images.MirrorVersion{}, fmt.Errorf("product %s is neither a boot image, a single-file image nor a bootloader", productID)
	}
	prod := l.Catalog.Products[e.ContentID].Products[productID]
	ver := prod.Versions[e.LatestVersion]
	v := images.MirrorVersion{Root: l.Catalog.Root, ContentID: e.ContentID, ProductID: productID, Kind: e.Kind,
		VersionName: e.LatestVersion, Fields: e.Fields}
	keys := make([]string, 0, len(ver.Items))
	for k := range ver.Items {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		it := ver.Items[key]
		u, err := l.Catalog.ItemURL(it.Path)
		if err != nil {
			return images.MirrorVersion{}, fmt.Errorf("product %s version %s item %s: %w", productID, e.LatestVersion, key, err)
		}
		v.Items = append(v.Items, images.MirrorItem{Name: key, FType: it.FType, Path: it.Path, URL: u,
			Size: it.Size, SHA256: it.SHA256, Extra: it.Extra})
	}
	return v, nil
}

// Mirror states of an upstream product here.
const (
	StateNotMirrored = "not mirrored"
	StateMirrored    = "mirrored"
	StateOutdated    = "outdated"
	StateDownloading = "downloading"
	StateFailed      = "failed"
)

// States tells, for each product of the upstream at root, how it stands
// here: the latest ready version against the upstream's latest.
func States(imgs []store.Image, root string, entries []upstream.Entry) map[string]string {
	type have struct{ ready, busy, failed string }
	local := map[string]*have{}
	for _, img := range imgs {
		if img.Origin != root {
			continue
		}
		h := local[img.ProductID]
		if h == nil {
			h = &have{}
			local[img.ProductID] = h
		}
		switch {
		case img.Status == store.StatusReady && img.VersionName > h.ready:
			h.ready = img.VersionName
		case img.Busy():
			h.busy = img.VersionName
		case img.Status == store.StatusFailed:
			h.failed = img.VersionName
		}
	}
	out := make(map[string]string, len(local))
	for _, e := range entries {
		h := local[e.ProductID]
		switch {
		case h == nil:
			continue
		case h.busy != "":
			out[e.ProductID] = StateDownloading
		case h.ready != "" && h.ready >= e.LatestVersion:
			out[e.ProductID] = StateMirrored
		case h.ready != "":
			out[e.ProductID] = StateOutdated
		case h.failed != "":
			out[e.ProductID] = StateFailed
		}
	}
	return out
}

// State is one product's state from States, "not mirrored" when absent.
func State(states map[string]string, productID string) string {
	if s, ok := states[productID]; ok {
		return s
	}
	return StateNotMirrored
}
