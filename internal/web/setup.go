package web

import (
	"fmt"
	"sort"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/store"
)

// ubuntuKeyring is the keyring file every MAAS host has; MAAS ≤ 3.7 needs a
// keyring value even for an unsigned .json URL, though it never reads it.
const ubuntuKeyring = "/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg"

// baseURL is the URL MAAS should use: CUSTOMSTREAM_PUBLIC_URL, or else the
// address this request came in by.
func (h *handler) baseURL(c *fiber.Ctx) (string, bool) {
	if h.Config.PublicURL != "" {
		return h.Config.PublicURL, false
	}
	return c.BaseURL(), true
}

// offeredProduct is the latest ready version of a published product.
type offeredProduct struct {
	ProductID, OS, Release, Arch, Subarch, Label, VersionName string
	Size                                                      int64
}

// offered lists the published products with their latest ready version.
func offered(imgs []store.Image) []offeredProduct {
	latest := map[string]*store.Image{}
	for i := range imgs {
		img := &imgs[i]
		if img.Status != store.StatusReady {
			continue
		}
		if cur, ok := latest[img.ProductID]; !ok || img.VersionName > cur.VersionName {
			latest[img.ProductID] = img
		}
	}
	out := make([]offeredProduct, 0, len(latest))
	for _, img := range latest {
		out = append(out, offeredProduct{ProductID: img.ProductID, OS: img.OS, Release: img.Release, Arch: img.Arch,
			Subarch: img.Subarch, Label: img.Label, VersionName: img.VersionName, Size: img.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ProductID < out[j].ProductID })
	return out
}

// selections are the boot-source-selections commands for the offered images,
// one per os/release with every arch it has.
func selections(products []offeredProduct) []string {
	type key struct{ os, release string }
	arches := map[key]map[string]bool{}
	var keys []key
	for _, p := range products {
		k := key{p.OS, p.Release}
		if arches[k] == nil {
			arches[k] = map[string]bool{}
			keys = append(keys, k)
		}
		arches[k][p.Arch] = true
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].os+"/"+keys[i].release < keys[j].os+"/"+keys[j].release
	})
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		list := make([]string, 0, len(arches[k]))
		for a := range arches[k] {
			list = append(list, a)
		}
		sort.Strings(list)
		args := ""
		for _, a := range list {
			args += " arches=" + a
		}
		out = append(out, fmt.Sprintf("maas $PROFILE boot-source-selections create $SOURCE_ID os=%s release=%s%s subarches='*' labels='*'", k.os, k.release, args))
	}
	return out
}

// showSetupPage tells the admin how to point MAAS at this server.
func (h *handler) showSetupPage(c *fiber.Ctx) error {
	base, fromRequest := h.baseURL(c)
	index := base + "/" + publish.IndexPath
	imgs, err := h.Images.List()
	if err != nil {
		return err
	}
	products := offered(imgs)
	signed := base + "/" + publish.SignedIndexPath
	return h.page(c, "setup", "MAAS setup", "setup", fiber.Map{
		"SignedURL":   signed,
		"FetchKey":    fmt.Sprintf("curl -fsSo keyring.gpg %s/keyring.gpg", base),
		"CmdSigned":   fmt.Sprintf("maas $PROFILE boot-sources create url=%s keyring_data@=keyring.gpg", signed),
		"Fingerprint": h.Signer.Fingerprint(),
		"KeyringURL":  base + "/keyring.gpg",
		"IndexURL":    index,
		"FromRequest": fromRequest,
		"Cmd38":       fmt.Sprintf("maas $PROFILE boot-sources create url=%s", index),
		"Cmd37":       fmt.Sprintf("maas $PROFILE boot-sources create url=%s keyring_filename=%s", index, ubuntuKeyring),
		"Products":    products,
		"Selections":  selections(products),
	})
}
