package web

import (
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/catalog"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/upstream"
)

// maxRows bounds the table: a 20,000-product catalog is browsed by filtering.
const maxRows = 500

// upstreamRow is an upstream product with its state here.
type upstreamRow struct {
	upstream.Entry
	State string
}

// filterSelects are the drop-down filters of the browse page.
var filterSelects = []struct{ Name, Label string }{
	{"os", "OS"}, {"release", "release"}, {"arch", "arch"}, {"subarch", "subarch"}, {"kflavor", "kernel flavour"}, {"label", "label"},
}

// rowsData filters a catalog for the rows partial.
func (h *handler) rowsData(l *catalog.Loaded, q catalog.Query) (fiber.Map, error) {
	entries, states, err := h.browse(l, q)
	if err != nil {
		return nil, err
	}
	total := len(entries)
	if len(entries) > maxRows {
		entries = entries[:maxRows]
	}
	rows := make([]upstreamRow, len(entries))
	for i, e := range entries {
		rows[i] = upstreamRow{Entry: e, State: catalog.State(states, e.ProductID)}
	}
	return fiber.Map{"Entries": rows, "Total": total}, nil
}

// browseData is everything the browse region shows of a loaded catalog.
func (h *handler) browseData(l *catalog.Loaded) (fiber.Map, error) {
	rows, err := h.rowsData(l, catalog.Query{})
	if err != nil {
		return nil, err
	}
	var selects []fiber.Map
	for _, s := range filterSelects {
		if values := l.Values(s.Name); len(values) > 0 {
			selects = append(selects, fiber.Map{"Name": s.Name, "Label": s.Label, "Values": values})
		}
	}
	return fiber.Map{"Catalog": l.Catalog, "Entries": l.Entries, "Selects": selects, "Rows": rows}, nil
}

// showUpstreamPage is the upstream browser; ?url= loads that upstream.
func (h *handler) showUpstreamPage(c *fiber.Ctx) error {
	ups, err := h.Catalog.Upstreams()
	if err != nil {
		return err
	}
	sync, err := h.syncData("")
	if err != nil {
		return err
	}
	data := fiber.Map{"URL": c.Query("url", catalog.DefaultURL), "Upstreams": ups, "Sync": sync}
	if c.Query("url") != "" {
		l, err := h.loadCatalog(c, c.Query("url"), false)
		var fe *fiber.Error
		switch {
		case errors.As(err, &fe):
			data["Error"], data["Message"] = true, fe.Message
		case err != nil:
			return err
		default:
			if data["Browse"], err = h.browseData(l); err != nil {
				return err
			}
		}
	}
	return h.page(c, "upstream", "Upstream", "upstream", data)
}

// showUpstreamBrowse loads an upstream for the browse region.
func (h *handler) showUpstreamBrowse(c *fiber.Ctx) error {
	l, err := h.loadCatalog(c, c.Query("url"), c.Query("refresh") != "")
	if err != nil {
		return err
	}
	data, err := h.browseData(l)
	if err != nil {
		return err
	}
	return h.partial(c, "upstream_browse", data)
}

// showUpstreamRows is the filtered table, on every filter keystroke.
func (h *handler) showUpstreamRows(c *fiber.Ctx) error {
	filters, err := simplestreams.ParseFilters(c.Query("filters"))
	if err != nil {
		// The table region stays in place, with the message in it.
		c.Status(fiber.StatusBadRequest)
		return h.partial(c, "upstream_rows", fiber.Map{"Error": err.Error()})
	}
	l, err := h.loadCatalog(c, c.Query("url"), false)
	if err != nil {
		return err
	}
	fields := map[string]string{}
	for _, s := range filterSelects {
		fields[s.Name] = c.Query(s.Name)
	}
	data, err := h.rowsData(l, catalog.Query{Filters: filters, Text: c.Query("q"), Fields: fields})
	if err != nil {
		return err
	}
	return h.partial(c, "upstream_rows", data)
}

// selection reads the mirror form: the upstream, the ticked products and
// whether bootloaders come along.
func (h *handler) selection(c *fiber.Ctx) (*catalog.Loaded, []string, bool, error) {
	args := c.Request().PostArgs()
	var ids []string
	for _, v := range args.PeekMulti("product_id") {
		ids = append(ids, string(v))
	}
	l, err := h.loadCatalog(c, string(args.Peek("url")), false)
	return l, ids, len(args.Peek("bootloaders")) > 0, err
}

// showMirrorPlan tells, before anything starts, what the selection would download.
func (h *handler) showMirrorPlan(c *fiber.Ctx) error {
	l, ids, bootloaders, err := h.selection(c)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return h.partial(c, "upstream_plan", fiber.Map{"Count": 0})
	}
	plan, err := h.planMirror(l, ids, bootloaders)
	if err != nil {
		return err
	}
	n := 0
	if bootloaders {
		n = len(l.Bootloaders())
	}
	return h.partial(c, "upstream_plan", fiber.Map{"Count": len(ids), "Bootloaders": n, "Total": plan.Total,
		"Download": plan.Download, "Reused": plan.Total - plan.Download})
}

// mirrorFromPortal starts mirroring the selection.
func (h *handler) mirrorFromPortal(c *fiber.Ctx) error {
	l, ids, bootloaders, err := h.selection(c)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return fiber.NewError(fiber.StatusBadRequest, "Select at least one product to mirror.")
	}
	plan, err := h.planMirror(l, ids, bootloaders)
	if err != nil {
		return err
	}
	started, skipped, err := h.startMirror(c, l, plan)
	if err != nil {
		return err
	}
	return h.partial(c, "upstream_mirror_result", fiber.Map{"Jobs": started, "Skipped": skipped, "Download": plan.Download})
}
