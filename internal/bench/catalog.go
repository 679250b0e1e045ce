package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/customstream/customstream/internal/units"
	"github.com/customstream/customstream/internal/upstream/upstreamtest"
)

// catalogAndIdle: the idle rows on a freshly started server, then the
// catalog rows on the same server with a synthetic upstream behind nginx.
func (r *run) catalogAndIdle(ctx context.Context) error {
	dir, err := r.dir("upstream-large")
	if err != nil {
		return err
	}
	r.logf("generating a synthetic upstream of %d products", r.Sizes.CatalogProducts)
	if err := upstreamtest.GenerateLarge(dir, r.Sizes.CatalogProducts, 1); err != nil {
		return err
	}
	ng := &site{root: dir}
	n, err := r.startNginx(ctx, "nginx-catalog", []*site{ng})
	if err != nil {
		return err
	}
	defer n.stop()
	s, err := r.startServer(ctx, "catalog")
	if err != nil {
		return err
	}
	defer s.stop()
	if err := r.idle(ctx, s); err != nil {
		return err
	}

	indexURL := fmt.Sprintf("http://127.0.0.1:%d/streams/v1/index.json", ng.port)
	var fetches []time.Duration
	for i := 0; i < 3; i++ {
		start := time.Now()
		// A query that matches nothing keeps the answer small: the time is the catalog's.
		if err := s.api(http.MethodPost, "/api/upstream/fetch", map[string]any{"url": indexURL, "refresh": true, "q": "no product matches this"}, nil); err != nil {
			return err
		}
		fetches = append(fetches, time.Since(start))
	}
	fetch := median(fetches)
	products := fmt.Sprintf("%d products", r.Sizes.CatalogProducts)
	r.add(atMost("catalog", products+": fetch + parse + cache (POST /api/upstream/fetch, median of 3)", secs(fetch), "2 s (target)",
		fetch.Seconds()/2, 1))

	cookie, err := s.login()
	if err != nil {
		return err
	}
	queries := []url.Values{
		{"q": {"noble"}},
		{"q": {"noble hwe"}},
		{"filters": {"arch=amd64 release~(jammy|noble) label=stable"}},
		{"arch": {"arm64"}, "os": {"ubuntu"}},
		{"q": {"jammy"}, "arch": {"amd64"}},
	}
	var lat []time.Duration
	for i := 0; i < 200; i++ {
		q := queries[i%len(queries)]
		q.Set("url", indexURL)
		d, err := s.fragment("/upstream/products?"+q.Encode(), cookie)
		if err != nil {
			return err
		}
		lat = append(lat, d)
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	measure := products + ": filter fragment (GET /upstream/products, 200 keystrokes)"
	r.add(atMost("catalog", measure+", p50", secs(p50), "20 ms (target)", p50.Seconds()/0.020, 1))
	r.add(atMost("catalog", measure+", p99", secs(p99), "50 ms (target)", p99.Seconds()/0.050, 1))
	peak, err := procStatus(s.pid(), "VmHWM")
	if err != nil {
		return err
	}
	r.add(atMost("catalog", products+": server peak RSS", units.Bytes(peak<<10), "300 MiB (target)", float64(peak<<10)/(300<<20), 1))
	return nil
}

// idle measures the server's RSS and CPU while nothing happens.
func (r *run) idle(ctx context.Context, s *server) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(3 * time.Second):
	}
	before, err := cpuTime(s.pid())
	if err != nil {
		return err
	}
	const window = 20 * time.Second
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(window):
	}
	after, err := cpuTime(s.pid())
	if err != nil {
		return err
	}
	rss, err := procStatus(s.pid(), "VmRSS")
	if err != nil {
		return err
	}
	r.add(atMost("idle", "`customstream all` 3 s after start: RSS", units.Bytes(rss<<10), "60 MiB (target)", float64(rss<<10)/(60<<20), 1))
	cpu := float64(after-before) / float64(window)
	r.add(Row{What: "idle", Measure: fmt.Sprintf("CPU over the next %s", window), Ours: fmt.Sprintf("%.2f %%", 100*cpu),
		Ref: "≈ 0 (target: under 1 %)", Ratio: cpu / 0.01, Target: "≤ 1×", Pass: cpu <= 0.01})
	return nil
}

// login opens a portal session and returns its cookie.
func (s *server) login() (*http.Cookie, error) {
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.PostForm(s.url+"/login", url.Values{"user": {"admin"}, "password": {benchPassword}})
	if err != nil {
		return nil, err
	}
	res.Body.Close()
	for _, c := range res.Cookies() {
		if c.Name == "customstream_session" {
			return c, nil
		}
	}
	return nil, fmt.Errorf("login answered %s without a session cookie", res.Status)
}

// fragment GETs an HTMX fragment and returns the time to the last byte.
func (s *server) fragment(path string, cookie *http.Cookie) (time.Duration, error) {
	req, err := http.NewRequest(http.MethodGet, s.url+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("HX-Request", "true")
	req.AddCookie(cookie)
	start := time.Now()
	res, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if res.StatusCode != http.StatusOK || strings.Contains(string(body), "<html") {
		return 0, fmt.Errorf("GET %s: %s, want a 200 fragment", path, res.Status)
	}
	return d, nil
}
