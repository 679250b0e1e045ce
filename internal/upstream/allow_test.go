package upstream

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAllowHosts(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("{}"))
	}))
	defer target.Close()
	// A server on "localhost" that redirects to 127.0.0.1: the same machine,
	// but another host as far as the allow-list goes.
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+r.URL.Path, http.StatusFound)
	}))
	defer redirector.Close()
	redirectorURL := strings.Replace(redirector.URL, "127.0.0.1", "localhost", 1)

	c := New(Options{AllowHosts: []string{"localhost"}})
	require.NoError(t, c.CheckAllowed(redirectorURL+"/streams/v1/index.json"))
	assert.ErrorIs(t, c.CheckAllowed("https://images.maas.io/ephemeral-v3/stable/"), ErrNotAllowed)

	_, err := c.FetchCatalog(context.Background(), redirectorURL+"/streams/v1/index.json")
	require.Error(t, err)
	assert.ErrorContains(t, err, "not an allowed upstream host", "a redirect cannot leave the allowed hosts")

	resp, err := c.DownloadClient().Get(target.URL + "/x")
	if err == nil {
		resp.Body.Close()
	}
	assert.ErrorIs(t, err, ErrNotAllowed, "downloads keep to the allow-list too")

	open := New(Options{})
	assert.NoError(t, open.CheckAllowed("https://images.maas.io/"), "an empty list allows any host")
	byPort := New(Options{AllowHosts: []string{strings.TrimPrefix(target.URL, "http://")}})
	assert.NoError(t, byPort.CheckAllowed(target.URL+"/"))
	assert.ErrorIs(t, byPort.CheckAllowed("http://127.0.0.1:1/"), ErrNotAllowed, "host:port entries match the port too")
}
