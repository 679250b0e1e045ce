// Package check validates a published simplestreams stream the way MAAS 3.7
// and 3.8 read it: every rule of MAAS-STREAMS.md, the clearsign signature of
// every document of a signed stream and, optionally, every item's size and sha256.
package check

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/upstream"
)

// maxDocumentSize caps one stream document, as the validator does.
const maxDocumentSize = 64 << 20

// Options configures Run; zero fields take defaults.
type Options struct {
	Keyring  openpgp.EntityList // verifies a signed stream; nil means the Ubuntu cloud image key
	Download bool               // GET every item and check its size and sha256
	Client   *http.Client       // nil means customstream's upstream clients (proxy from the environment)
	Out      io.Writer          // the summary; nil means io.Discard
	// Progress, with Download, receives the bytes of items checked out of
	// the bytes listed, as they arrive; the last call has done == total
	// (an item that failed counts as checked). nil means none.
	Progress func(done, total int64)
}

// Result is the outcome of Run.
type Result struct {
	IndexURL     string // the index read
	RootURL      string // the mirror root item paths are relative to
	Signed       bool   // the index is .sjson: every document must carry a valid signature
	Signers      []string
	Report       *simplestreams.Report
	Problems     []simplestreams.Problem // the report's problems, then signature and download problems
	ItemsChecked int                     // items downloaded
	BytesChecked int64                   // bytes of items downloaded and hashed
}

// Errors returns the problems of severity error.
func (r *Result) Errors() []simplestreams.Problem {
	var errs []simplestreams.Problem
	for _, p := range r.Problems {
		if p.Severity == simplestreams.SeverityError {
			errs = append(errs, p)
		}
	}
	return errs
}

// OK reports whether the stream has no errors (warnings are allowed).
func (r *Result) OK() bool { return len(r.Errors()) == 0 }

// Run checks the stream at rawURL (a mirror root or a .json/.sjson index URL,
// resolved as MAAS does) and prints a summary to o.Out. The error is only for
// a URL that is invalid or an index that cannot be read at all.
func Run(ctx context.Context, rawURL string, o Options) (*Result, error) {
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	indexURL, rootURL, err := upstream.ResolveURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	base, err := url.Parse(rootURL)
	if err != nil {
		return nil, fmt.Errorf("check: mirror root %q: %w", rootURL, err)
	}
	indexPath, err := relativePath(indexURL, rootURL)
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	docClient, dlClient := o.Client, o.Client
	if o.Client == nil {
		c := upstream.New(upstream.Options{})
		docClient, dlClient = c.HTTPClient(), c.DownloadClient()
	}

	res := &Result{IndexURL: indexURL, RootURL: rootURL, Signed: strings.HasSuffix(indexPath, ".sjson")}
	fmt.Fprintf(out, "Checking %s\n", indexURL)

	keyring := o.Keyring
	if res.Signed && len(keyring) == 0 {
		keyring, err = upstream.DefaultKeyring()
		if err != nil {
			return nil, fmt.Errorf("check: %w", err)
		}
		fmt.Fprintln(out, "No keyring given: verifying with the Ubuntu cloud image key (4A3CE3CD565D7EB5C810E2B97FF3F408476CF100)")
	}

	src := &source{ctx: ctx, base: base, client: docClient}
	report, err := simplestreams.Validate(src, indexPath)
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", indexURL, err)
	}
	res.Report = report
	res.Problems = append(res.Problems, report.Problems...)
	if res.Signed {
		res.verifySignatures(src.docs, keyring)
	}
	if o.Download {
		res.download(ctx, dlClient, base, report.Items, o.Progress)
	}
	res.printSummary(out, o.Download)
	return res, nil
}

// relativePath returns indexURL's path below rootURL, unescaped.
func relativePath(indexURL, rootURL string) (string, error) {
	rel, ok := strings.CutPrefix(indexURL, rootURL)
	if !ok || rel == "" {
		return "", fmt.Errorf("index URL %q is not below the mirror root %q", indexURL, rootURL)
	}
	p, err := url.PathUnescape(rel)
	if err != nil {
		return "", fmt.Errorf("index URL %q: %w", indexURL, err)
	}
	return p, nil
}

// document is one stream document as read, kept for signature verification.
type document struct {
	path string
	data []byte
}

// source reads stream documents over HTTP with ctx and remembers what it read.
type source struct {
	ctx    context.Context
	base   *url.URL
	client *http.Client
	docs   []document
}

// ReadFile GETs path below the mirror root; any status but 200 is an error.
func (s *source) ReadFile(path string) ([]byte, error) {
	u := s.base.JoinPath(path).String()
	req, err := http.NewRequestWithContext(s.ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", u, err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get %s: status %s", u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentSize+1))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", u, err)
	}
	if len(data) > maxDocumentSize {
		return nil, fmt.Errorf("get %s: document larger than %d MiB", u, maxDocumentSize>>20)
	}
	s.docs = append(s.docs, document{path: path, data: data})
	return data, nil
}

