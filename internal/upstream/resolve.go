package upstream

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrUnsafePath is wrapped by errors about paths that could leave the mirror root.
var ErrUnsafePath = errors.New("unsafe path")

// indexPath is what MAAS and sstream-mirror read below a bare mirror URL: the signed index.
const indexPath = "streams/v1/index.sjson"

// ResolveURL: a directory URL ("https://images.maas.io/ephemeral-v3/stable/" with or without trailing slash) means
// ROOT/streams/v1/index.sjson; a URL ending in .json or .sjson is used as given and the mirror root is the part before
// "streams/v1/" (as MAAS does: it matches streams/v1/.*\.(sjson|json)$). Only http and https; anything else is an error.
//
// A .json or .sjson URL with no /streams/v1/ in its path is refused: MAAS would treat it as a directory and
// ask for ".../index.json/streams/v1/index.sjson", and the paths inside the index are relative to a root
// that such a URL does not name.
func ResolveURL(raw string) (indexURL, root string, err error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", "", errors.New("upstream URL is empty")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("upstream URL %q is not a valid URL: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		if u.Scheme == "" {
			return "", "", fmt.Errorf("upstream URL %q has no scheme: start it with http:// or https://", s)
		}
		return "", "", fmt.Errorf("upstream URL %q uses %q: only http and https are supported", s, u.Scheme)
	}
	if u.Host == "" || u.Opaque != "" {
		return "", "", fmt.Errorf("upstream URL %q has no host", s)
	}
	// Item paths are appended to the root, so a query or fragment would be lost or misapplied.
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", "", fmt.Errorf("upstream URL %q must not have a query (?…) or fragment (#…)", s)
	}
	u.RawPath = "" // re-escape from Path so root and index agree

	rootURL := *u
	p := u.Path
	if strings.HasSuffix(p, ".json") || strings.HasSuffix(p, ".sjson") {
		i := strings.Index(p, "/streams/v1/")
		if i < 0 {
			return "", "", fmt.Errorf("upstream URL %q names a .json/.sjson file outside streams/v1/: give the mirror root (the directory holding streams/) or its .../streams/v1/index.sjson URL", s)
		}
		rootURL.Path = p[:i+1]
		return u.String(), rootURL.String(), nil
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	rootURL.Path = p
	idx := rootURL
	idx.Path = p + indexPath
	return idx.String(), rootURL.String(), nil
}

// checkPath refuses what MAAS and sstream-mirror refuse, plus anything that
// could change the meaning of a URL: absolute paths, "..", URLs, NUL, control
// characters and backslashes.
func checkPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty path", ErrUnsafePath)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%w: %q contains a NUL byte", ErrUnsafePath, p)
	case strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%w: %q contains a control character", ErrUnsafePath, p)
	case strings.Contains(p, `\`):
		return fmt.Errorf("%w: %q contains a backslash", ErrUnsafePath, p)
	case strings.Contains(p, "://"):
		return fmt.Errorf("%w: %q is a URL, not a path relative to the mirror root", ErrUnsafePath, p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%w: %q is absolute, not relative to the mirror root", ErrUnsafePath, p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return fmt.Errorf("%w: %q has a \"..\" segment", ErrUnsafePath, p)
		}
	}
	return nil
}

// ItemURL is the absolute URL of an item path (relative to the root); it refuses absolute paths, "..", NUL, backslashes, "://".
func (c *Catalog) ItemURL(path string) (string, error) {
	if err := checkPath(path); err != nil {
		return "", err
	}
	u, err := url.Parse(c.Root)
	if err != nil {
		return "", fmt.Errorf("mirror root %q: %w", c.Root, err)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	// Setting Path (not string concatenation) escapes spaces, '?' and '#'.
	u.Path += path
	u.RawPath = ""
	return u.String(), nil
}
