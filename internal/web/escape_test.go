package web

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/upstream/upstreamtest"
)

const hostile = `<script>alert(1)</script>"><img src=x onerror=alert(2)>`

// hostileUpstream writes a stream whose product id, fields and version name
// hold markup, and serves it.
func hostileUpstream(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "streams/v1"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "files"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "files/root.tgz"), []byte("root"), 0o644))
	js := func(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`) }
	id := "com.example:" + js(hostile)
	index := fmt.Sprintf(`{"format": "index:1.0", "updated": "Tue, 25 Nov 2026 10:00:00 +0000", "index": {
	  "com.example:hostile": {"datatype": "image-ids", "format": "products:1.0", "path": "streams/v1/hostile.json",
	    "updated": "Tue, 25 Nov 2026 10:00:00 +0000", "products": ["%s"]}}}`, id)
	products := fmt.Sprintf(`{"content_id": "com.example:hostile", "datatype": "image-ids", "format": "products:1.0",
	  "updated": "Tue, 25 Nov 2026 10:00:00 +0000", "products": {"%[1]s": {
	    "os": "%[2]s", "release": "%[2]s", "arch": "amd64", "subarch": "generic", "label": "%[2]s", "release_title": "%[2]s",
	    "versions": {"20261125": {"items": {"root-tgz": {"ftype": "root-tgz", "path": "files/root.tgz", "size": 4,
	      "sha256": "4813494d137e1631bba301d5acab6e7bb7aa74ce1185d456565ef51d737677b2"}}}}}}}`, id, js(hostile))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "streams/v1/index.json"), []byte(index), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "streams/v1/hostile.json"), []byte(products), 0o644))
	return upstreamtest.NewServer(t, dir).URL + "/streams/v1/index.json"
}

// TestPortalEscapesText: text from an upstream or from a form is shown as
// text, never run as markup.
func TestPortalEscapesText(t *testing.T) {
	e := newTestEnv(t, 1<<20)
	index := hostileUpstream(t)

	pages := []struct{ name, path string }{
		{"browse", "/upstream/browse?url=" + url.QueryEscape(index)},
		{"filtered rows", "/upstream/products?url=" + url.QueryEscape(index) + "&q=" + url.QueryEscape("<script>")},
		{"upstream page", "/upstream"},
	}
	for _, p := range pages {
		t.Run(p.name, func(t *testing.T) {
			resp, body := e.get(t, p.path, "HX-Request", "true")
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			assert.NotContains(t, body, "<script>alert")
			assert.NotContains(t, body, "<img src=x")
			if p.name != "upstream page" {
				assert.Contains(t, body, "&lt;script&gt;alert(1)&lt;/script&gt;", "shown as text")
			}
		})
	}

	t.Run("upload form values", func(t *testing.T) {
		resp, body := e.upload(t, "/images/upload", []part{{"os", "ubuntu"}, {"release", hostile}, {"arch", "amd64"}, {"version", "1"}},
			bootFileParts(), "HX-Request", "true")
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.NotContains(t, body, "<script>alert")
		assert.NotContains(t, body, "<img src=x")
		assert.Contains(t, body, `id="err-release"`)
	})

	t.Run("filter expression", func(t *testing.T) {
		resp, body := e.get(t, "/upstream/products?url="+url.QueryEscape(index)+"&filters="+url.QueryEscape(hostile), "HX-Request", "true")
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.NotContains(t, body, "<script>alert")
	})
}