// verifySignatures checks the signature of every clearsigned document read;
// documents that are not clearsigned at all are already reported by the validator.
func (r *Result) verifySignatures(docs []document, keyring openpgp.EntityList) {
	for _, d := range docs {
		if !simplestreams.IsClearsigned(d.data) {
			continue
		}
		_, fp, err := simplestreams.VerifyClearsigned(d.data, keyring)
		if err != nil {
			r.Problems = append(r.Problems, simplestreams.Problem{
				Severity: simplestreams.SeverityError,
				MAAS:     simplestreams.MAASAll,
				Doc:      d.path,
				Message:  fmt.Sprintf("signature does not verify: %v", err),
			})
			continue
		}
		if !slices.Contains(r.Signers, fp) {
			r.Signers = append(r.Signers, fp)
		}
	}
}

// download GETs every item with a listed size and sha256 and compares both.
func (r *Result) download(ctx context.Context, client *http.Client, base *url.URL, items []simplestreams.ItemRef, progress func(done, total int64)) {
	c := &counter{report: progress}
	for _, it := range items {
		if it.Size >= 0 && validSHA256(it.SHA256) {
			c.total += it.Size
		}
	}
	c.add(0)
	for _, it := range items {
		if it.Size < 0 || !validSHA256(it.SHA256) {
			continue // the validator already reported the listing
		}
		end := c.done + it.Size
		c.limit = end
		n, sum, err := fetchItem(ctx, client, base.JoinPath(it.Path).String(), it.Size, c)
		// A short or failed item counts as checked: the last report is total of total.
		c.add(end - c.done)
		r.BytesChecked += n
		r.ItemsChecked++
		where := fmt.Sprintf("product %s version %s item %s", it.ProductID, it.Version, it.Key)
		switch {
		case err != nil:
			r.addItemProblem(it, where, "cannot download %s: %v", it.Path, err)
		case n != it.Size:
			r.addItemProblem(it, where, "%s is %d bytes, listed size %d", it.Path, n, it.Size)
		case sum != it.SHA256:
			r.addItemProblem(it, where, "%s has sha256 %s, listed sha256 %s", it.Path, sum, it.SHA256)
		}
	}
}

func (r *Result) addItemProblem(it simplestreams.ItemRef, where, format string, args ...any) {
	r.Problems = append(r.Problems, simplestreams.Problem{
		Severity: simplestreams.SeverityError,
		MAAS:     simplestreams.MAASAll,
		Doc:      it.Doc,
		Where:    where,
		Message:  fmt.Sprintf(format, args...),
	})
}

// counter adds up the bytes of items checked and reports them.
type counter struct {
	done, total int64
	limit       int64 // the end of the item being read
	report      func(done, total int64)
}

func (c *counter) add(n int64) {
	c.done += n
	if c.report != nil {
		c.report(c.done, c.total)
	}
}

// Write counts what passes, up to the item's listed size, so that a
// counter can sit beside the hash.
func (c *counter) Write(p []byte) (int, error) {
	c.add(min(int64(len(p)), c.limit-c.done))
	return len(p), nil
}

// fetchItem streams u through sha256 (and c), reading at most size+1 bytes, and returns the bytes read and the hex sum.
func fetchItem(ctx context.Context, client *http.Client, u string, size int64, c *counter) (int64, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", fmt.Errorf("get %s: %w", u, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("get %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, "", fmt.Errorf("status %s", resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(h, c), io.LimitReader(resp.Body, size+1))
	if err != nil {
		return n, "", fmt.Errorf("read %s: %w", u, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func validSHA256(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// printSummary writes what was read, the counts, each problem and the verdict.
func (r *Result) printSummary(out io.Writer, downloaded bool) {
	switch {
	case !r.Signed:
		fmt.Fprintln(out, "Signed: no (a .json index: no signature is checked)")
	case len(r.Signers) == 0:
		fmt.Fprintln(out, "Signed: yes, but no signature verified")
	default:
		fmt.Fprintf(out, "Signed: yes, by %s\n", strings.Join(r.Signers, ", "))
	}
	products, versions := 0, 0
	for _, pf := range r.Report.Products {
		products += len(pf.Products)
		for _, p := range pf.Products {
			versions += len(p.Versions)
		}
	}
	fmt.Fprintf(out, "Product files: %d, products: %d, versions: %d, items: %d\n",
		len(r.Report.Products), products, versions, len(r.Report.Items))
	if downloaded {
		fmt.Fprintf(out, "Downloaded: %d items, %d bytes checked\n", r.ItemsChecked, r.BytesChecked)
	} else {
		fmt.Fprintln(out, "Items not downloaded (use --download to check every size and sha256)")
	}
	for _, p := range r.Problems {
		fmt.Fprintln(out, p.String())
	}
	errs := len(r.Errors())
	warnings := len(r.Problems) - errs
	switch {
	case errs == 0 && warnings == 0:
		fmt.Fprintln(out, "OK")
	case errs == 0:
		fmt.Fprintf(out, "OK (%s)\n", plural(warnings, "warning"))
	default:
		fmt.Fprintln(out, plural(errs, "problem"))
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
