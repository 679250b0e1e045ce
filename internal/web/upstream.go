package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/blobs"
	"github.com/customstream/customstream/internal/catalog"
	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/internal/units"
	"github.com/customstream/customstream/internal/upstream"
	"github.com/customstream/customstream/jobs"
)

// maxJSONBody caps a JSON request: they carry a URL and a few ids.
const maxJSONBody = 1 << 20

// readJSON decodes a capped JSON body; the body may be streamed.
func (h *handler) readJSON(c *fiber.Ctx, v any) error {
	data, err := io.ReadAll(io.LimitReader(h.requestBody(c), maxJSONBody+1))
	if err != nil {
		return fiber.NewError(fiber.StatusBadRequest, "the request body could not be read")
	}
	if len(data) > maxJSONBody {
		c.Context().SetConnectionClose()
		return fiber.NewError(fiber.StatusRequestEntityTooLarge, "the JSON body is larger than 1 MiB")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fiber.NewError(fiber.StatusBadRequest, "the body is not the JSON this endpoint takes: "+err.Error())
	}
	return nil
}

// loadCatalog loads an upstream's catalog; a bad URL is the client's fault,
// an upstream that fails is a bad gateway.
func (h *handler) loadCatalog(c *fiber.Ctx, rawURL string, refresh bool) (*catalog.Loaded, error) {
	if rawURL == "" {
		rawURL = catalog.DefaultURL
	}
	l, err := h.Catalog.Load(c.Context(), rawURL, refresh)
	var bad *catalog.BadURLError
	switch {
	case errors.As(err, &bad):
		return nil, fiber.NewError(fiber.StatusBadRequest, err.Error())
	case err != nil:
		h.Log.Warn("Upstream failed", "url", rawURL, "error", err)
		return nil, fiber.NewError(fiber.StatusBadGateway, err.Error())
	}
	return l, nil
}

// apiUpstreamProduct is one upstream product in the JSON API.
type apiUpstreamProduct struct {
	ProductID     string `json:"product_id"`
	ContentID     string `json:"content_id"`
	Kind          string `json:"kind"`
	OS            string `json:"os"`
	Release       string `json:"release"`
	Arch          string `json:"arch"`
	Subarch       string `json:"subarch"`
	Label         string `json:"label"`
	Kflavor       string `json:"kflavor"`
	LatestVersion string `json:"latest_version"`
	Size          int64  `json:"size"`
	Mirrored      bool   `json:"mirrored"`
	State         string `json:"state"`
}

// browse applies a query to a loaded catalog and tells each product's state here.
func (h *handler) browse(l *catalog.Loaded, q catalog.Query) ([]upstream.Entry, map[string]string, error) {
	entries := l.Filter(q)
	imgs, err := h.Images.List()
	if err != nil {
		return nil, nil, err
	}
	return entries, catalog.States(imgs, l.Catalog.Root, entries), nil
}

// fetchUpstreamAPI is POST /api/upstream/fetch.
func (h *handler) fetchUpstreamAPI(c *fiber.Ctx) error {
	var req struct {
		URL     string   `json:"url"`
		Filters []string `json:"filters"`
		Q       string   `json:"q"`
		Refresh bool     `json:"refresh"`
	}
	if err := h.readJSON(c, &req); err != nil {
		return err
	}
	filters, err := simplestreams.ParseFilters(req.Filters...)
	if err != nil {
		return fiber.NewError(fiber.StatusBadRequest, err.Error())
	}
	l, err := h.loadCatalog(c, req.URL, req.Refresh)
	if err != nil {
		return err
	}
	entries, states, err := h.browse(l, catalog.Query{Filters: filters, Text: req.Q})
	if err != nil {
		return err
	}
	products := make([]apiUpstreamProduct, 0, len(entries))
	for _, e := range entries {
		state := catalog.State(states, e.ProductID)
		products = append(products, apiUpstreamProduct{ProductID: e.ProductID, ContentID: e.ContentID, Kind: e.Kind,
			OS: e.Fields["os"], Release: e.Fields["release"], Arch: e.Fields["arch"], Subarch: e.Fields["subarch"],
			Label: e.Fields["label"], Kflavor: e.Fields["kflavor"], LatestVersion: e.LatestVersion, Size: e.Size,
			Mirrored: state == catalog.StateMirrored, State: state})
	}
	warnings := l.Catalog.Warnings
	if warnings == nil {
		warnings = []string{}
	}
	return c.JSON(fiber.Map{"url": l.Catalog.URL, "index_url": l.Catalog.IndexURL, "signed": l.Catalog.Signed,
		"signer": l.Catalog.Signer, "fetched_at": l.Catalog.FetchedAt, "warnings": warnings, "products": products})
}

