// Package upstream fetches and verifies an upstream simplestreams mirror's index and product files.
package upstream

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/customstream/customstream/internal/simplestreams"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultMaxDocumentSize = 64 << 20
	DefaultTimeout         = 60 * time.Second
	DefaultUserAgent       = "customstream"
	// MaxRedirects is how many redirects one request may follow.
	MaxRedirects = 5
)

//go:embed keys/ubuntu-cloudimage-keyring.asc
var ubuntuCloudImageKeyring []byte

// DefaultKeyring returns the Ubuntu cloud image signing key (4A3CE3CD565D7EB5C810E2B97FF3F408476CF100) that signs images.maas.io.
func DefaultKeyring() (openpgp.EntityList, error) {
	keys, err := simplestreams.ReadKeyring(ubuntuCloudImageKeyring)
	if err != nil {
		return nil, fmt.Errorf("embedded Ubuntu cloud image keyring: %w", err)
	}
	return keys, nil
}

// Options configures a Client; zero fields take the defaults above.
type Options struct {
	Keyring         openpgp.EntityList // verifies .sjson documents
	MaxDocumentSize int64              // default 64 MiB; a larger document is an error naming the URL and the cap
	Timeout         time.Duration      // per request; default 60 s
	UserAgent       string             // default "customstream"
	Transport       http.RoundTripper  // optional, for tests; default honours HTTPS_PROXY/HTTP_PROXY/NO_PROXY
	// AllowHosts, when not empty, are the only hosts (name, or name:port)
	// requests may go to, redirects and downloads included.
	AllowHosts []string
}

// Client fetches upstream documents with bounded size, time and redirects.
type Client struct {
	keyring  openpgp.EntityList
	maxSize  int64
	timeout  time.Duration
	docs     *http.Client
	download *http.Client
	// transport is the default transport New built (nil when Options.Transport was given).
	transport *http.Transport
	allow     map[string]bool
}

// ErrNotAllowed marks a host outside Options.AllowHosts.
var ErrNotAllowed = errors.New("not an allowed upstream host")

// CheckAllowed refuses a URL whose host is outside the allow-list.
func (c *Client) CheckAllowed(rawURL string) error {
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil {
		return fmt.Errorf("upstream URL %q: %w", rawURL, err)
	}
	return c.allowed(u)
}

func (c *Client) allowed(u *url.URL) error {
	if len(c.allow) == 0 || c.allow[strings.ToLower(u.Host)] || c.allow[strings.ToLower(u.Hostname())] {
		return nil
	}
	return fmt.Errorf("%s: %w (CUSTOMSTREAM_UPSTREAM_ALLOW)", u.Host, ErrNotAllowed)
}

// allowTransport refuses requests to hosts outside the allow-list, so a
// redirect or an item URL cannot lead anywhere else.
type allowTransport struct {
	base   http.RoundTripper
	client *Client
}

// RoundTrip checks the host, then sends the request.
func (t allowTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.client.allowed(req.URL); err != nil {
		return nil, err
	}
	return t.base.RoundTrip(req)
}

// New returns a Client for o, filling in defaults.
func New(o Options) *Client {
	if o.MaxDocumentSize <= 0 {
		o.MaxDocumentSize = DefaultMaxDocumentSize
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent
	}
	c := &Client{keyring: o.Keyring, maxSize: o.MaxDocumentSize, timeout: o.Timeout, allow: map[string]bool{}}
	for _, h := range o.AllowHosts {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			c.allow[h] = true
		}
	}
	base := o.Transport
	if base == nil {
		c.transport = defaultTransport(o.Timeout)
		base = c.transport
	}
	rt := userAgentTransport{base: allowTransport{base: base, client: c}, userAgent: o.UserAgent}
	c.docs = &http.Client{Transport: rt, CheckRedirect: checkRedirect, Timeout: o.Timeout}
	// Image files take far longer than any fixed timeout to arrive, so the
	// download client bounds connecting and waiting for headers only.
	c.download = &http.Client{Transport: rt, CheckRedirect: checkRedirect}
	return c
}

// HTTPClient returns the client used for stream documents: proxy from the environment, at most
// MaxRedirects redirects to http/https only, and Options.Timeout for the whole request.
func (c *Client) HTTPClient() *http.Client { return c.docs }

// DownloadClient returns a client with the same proxy and redirect rules and dial, TLS and
// response-header timeouts, but no whole-request timeout, for large item downloads.
func (c *Client) DownloadClient() *http.Client { return c.download }

// defaultTransport clones http.DefaultTransport with explicit timeouts and the proxy from the environment.
func defaultTransport(timeout time.Duration) *http.Transport {
	var t *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		t = dt.Clone()
	} else {
		t = &http.Transport{ForceAttemptHTTP2: true, MaxIdleConns: 100, IdleConnTimeout: 90 * time.Second}
	}
	t.Proxy = http.ProxyFromEnvironment
	t.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = timeout
	t.ResponseHeaderTimeout = timeout
	t.ExpectContinueTimeout = time.Second
	return t
}

// checkRedirect allows MaxRedirects hops, and only to http or https (never file:, ftp:, …).
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > MaxRedirects {
		return fmt.Errorf("stopped after %d redirects (last to %s)", MaxRedirects, req.URL.Redacted())
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return fmt.Errorf("redirected to %s: only http and https redirects are followed, not %q", req.URL.Redacted(), req.URL.Scheme)
	}
	return nil
}

// userAgentTransport sets the User-Agent on requests that have none.
type userAgentTransport struct {
	base      http.RoundTripper
	userAgent string
}

// RoundTrip clones the request before changing it, as RoundTrippers must.
func (t userAgentTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("User-Agent") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("User-Agent", t.userAgent)
	}
	return t.base.RoundTrip(req)
}
