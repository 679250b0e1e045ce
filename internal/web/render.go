package web

import (
	"html/template"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/units"
)

// isHTMX reports whether the request came from htmx, which wants a fragment.
func isHTMX(c *fiber.Ctx) bool {
	return c.Get("HX-Request") == "true"
}

// isAPI reports whether the request is one of the JSON API's.
func isAPI(c *fiber.Ctx) bool {
	return strings.HasPrefix(c.Path(), "/api/")
}

// page renders a full page inside the layout.
func (h *handler) page(c *fiber.Ctx, name, title, nav string, data fiber.Map) error {
	data["Title"] = title
	data["Nav"] = nav
	data["Version"] = h.Version
	if sess := session(c); sess != nil {
		data["LoggedIn"] = true
		data["CSRF"] = sess.CSRF
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Render("pages/"+name, data, "layouts/base")
}

// region answers a form's post: htmx gets the form's region, a plain post
// the whole page.
func (h *handler) region(c *fiber.Ctx, status int, partial, page, title, nav string, data fiber.Map) error {
	c.Status(status)
	if isHTMX(c) {
		return h.partial(c, partial, data)
	}
	return h.page(c, page, title, nav, data)
}

// partial renders one swappable region alone.
func (h *handler) partial(c *fiber.Ctx, name string, data any) error {
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Render("partials/"+name, data)
}

func templateFuncs() template.FuncMap {
	return template.FuncMap{
		"bytes":    units.Bytes,
		"duration": units.Duration,
		"rate":     func(perSecond float64) string { return units.Bytes(int64(perSecond)) + "/s" },
		"join":     strings.Join,
		"origin":   originText,
		"wbr":      wbr,
		"now":      time.Now,
		"ago":      func(t time.Time) string { return units.Ago(time.Since(t)) },
		"until":    func(t time.Time) string { return units.In(time.Until(t)) },
		// field bundles one text input's data for partials/upload_field;
		// kind names the browser-side pattern, a first check before the
		// server's own.
		"field": func(name, label, placeholder string, required bool, kind string, form, errs map[string]string) map[string]any {
			return map[string]any{"Name": name, "Label": label, "Placeholder": placeholder, "Required": required,
				"Pattern": images.InputPatterns[kind], "Value": form[name], "Error": errs[name]}
		},
	}
}

// originText says where a version came from, for people: an imported
// one names the key that signed its archive by its last 16 digits, as gpg does.
func originText(origin string) string {
	switch {
	case origin == store.OriginUpload:
		return "uploaded"
	case images.IsImport(origin):
		fp := strings.TrimPrefix(origin, images.OriginImportPrefix)
		if len(fp) > 16 {
			fp = fp[len(fp)-16:]
		}
		return "imported from an archive signed by " + fp
	}
	return "mirrored from " + origin
}

// wbr escapes s and lets a line break after each colon, so a long product
// id wraps between its parts rather than inside a word.
func wbr(s string) template.HTML {
	return template.HTML(strings.ReplaceAll(template.HTMLEscapeString(s), ":", ":<wbr>"))
}