// mirrorPlan is what a mirror request would start.
type mirrorPlan struct {
	versions []images.MirrorVersion
	// Total is the bytes of every selected item; Download the bytes not
	// already in the blob store (each content once).
	Total, Download int64
}

// planMirror turns product ids (plus the bootloaders when asked) into the
// latest versions to mirror; an unknown id is a 400 naming it.
func (h *handler) planMirror(l *catalog.Loaded, ids []string, bootloaders bool) (*mirrorPlan, error) {
	selected, missing := l.Select(ids, nil, bootloaders)
	if len(missing) > 0 {
		return nil, fiber.NewError(fiber.StatusBadRequest, "product_ids: not in the catalog of "+l.Catalog.URL+": "+strings.Join(missing, ", "))
	}
	if len(selected) == 0 {
		return nil, fiber.NewError(fiber.StatusBadRequest, "product_ids: select at least one product")
	}
	versions, err := l.LatestVersions(selected)
	if err != nil {
		return nil, fiber.NewError(fiber.StatusBadRequest, "product_ids: "+err.Error())
	}
	plan := &mirrorPlan{versions: versions}
	counted := map[string]bool{}
	for _, v := range versions {
		for _, it := range v.Items {
			plan.Total += it.Size
			if _, ok := h.Blobs.Has(it.SHA256); !ok && !counted[it.SHA256] {
				plan.Download += it.Size
			}
			counted[it.SHA256] = true
		}
	}
	return plan, nil
}

// startMirror checks free space, then records and enqueues one job per
// version, and audits the outcome.
func (h *handler) startMirror(c *fiber.Ctx, l *catalog.Loaded, plan *mirrorPlan) (started, skipped []jobs.Started, err error) {
	if free, err := blobs.FreeSpace(h.Config.DataDir); err == nil {
		if plan.Download > free {
			err := fiber.NewError(fiber.StatusInsufficientStorage, fmt.Sprintf(
				"not enough space: the selection needs %s, the data directory has %s free", units.Bytes(plan.Download), units.Bytes(free)))
			h.auditOutcome(c, auditMirror, store.AuditRefused, l.Catalog.URL, err.Message)
			return nil, nil, err
		}
	}
	started, skipped, err = jobs.StartMirrors(c.Context(), h.Images, h.Queue, plan.versions, h.Log)
	if err != nil {
		h.auditOutcome(c, auditMirror, store.AuditRefused, l.Catalog.URL, err.Error())
		return nil, nil, fiber.NewError(fiber.StatusBadRequest, err.Error())
	}
	h.audit(c, auditMirror, l.Catalog.URL, mirrorDetail(started, skipped, plan.Download))
	return started, skipped, nil
}

// mirrorDetail lists what a mirror request started and skipped.
func mirrorDetail(started, skipped []jobs.Started, download int64) string {
	names := func(list []jobs.Started) string {
		out := make([]string, len(list))
		for i, s := range list {
			out[i] = s.ProductID + " " + s.VersionName
		}
		return strings.Join(out, ", ")
	}
	detail := fmt.Sprintf("%d started (%s to download)", len(started), units.Bytes(download))
	if len(started) > 0 {
		detail += ": " + names(started)
	}
	if len(skipped) > 0 {
		detail += fmt.Sprintf("; %d skipped: %s", len(skipped), names(skipped))
	}
	return detail
}

// mirrorAPI is POST /api/images/mirror.
func (h *handler) mirrorAPI(c *fiber.Ctx) error {
	var req struct {
		URL         string   `json:"url"`
		ProductIDs  []string `json:"product_ids"`
		Bootloaders *bool    `json:"bootloaders"`
	}
	if err := h.readJSON(c, &req); err != nil {
		return err
	}
	l, err := h.loadCatalog(c, req.URL, false)
	if err != nil {
		return err
	}
	// Bootloaders come by default: a site with no other source cannot boot
	// machines without them.
	plan, err := h.planMirror(l, req.ProductIDs, req.Bootloaders == nil || *req.Bootloaders)
	if err != nil {
		return err
	}
	started, skipped, err := h.startMirror(c, l, plan)
	if err != nil {
		return err
	}
	if started == nil {
		started = []jobs.Started{}
	}
	if skipped == nil {
		skipped = []jobs.Started{}
	}
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"jobs": started, "skipped": skipped,
		"total_bytes": plan.Total, "download_bytes": plan.Download})
}
