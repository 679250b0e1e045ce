package upstream

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResolveURL(t *testing.T) {
	tests := []struct {
		name      string
		raw       string
		wantIndex string
		wantRoot  string
		wantErr   string
	}{
		{"directory with slash", "https://images.maas.io/ephemeral-v3/stable/",
			"https://images.maas.io/ephemeral-v3/stable/streams/v1/index.sjson", "https://images.maas.io/ephemeral-v3/stable/", ""},
		{"directory without slash", "https://images.maas.io/ephemeral-v3/stable",
			"https://images.maas.io/ephemeral-v3/stable/streams/v1/index.sjson", "https://images.maas.io/ephemeral-v3/stable/", ""},
		{"host only", "http://mirror.example:8000",
			"http://mirror.example:8000/streams/v1/index.sjson", "http://mirror.example:8000/", ""},
		{"surrounding spaces", "  http://mirror.example/  ",
			"http://mirror.example/streams/v1/index.sjson", "http://mirror.example/", ""},
		{"index.json", "https://images.maas.io/ephemeral-v3/stable/streams/v1/index.json",
			"https://images.maas.io/ephemeral-v3/stable/streams/v1/index.json", "https://images.maas.io/ephemeral-v3/stable/", ""},
		{"index.sjson", "http://mirror.example/streams/v1/index.sjson",
			"http://mirror.example/streams/v1/index.sjson", "http://mirror.example/", ""},
		{"other product file name", "http://mirror.example/m/streams/v1/com.example:custom.json",
			"http://mirror.example/m/streams/v1/com.example:custom.json", "http://mirror.example/m/", ""},
		{"upper-case scheme", "HTTPS://mirror.example/",
			"https://mirror.example/streams/v1/index.sjson", "https://mirror.example/", ""},
		{"ftp refused", "ftp://mirror.example/streams/v1/index.json", "", "", `"ftp"`},
		{"file refused", "file:///srv/mirror/", "", "", `"file"`},
		{"no scheme", "images.maas.io/ephemeral-v3/stable/", "", "", "no scheme"},
		{"empty", " ", "", "", "empty"},
		{"no host", "http:///streams/v1/index.json", "", "", "no host"},
		{"query", "http://mirror.example/?token=x", "", "", "query"},
		{"fragment", "http://mirror.example/#top", "", "", "fragment"},
		{".json outside streams/v1", "http://mirror.example/custom/index.json", "", "", "outside streams/v1/"},
		{".sjson outside streams/v1", "http://mirror.example/streams/index.sjson", "", "", "outside streams/v1/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			index, root, err := ResolveURL(tc.raw)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantIndex, index)
			assert.Equal(t, tc.wantRoot, root)
		})
	}
}

