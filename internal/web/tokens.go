package web

import (
	"errors"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/auth"
	"github.com/customstream/customstream/internal/store"
)

// tokensData is what the API tokens page and its partial show; Created is
// the plain token, shown once right after it is made.
func (h *handler) tokensData(created, message, nameErr, name string) (fiber.Map, error) {
	tokens, err := h.Store.ListAPITokens()
	if err != nil {
		return nil, err
	}
	return fiber.Map{"Tokens": tokens, "Created": created, "Message": message, "NameError": nameErr, "Name": name,
		"EnvToken": h.envTokenHash != "", "EnvTokenName": envTokenName}, nil
}

// showTokensPage lists the API tokens.
func (h *handler) showTokensPage(c *fiber.Ctx) error {
	data, err := h.tokensData("", "", "", "")
	if err != nil {
		return err
	}
	return h.page(c, "tokens", "API tokens", "tokens", data)
}

func (h *handler) tokensRegion(c *fiber.Ctx, status int, created, message, nameErr, name string) error {
	data, err := h.tokensData(created, message, nameErr, name)
	if err != nil {
		return err
	}
	return h.region(c, status, "tokens", "tokens", "API tokens", "tokens", data)
}

// createToken makes a named token and shows it once; only its hash is kept.
func (h *handler) createToken(c *fiber.Ctx) error {
	name := strings.TrimSpace(c.FormValue("name"))
	if msg := checkTokenName(name); msg != "" {
		return h.tokensRegion(c, fiber.StatusBadRequest, "", "", msg, name)
	}
	token := auth.NewAPIToken()
	t := &store.APIToken{ID: auth.NewSecret(9), Name: name, Hash: auth.HashSecret(token),
		Hint: token[:len(auth.TokenPrefix)+4], CreatedAt: time.Now().UTC()}
	if err := h.Store.CreateAPIToken(t); errors.Is(err, store.ErrConflict) {
		return h.tokensRegion(c, fiber.StatusConflict, "", "", "A token with this name exists: choose another name.", name)
	} else if err != nil {
		return err
	}
	h.Log.Info("API token created", slog.String("token_name", name), slog.String("user", actor(c)))
	h.audit(c, auditTokenCreate, name, "starts with "+t.Hint)
	return h.tokensRegion(c, fiber.StatusOK, token, "", "", "")
}

// deleteToken revokes a token at once.
func (h *handler) deleteToken(c *fiber.Ctx) error {
	t, err := h.Store.DeleteAPIToken(c.Params("id"))
	if errors.Is(err, store.ErrNotFound) {
		return h.tokensRegion(c, fiber.StatusNotFound, "", "This token no longer exists.", "", "")
	}
	if err != nil {
		return err
	}
	h.Log.Info("API token revoked", slog.String("token_name", t.Name), slog.String("user", actor(c)))
	h.audit(c, auditTokenRevoke, t.Name, "starts with "+t.Hint)
	return h.tokensRegion(c, fiber.StatusOK, "", "Revoked "+t.Name+": it no longer works.", "", "")
}

// checkTokenName returns what is wrong with a token name, or "".
func checkTokenName(name string) string {
	switch {
	case name == "":
		return "Give the token a name, e.g. the script or host that uses it."
	case utf8.RuneCountInString(name) > 64:
		return "The name is too long: at most 64 characters."
	case strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return "The name holds characters that cannot be shown."
	}
	return ""
}
