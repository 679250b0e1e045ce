package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/customstream/customstream/internal/metrics"
	"github.com/customstream/customstream/internal/simplestreams"
)

// ErrTooLarge is wrapped by the error for a document over Options.MaxDocumentSize.
var ErrTooLarge = errors.New("document too large")

// StatusError is a response other than 200 OK.
type StatusError struct {
	URL        string
	StatusCode int
	Status     string // e.g. "404 Not Found"
}

// Error names the URL and the status.
func (e *StatusError) Error() string {
	return fmt.Sprintf("fetch %s: server answered %s", e.URL, e.Status)
}

// Catalog is an upstream's verified index and product files.
type Catalog struct {
	URL       string    // as the admin gave it
	IndexURL  string    // the index document actually read
	Root      string    // mirror root, ends with "/"
	Signed    bool      // read from index.sjson, every document verified
	Signer    string    // primary key fingerprint of the index signer when signed
	FetchedAt time.Time // when the fetch started
	Index     simplestreams.Index
	Products  map[string]*simplestreams.Products // by content id (the index key)
	// Warnings are problems that do not stop the fetch, such as skipped index entries.
	Warnings []string

	// documents are the verified product files as fetched, until
	// TakeDocuments hands them to the cache.
	documents map[string][]byte
}

// Documents is a catalog as the catalog cache stores it: its metadata and
// the verified product files as fetched. Re-encoding the parsed catalog
// took longer than parsing it; the documents need no encoding at all.
type Documents struct {
	URL, IndexURL, Root string
	Signed              bool
	Signer              string
	FetchedAt           time.Time
	Index               simplestreams.Index
	Warnings            []string
	Products            map[string][]byte // by content id
}

// TakeDocuments returns c's documents for the cache and lets c forget them,
// so a catalog kept in memory does not hold its files twice.
func (c *Catalog) TakeDocuments() *Documents {
	d := &Documents{URL: c.URL, IndexURL: c.IndexURL, Root: c.Root, Signed: c.Signed, Signer: c.Signer,
		FetchedAt: c.FetchedAt, Index: c.Index, Warnings: c.Warnings, Products: c.documents}
	c.documents = nil
	return d
}

// Catalog parses cached documents again; they were checked when fetched.
func (d *Documents) Catalog() (*Catalog, error) {
	cat := &Catalog{URL: d.URL, IndexURL: d.IndexURL, Root: d.Root, Signed: d.Signed, Signer: d.Signer,
		FetchedAt: d.FetchedAt, Index: d.Index, Warnings: d.Warnings,
		Products: make(map[string]*simplestreams.Products, len(d.Products))}
	for cid, data := range d.Products {
		var p simplestreams.Products
		if err := p.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("cached product file %s: %w", cid, err)
		}
		cat.Products[cid] = &p
	}
	return cat, nil
}

// FetchCatalog reads the index at rawURL and every product file it names, verifying signatures when the index is .sjson.
func (c *Client) FetchCatalog(ctx context.Context, rawURL string) (_ *Catalog, err error) {
	indexURL, root, err := ResolveURL(rawURL)
	if err != nil {
		return nil, err
	}
	defer metrics.CountUpstreamFetch(&err)
	cat := &Catalog{
		URL:       strings.TrimSpace(rawURL),
		IndexURL:  indexURL,
		Root:      root,
		Signed:    isSigned(indexURL),
		FetchedAt: time.Now().UTC(),
		Products:  make(map[string]*simplestreams.Products),
		documents: make(map[string][]byte),
	}
	if cat.Signed && len(c.keyring) == 0 {
		return nil, fmt.Errorf("%s is signed (.sjson) but no keyring is configured to verify it", indexURL)
	}

	data, signer, err := c.fetchDocument(ctx, indexURL, cat.Signed)
	if err != nil {
		return nil, err
	}
	cat.Signer = signer
	if err := decodeJSON(data, &cat.Index); err != nil {
		return nil, fmt.Errorf("index %s is not valid JSON: %w", indexURL, err)
	}
	if cat.Index.Format != simplestreams.FormatIndex {
		return nil, fmt.Errorf("%s is not a simplestreams index: format is %q, want %q", indexURL, cat.Index.Format, simplestreams.FormatIndex)
	}

	// Check every entry before fetching anything, so a hostile index costs no requests.
	type productFile struct{ contentID, url string }
	var files []productFile
	for _, cid := range sortedKeys(cat.Index.Index) {
		e := cat.Index.Index[cid]
		if e.Format != simplestreams.FormatProducts {
			cat.warnf("skipped index entry %s: its format is %q, not %q (sstream-mirror and MAAS skip it too)", cid, e.Format, simplestreams.FormatProducts)
			continue
		}
		if err := checkPath(e.Path); err != nil {
			return nil, fmt.Errorf("index %s, entry %s: %w", indexURL, cid, err)
		}
		if cat.Signed && !strings.HasSuffix(e.Path, ".sjson") {
			return nil, fmt.Errorf("index %s is signed but entry %s names %q, not a .sjson file: every document of a signed stream must be clearsigned", indexURL, cid, e.Path)
		}
		u, err := cat.ItemURL(e.Path)
		if err != nil {
			return nil, fmt.Errorf("index %s, entry %s: %w", indexURL, cid, err)
		}
		files = append(files, productFile{contentID: cid, url: u})
	}
	if len(files) == 0 {
		cat.warnf("index %s names no product files", indexURL)
	}

	for _, f := range files {
		p, data, err := c.fetchProducts(ctx, cat, f.contentID, f.url)
		if err != nil {
			return nil, err
		}
		cat.Products[f.contentID] = p
		cat.documents[f.contentID] = data
	}
	return cat, nil
}

