package web

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzNextPage: whatever a login link's next parameter holds, the browser
// is only ever sent to a page of this server.
func FuzzNextPage(f *testing.F) {
	for _, s := range []string{"", "/", "/images", "//evil.example", "/\\evil.example", "https://evil.example/",
		"/login?next=/login", "javascript:alert(1)", "/%2f%2fevil", " /images", "/upstream?url=x#y", "/\t/evil.example", "/\n/evil.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := nextPage(next)
		// Browsers drop tabs and newlines from a URL before reading it.
		seen := strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(got)
		if !strings.HasPrefix(seen, "/") || strings.HasPrefix(seen, "//") || strings.HasPrefix(seen, "/\\") {
			t.Fatalf("nextPage(%q) = %q leaves the server", next, got)
		}
		// Resolved against this server, as a browser does with Location.
		base, _ := url.Parse("http://customstream.test/login")
		if u, err := base.Parse(got); err == nil && u.Host != "customstream.test" {
			t.Fatalf("nextPage(%q) = %q resolves to host %q", next, got, u.Host)
		}
	})
}
