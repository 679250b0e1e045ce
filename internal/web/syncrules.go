package web

import (
	"errors"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/hibiken/asynq"

	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/store"
	"github.com/customstream/customstream/jobs"
)

// syncData is the sync rules region.
func (h *handler) syncData(message string) (fiber.Map, error) {
	rules, err := h.Store.ListSyncRules()
	if err != nil {
		return nil, err
	}
	// "6h", not Go's "6h0m0s".
	interval := strings.TrimSuffix(strings.TrimSuffix(h.Config.SyncInterval.String(), "0s"), "0m")
	return fiber.Map{"Rules": rules, "Interval": interval, "Message": message}, nil
}

func (h *handler) syncRegion(c *fiber.Ctx, message string) error {
	data, err := h.syncData(message)
	if err != nil {
		return err
	}
	return h.partial(c, "sync_rules", data)
}

// enqueueSync starts a sync run now; one already waiting is enough.
func (h *handler) enqueueSync(c *fiber.Ctx) error {
	_, err := h.Queue.EnqueueContext(c.Context(), jobs.NewSyncTask())
	if err != nil && !errors.Is(err, asynq.ErrDuplicateTask) && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return err
	}
	return nil
}

// createSyncRule keeps the ticked products, or else every product the
// filter expressions match, in sync, and runs the rules at once.
func (h *handler) createSyncRule(c *fiber.Ctx) error {
	l, ids, bootloaders, err := h.selection(c)
	if err != nil {
		return err
	}
	rule := &store.SyncRule{ID: images.NewID(), URL: l.Catalog.IndexURL, Bootloaders: bootloaders, CreatedAt: time.Now().UTC()}
	if len(ids) > 0 {
		rule.ProductIDs = ids
	} else if expr := strings.TrimSpace(string(c.Request().PostArgs().Peek("filters"))); expr != "" {
		if _, err := simplestreams.ParseFilters(expr); err != nil {
			return fiber.NewError(fiber.StatusBadRequest, err.Error())
		}
		rule.Filters = strings.Fields(expr)
	} else {
		return fiber.NewError(fiber.StatusBadRequest, "Tick the products to keep in sync, or type a filter expression.")
	}
	if err := h.Store.PutSyncRule(rule); err != nil {
		return err
	}
	h.audit(c, auditSyncRuleCreate, rule.URL, ruleDetail(rule))
	if err := h.enqueueSync(c); err != nil {
		return err
	}
	return h.syncRegion(c, "Rule saved; a sync run has started.")
}

// deleteSyncRule stops keeping a selection in sync; mirrored images stay.
func (h *handler) deleteSyncRule(c *fiber.Ctx) error {
	rule, err := h.Store.DeleteSyncRule(c.Params("id"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Deleted already, maybe from another tab: the list shows the truth.
	case err != nil:
		return err
	default:
		h.audit(c, auditSyncRuleDelete, rule.URL, ruleDetail(rule))
	}
	return h.syncRegion(c, "")
}

// syncNow runs the sync rules now.
func (h *handler) syncNow(c *fiber.Ctx) error {
	if err := h.enqueueSync(c); err != nil {
		return err
	}
	h.audit(c, auditSyncRun, "every sync rule", "")
	return h.syncRegion(c, "A sync run has started; new versions appear on the Images page.")
}

// ruleDetail says what a sync rule selects, for the audit log.
func ruleDetail(r *store.SyncRule) string {
	what := "filters: " + strings.Join(r.Filters, " ")
	if len(r.ProductIDs) > 0 {
		what = "products: " + strings.Join(r.ProductIDs, ", ")
	}
	if r.Bootloaders {
		what += "; with bootloaders"
	}
	return what
}
