package web

import (
	"net/url"
	"path/filepath"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/httpfile"
)

// serveStreamDoc serves a stream document (index or product file). It reads
// the current file on every request: a publish is visible at once.
func (h *handler) serveStreamDoc(c *fiber.Ctx) error {
	if strings.HasSuffix(c.Path(), ".sjson") {
		return h.servePublished(c, "no-cache", fiber.MIMETextPlainCharsetUTF8)
	}
	return h.servePublished(c, "no-cache", fiber.MIMEApplicationJSONCharsetUTF8)
}

// serveKeyring hands out the public key that verifies the .sjson documents:
// binary for keyring_data@= and gpgv, armored for people.
func (h *handler) serveKeyring(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, "no-cache")
	if strings.HasSuffix(c.Path(), ".asc") {
		armored, err := h.Signer.PublicArmored()
		if err != nil {
			return err
		}
		c.Set(fiber.HeaderContentType, "application/pgp-keys")
		return c.Send(armored)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEOctetStream)
	return c.Send(h.Signer.PublicKeyring())
}

// serveItem serves an image file of a published version. The path is
// looked up among published files only, so nothing else in the data
// directory can be reached through it.
func (h *handler) serveItem(c *fiber.Ctx) error {
	return h.servePublished(c, "public, max-age=3600", fiber.MIMEOctetStream)
}

func (h *handler) servePublished(c *fiber.Ctx, cacheControl, contentType string) error {
	// Clients differ in whether they escape ':' in product file names.
	rel, err := url.PathUnescape(strings.TrimPrefix(c.Path(), "/"))
	if err != nil {
		return fiber.ErrNotFound
	}
	e, ok := h.Publisher.Lookup(rel)
	if !ok {
		return fiber.ErrNotFound
	}
	return httpfile.Serve(c, httpfile.File{
		Path:         filepath.Join(h.Publisher.Dir(), filepath.FromSlash(rel)),
		ETag:         e.SHA256,
		ContentType:  contentType,
		CacheControl: cacheControl,
		Data:         e.Data,
		ModTime:      e.ModTime,
	})
}