// fetchProducts reads, verifies and checks one product file.
func (c *Client) fetchProducts(ctx context.Context, cat *Catalog, contentID, fileURL string) (_ *simplestreams.Products, payload []byte, err error) {
	data, signer, err := c.fetchDocument(ctx, fileURL, cat.Signed)
	if err != nil {
		return nil, nil, err
	}
	if cat.Signed && signer != cat.Signer {
		cat.warnf("product file %s is signed by %s, the index by %s", fileURL, signer, cat.Signer)
	}
	// Products.UnmarshalJSON validates as it parses: through decodeJSON,
	// encoding/json would scan the 40 MB of a large catalog once more.
	var p simplestreams.Products
	if err := p.UnmarshalJSON(data); err != nil {
		return nil, nil, fmt.Errorf("product file %s is not a valid products document: %w", fileURL, err)
	}
	if p.Format != simplestreams.FormatProducts {
		cat.warnf("product file %s has format %q, want %q", fileURL, p.Format, simplestreams.FormatProducts)
	}
	switch p.ContentID {
	case contentID:
	case "":
		cat.warnf("product file %s has no content_id (sstream-mirror requires one)", fileURL)
	default:
		cat.warnf("product file %s has content_id %q but the index lists it as %q", fileURL, p.ContentID, contentID)
	}
	var missing []string
	for _, id := range cat.Index.Index[contentID].Products {
		if _, ok := p.Products[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		cat.warnf("product file %s lacks %d product(s) the index lists: %s", fileURL, len(missing), strings.Join(missing, ", "))
	}
	// Item paths become download URLs and file names: refuse the whole file if one is unsafe.
	for _, id := range p.ProductIDs() {
		for vname, v := range p.Products[id].Versions {
			for key, it := range v.Items {
				if err := checkPath(it.Path); err != nil {
					return nil, nil, fmt.Errorf("product file %s: product %s version %s item %s: %w", fileURL, id, vname, key, err)
				}
			}
		}
	}
	return &p, data, nil
}

// fetchDocument GETs a stream document and, in a signed stream, verifies and unwraps it.
func (c *Client) fetchDocument(ctx context.Context, docURL string, signed bool) (payload []byte, signer string, err error) {
	data, err := c.get(ctx, docURL)
	if err != nil {
		return nil, "", err
	}
	if signed {
		payload, fp, err := simplestreams.VerifyClearsigned(data, c.keyring)
		if err != nil {
			return nil, "", fmt.Errorf("verify %s: %w", docURL, err)
		}
		return payload, fp, nil
	}
	if simplestreams.IsClearsigned(data) {
		return nil, "", fmt.Errorf("%s is OpenPGP clearsigned, but an unsigned (.json) stream must be plain JSON: use the .sjson index instead", docURL)
	}
	return data, "", nil
}

// get reads one document, at most maxSize bytes of it.
func (c *Client) get(ctx context.Context, docURL string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, docURL, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", docURL, err)
	}
	resp, err := c.docs.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", docURL, c.describeTransportError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{URL: docURL, StatusCode: resp.StatusCode, Status: resp.Status}
	}
	if resp.ContentLength > c.maxSize {
		return nil, c.tooLarge(docURL)
	}
	// Read one byte past the cap to tell "exactly the cap" from "more".
	// With a length, the buffer is allocated once: growing it by doubling
	// made twice a 40 MB catalog's size in garbage.
	buf := bytes.NewBuffer(make([]byte, 0, max(resp.ContentLength, 0)+1))
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, c.maxSize+1))
	data := buf.Bytes()
	if err != nil {
		return nil, fmt.Errorf("fetch %s: reading the body: %w", docURL, c.describeTransportError(err))
	}
	if int64(len(data)) > c.maxSize {
		return nil, c.tooLarge(docURL)
	}
	return data, nil
}

func (c *Client) tooLarge(docURL string) error {
	return fmt.Errorf("fetch %s: %w: more than the %d-byte limit", docURL, ErrTooLarge, c.maxSize)
}

// describeTransportError drops url.Error's repetition of the URL and says
// what kind of network failure happened.
func (c *Client) describeTransportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Errorf("cannot resolve host %s: %w", dnsErr.Name, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("timed out (the limit is %s per request): %w", c.timeout, err)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return fmt.Errorf("cannot connect to the server: %w", err)
	}
	return err
}

// decodeJSON parses one JSON value and refuses trailing data.
func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON document")
	}
	return nil
}

func isSigned(indexURL string) bool {
	u, err := url.Parse(indexURL)
	return err == nil && strings.HasSuffix(u.Path, ".sjson")
}

func (c *Catalog) warnf(format string, args ...any) {
	c.Warnings = append(c.Warnings, fmt.Sprintf(format, args...))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
