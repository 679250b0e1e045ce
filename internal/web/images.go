package web

import (
	"context"
	"errors"
	"fmt"

	"github.com/gofiber/fiber/v2"

	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/store"
)

// imageRow is an image as the portal shows it, with its job's progress.
type imageRow struct {
	store.Image
	Size     int64
	Progress *jobProgress
}

// jobProgress is a running job's byte count for templates.
type jobProgress struct {
	Done, Total int64
	Percent     int
}

func (h *handler) imageRows(ctx context.Context) ([]imageRow, bool, error) {
	imgs, err := h.Images.List()
	if err != nil {
		return nil, false, err
	}
	busy := false
	rows := make([]imageRow, len(imgs))
	for i := range imgs {
		rows[i] = imageRow{Image: imgs[i], Size: imgs[i].Size()}
		if !imgs[i].Busy() {
			continue
		}
		busy = true
		if p, ok, err := h.Progress.Get(ctx, imgs[i].JobID); err == nil && ok && p.Total > 0 {
			rows[i].Progress = &jobProgress{Done: p.Done, Total: p.Total, Percent: int(p.Done * 100 / p.Total)}
		}
	}
	return rows, busy, nil
}

func (h *handler) imagesData(c *fiber.Ctx) (fiber.Map, error) {
	rows, busy, err := h.imageRows(c.Context())
	if err != nil {
		return nil, err
	}
	return fiber.Map{"Images": rows, "Busy": busy}, nil
}

// showImagesPage is the list of local images.
func (h *handler) showImagesPage(c *fiber.Ctx) error {
	data, err := h.imagesData(c)
	if err != nil {
		return err
	}
	data["Uploaded"] = c.Query("uploaded") != ""
	if isHTMX(c) {
		return h.partial(c, "image_rows", data)
	}
	return h.page(c, "images", "Images", "images", data)
}

// showImageRows is the table alone, polled while images are hashing.
func (h *handler) showImageRows(c *fiber.Ctx) error {
	data, err := h.imagesData(c)
	if err != nil {
		return err
	}
	return h.partial(c, "image_rows", data)
}

// deleteFromPortal deletes a version and answers the refreshed table.
func (h *handler) deleteFromPortal(c *fiber.Ctx) error {
	img, derr := h.Images.Delete(c.Params("id"))
	h.auditDelete(c, img, derr)
	data, err := h.imagesData(c)
	if err != nil {
		return err
	}
	if derr == nil {
		data["Message"] = fmt.Sprintf("Deleted version %s of %s: it is out of the stream.", img.VersionName, img.ProductID)
	} else {
		if !errors.Is(derr, store.ErrNotFound) {
			return derr
		}
		data["Error"] = "That image was already deleted."
	}
	return h.partial(c, "image_rows", data)
}

// auditDelete records a deletion, or one refused because the image is gone.
func (h *handler) auditDelete(c *fiber.Ctx, img *store.Image, err error) {
	switch {
	case err == nil:
		h.audit(c, auditDelete, imageTarget(img), "image "+img.ID)
	case errors.Is(err, store.ErrNotFound):
		h.auditOutcome(c, auditDelete, store.AuditRefused, "image "+c.Params("id"), "no such image: deleted already")
	default:
		h.auditOutcome(c, auditDelete, store.AuditFailed, "image "+c.Params("id"), err.Error())
	}
}

// imageTarget names an image version for the audit log.
func imageTarget(img *store.Image) string {
	return img.ProductID + " " + img.VersionName
}

// showUploadPage is the upload form.
func (h *handler) showUploadPage(c *fiber.Ctx) error {
	return h.page(c, "upload", "Upload", "upload", fiber.Map{
		"Form":        map[string]string{"arch": "amd64", "rootfs_type": images.RootfsSquashfs},
		"Errors":      map[string]string{},
		"Arches":      images.Arches,
		"RootfsTypes": append([]string{images.RootfsSquashfs}, images.SingleRootTypes...),
		"Files": []fiber.Map{
			{"Name": images.FileKernel, "Label": "Kernel", "Help": "boot-kernel; boot images only"},
			{"Name": images.FileInitrd, "Label": "Initrd", "Help": "boot-initrd; boot images only"},
			{"Name": images.FileRootfs, "Label": "Root file system *", "Help": "squashfs for a boot image, or the single root image"},
			{"Name": images.FileManifest, "Label": "Manifest", "Help": "optional: generated when absent (MAAS 3.8 needs one)"},
		},
	})
}

// apiImage is an image in the JSON API.
type apiImage struct {
	ID          string    `json:"id"`
	ProductID   string    `json:"product_id"`
	ContentID   string    `json:"content_id"`
	Origin      string    `json:"origin"`
	OS          string    `json:"os"`
	Release     string    `json:"release"`
	Arch        string    `json:"arch"`
	Subarch     string    `json:"subarch"`
	Label       string    `json:"label"`
	Version     string    `json:"version"`
	VersionName string    `json:"version_name"`
	Status      string    `json:"status"`
	Error       string    `json:"error,omitempty"`
	Size        int64     `json:"size"`
	Items       []apiItem `json:"items"`
}

type apiItem struct {
	Name   string `json:"name"`
	FType  string `json:"ftype"`
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func toAPIImage(img *store.Image) apiImage {
	out := apiImage{ID: img.ID, ProductID: img.ProductID, ContentID: img.ContentID, Origin: img.Origin,
		OS: img.OS, Release: img.Release, Arch: img.Arch, Subarch: img.Subarch, Label: img.Label,
		Version: img.Version, VersionName: img.VersionName, Status: img.Status, Error: img.Error,
		Size: img.Size(), Items: []apiItem{}}
	for _, it := range img.Items {
		out.Items = append(out.Items, apiItem{Name: it.Name, FType: it.FType, Path: it.Path, Size: it.Size, SHA256: it.SHA256})
	}
	return out
}

// listImagesAPI is GET /api/images/list.
func (h *handler) listImagesAPI(c *fiber.Ctx) error {
	imgs, err := h.Images.List()
	if err != nil {
		return err
	}
	out := make([]apiImage, 0, len(imgs))
	for i := range imgs {
		out = append(out, toAPIImage(&imgs[i]))
	}
	return c.JSON(fiber.Map{"images": out})
}

// deleteImageAPI is DELETE /api/images/{id}.
func (h *handler) deleteImageAPI(c *fiber.Ctx) error {
	img, err := h.Images.Delete(c.Params("id"))
	h.auditDelete(c, img, err)
	if errors.Is(err, store.ErrNotFound) {
		return fiber.NewError(fiber.StatusNotFound, "no image with id "+c.Params("id"))
	}
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"deleted": toAPIImage(img)})
}