func TestItemURL(t *testing.T) {
	cat := &Catalog{Root: "https://images.maas.io/ephemeral-v3/stable/"}
	tests := []struct {
		name    string
		path    string
		want    string
		wantErr string
	}{
		{"plain", "jammy/amd64/20250718/squashfs", "https://images.maas.io/ephemeral-v3/stable/jammy/amd64/20250718/squashfs", ""},
		{"colons kept", "streams/v1/com.ubuntu.maas:stable:v3:download.json", "https://images.maas.io/ephemeral-v3/stable/streams/v1/com.ubuntu.maas:stable:v3:download.json", ""},
		{"space and hash escaped", "custom/my image#1?.tgz", "https://images.maas.io/ephemeral-v3/stable/custom/my%20image%231%3F.tgz", ""},
		{"dot segment allowed", "./a/b", "https://images.maas.io/ephemeral-v3/stable/./a/b", ""},
		{"parent", "../secret", "", ".."},
		{"parent inside", "a/../../secret", "", ".."},
		{"absolute", "/etc/passwd", "", "absolute"},
		{"URL", "https://evil.example/x", "", "URL"},
		{"NUL", "a\x00b", "", "NUL"},
		{"backslash", `a\..\b`, "", "backslash"},
		{"newline", "a\nb", "", "control"},
		{"empty", "", "", "empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cat.ItemURL(tc.path)
			if tc.wantErr != "" {
				require.ErrorIs(t, err, ErrUnsafePath)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestNewDefaults(t *testing.T) {
	c := New(Options{})
	assert.Equal(t, int64(DefaultMaxDocumentSize), c.maxSize)

	docs := c.HTTPClient()
	assert.Equal(t, DefaultTimeout, docs.Timeout)
	require.NotNil(t, docs.CheckRedirect)

	dl := c.DownloadClient()
	assert.Zero(t, dl.Timeout, "downloads of large images must have no whole-request timeout")
	require.NotNil(t, dl.CheckRedirect)

	// The default transport takes its proxy from HTTPS_PROXY/HTTP_PROXY/NO_PROXY
	// (TestProxyFromEnvironment checks it end to end) and bounds the waits.
	require.NotNil(t, c.transport)
	require.NotNil(t, c.transport.Proxy)
	assert.Equal(t, DefaultTimeout, c.transport.ResponseHeaderTimeout)
	assert.Equal(t, DefaultTimeout, c.transport.TLSHandshakeTimeout)
	assert.NotNil(t, c.transport.DialContext)

	c = New(Options{Timeout: 5 * time.Second, MaxDocumentSize: 10})
	assert.Equal(t, 5*time.Second, c.HTTPClient().Timeout)
	assert.Equal(t, int64(10), c.maxSize)
}

func TestUserAgent(t *testing.T) {
	var mu sync.Mutex
	var agents []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		agents = append(agents, r.UserAgent())
		mu.Unlock()
		http.NotFound(w, r)
	}))
	defer srv.Close()

	for _, tc := range []struct{ set, want string }{{"", DefaultUserAgent}, {"customstream/1.2 (site A)", "customstream/1.2 (site A)"}} {
		c := New(Options{UserAgent: tc.set, Transport: srv.Client().Transport})
		_, _ = c.FetchCatalog(context.Background(), srv.URL+"/streams/v1/index.json")
		resp, err := c.DownloadClient().Get(srv.URL + "/file")
		require.NoError(t, err)
		resp.Body.Close()
		mu.Lock()
		assert.Equal(t, []string{tc.want, tc.want}, agents)
		agents = nil
		mu.Unlock()
	}
}

func TestDefaultKeyring(t *testing.T) {
	keys, err := DefaultKeyring()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assert.Equal(t, "4A3CE3CD565D7EB5C810E2B97FF3F408476CF100", fingerprint(keys[0]))
}

func TestRedirects(t *testing.T) {
	root := buildTree(t, nil, nil)
	files := http.FileServer(http.Dir(root))
	// /hop/N/PATH redirects to /hop/N-1/PATH; /hop/0/PATH serves PATH.
	mux := http.NewServeMux()
	mux.HandleFunc("/hop/", func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.Path, "/hop/")
		nStr, path, _ := strings.Cut(rest, "/")
		n, err := strconv.Atoi(nStr)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if n > 0 {
			http.Redirect(w, r, fmt.Sprintf("/hop/%d/%s", n-1, path), http.StatusFound)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + path
		files.ServeHTTP(w, r2)
	})
	mux.HandleFunc("/ftp/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "ftp://mirror.example/streams/v1/index.json", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/file/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tests := []struct {
		name    string
		path    string
		wantErr []string
	}{
		{"one redirect per document", "/hop/1/streams/v1/index.json", nil},
		{"five redirects allowed", "/hop/5/streams/v1/index.json", nil},
		{"six redirects refused", "/hop/6/streams/v1/index.json", []string{"stopped after 5 redirects", "/hop/6/streams/v1/index.json"}},
		{"redirect to ftp", "/ftp/streams/v1/index.json", []string{"ftp://mirror.example/streams/v1/index.json", `not "ftp"`, "/ftp/streams/v1/index.json"}},
		{"redirect to file", "/file/streams/v1/index.json", []string{`not "file"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Options{Transport: srv.Client().Transport})
			cat, err := c.FetchCatalog(context.Background(), srv.URL+tc.path)
			if tc.wantErr == nil {
				require.NoError(t, err)
				assert.Len(t, cat.Products, 3)
				return
			}
			require.Error(t, err)
			for _, w := range tc.wantErr {
				assert.Contains(t, err.Error(), w)
			}
		})
	}

	t.Run("download client has the same rules", func(t *testing.T) {
		c := New(Options{Transport: srv.Client().Transport})
		_, err := c.DownloadClient().Get(srv.URL + "/ftp/x")
		require.ErrorContains(t, err, `not "ftp"`)
		_, err = c.DownloadClient().Get(srv.URL + "/hop/6/x")
		require.ErrorContains(t, err, "stopped after 5 redirects")
	})
}

const (
	proxyChildEnv = "CUSTOMSTREAM_UPSTREAM_PROXY_CHILD"
	proxyURLEnv   = "CUSTOMSTREAM_UPSTREAM_PROXY_TEST_URL"
	// upstreamHost does not resolve: only a proxy can reach it.
	upstreamHost = "upstream.invalid"
)

// TestProxyFromEnvironment checks that the default transport sends requests through
// HTTP_PROXY. net/http reads the proxy variables once per process and never proxies
// loopback addresses, so the fetch runs in a child test process with a fresh
// environment and targets a host name that only the proxy (an httptest server) serves.
func TestProxyFromEnvironment(t *testing.T) {
	if os.Getenv(proxyChildEnv) != "" {
		t.Skip("running as the proxy child")
	}
	files := http.FileServer(http.Dir(buildTree(t, nil, nil)))
	var mu sync.Mutex
	var seen []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.RequestURI)
		mu.Unlock()
		// A proxy receives the absolute URL of the target.
		if r.URL.Host != upstreamHost {
			http.Error(w, "not proxied: "+r.RequestURI, http.StatusBadGateway)
			return
		}
		files.ServeHTTP(w, r)
	}))
	defer proxy.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestProxyChild$", "-test.count=1", "-test.v")
	cmd.Env = append(withoutProxyEnv(os.Environ()),
		proxyChildEnv+"=1",
		proxyURLEnv+"=http://"+upstreamHost+"/streams/v1/index.json",
		"HTTP_PROXY="+proxy.URL, "http_proxy="+proxy.URL,
	)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "child output:\n%s", out)
	require.Contains(t, string(out), "PROXY-CHILD-OK", "child output:\n%s", out)

	mu.Lock()
	defer mu.Unlock()
	assert.Contains(t, seen, "http://"+upstreamHost+"/streams/v1/index.json")
	assert.Contains(t, seen, "http://"+upstreamHost+"/streams/v1/"+bootCID+".json")
	assert.Len(t, seen, 4)
}

// TestProxyChild is the child half of TestProxyFromEnvironment.
func TestProxyChild(t *testing.T) {
	if os.Getenv(proxyChildEnv) == "" {
		t.Skip("only runs as a child of TestProxyFromEnvironment")
	}
	cat, err := New(Options{}).FetchCatalog(context.Background(), os.Getenv(proxyURLEnv))
	require.NoError(t, err)
	require.Len(t, cat.Products, 3)
	fmt.Println("PROXY-CHILD-OK")
}

// withoutProxyEnv drops proxy settings inherited from the developer's shell or CI.
func withoutProxyEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "REQUEST_METHOD":
			continue
		}
		out = append(out, kv)
	}
	return out
}
