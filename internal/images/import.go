package images

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/customstream/customstream/internal/store"
)

// OriginImportPrefix starts the origin of a version imported from a transfer
// archive: "import:" and the fingerprint of the key that signed the archive.
const OriginImportPrefix = "import:"

// ImportOrigin is the origin of versions imported from an archive signed by
// the key with this fingerprint.
func ImportOrigin(fingerprint string) string { return OriginImportPrefix + fingerprint }

// IsImport reports whether origin is that of an imported version.
func IsImport(origin string) bool { return strings.HasPrefix(origin, OriginImportPrefix) }

// ImportPrefixes are the top directories of the item paths an archive may
// hold: those this server publishes items under.
var ImportPrefixes = []string{"uploads/", MirrorPrefix + "/"}

// ImportVersion is one verified product version of a transfer archive, with
// its product's fields, content id and item paths as the source published them.
type ImportVersion struct {
	ContentID   string
	ProductID   string
	Kind        string // store.KindBoot, KindSingle or KindBootloader
	VersionName string
	Fields      map[string]string
	Items       []store.Item // Name, FType, Path, Size, SHA256, Extra
}

// ImportPlan is what an import would do.
type ImportPlan struct {
	New     []ImportVersion
	Present []ImportVersion // versions already here: skipped
	// replace are failed versions with the same name, which new ones replace.
	replace []string
}

// CheckImportPath refuses an item path that is not a plain relative path
// below one of ImportPrefixes.
func CheckImportPath(p string) error {
	ok := false
	for _, prefix := range ImportPrefixes {
		ok = ok || strings.HasPrefix(p, prefix)
	}
	if !ok {
		return fmt.Errorf("item path %q is not below %s", p, strings.Join(ImportPrefixes, " or "))
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." || !segmentRE.MatchString(seg) {
			return fmt.Errorf("item path %q is not safe: %q", p, seg)
		}
	}
	return nil
}

func (v *ImportVersion) check() error {
	if err := checkVersion(v.ContentID, v.ProductID, v.VersionName, len(v.Items)); err != nil {
		return err
	}
	if v.Kind != store.KindBoot && v.Kind != store.KindSingle && v.Kind != store.KindBootloader {
		return fmt.Errorf("product %s is neither a boot image, a single-file image nor a bootloader", v.ProductID)
	}
	for _, it := range v.Items {
		if !sha256RE.MatchString(it.SHA256) || it.Size < 0 {
			return fmt.Errorf("item %s of %s %s has no valid size and sha256", it.Name, v.ProductID, v.VersionName)
		}
		if err := CheckImportPath(it.Path); err != nil {
			return fmt.Errorf("item %s of %s %s: %w", it.Name, v.ProductID, v.VersionName, err)
		}
	}
	return nil
}

// PlanImport tells which versions an import would add and which are already
// here, and refuses (store.ErrConflict) a product another origin provides
// here (an upload, an upstream: a product comes from one place at a time) or
// an item path published here with other content.
func (s *Service) PlanImport(vs []ImportVersion) (*ImportPlan, error) {
	imgs, err := s.store.ListImages()
	if err != nil {
		return nil, err
	}
	return planImport(imgs, vs)
}

func planImport(imgs []store.Image, vs []ImportVersion) (*ImportPlan, error) {
	plan := &ImportPlan{}
	byVersion := map[[2]string]store.Image{}
	owner := map[string]string{}     // product id → a non-import origin
	published := map[string]string{} // item path → sha256, of ready versions
	for _, img := range imgs {
		byVersion[[2]string{img.ProductID, img.VersionName}] = img
		if !IsImport(img.Origin) {
			owner[img.ProductID] = img.Origin
		}
		if img.Status == store.StatusReady {
			for _, it := range img.Items {
				published[it.Path] = it.SHA256
			}
		}
	}
	var problems []string
	for _, v := range vs {
		if err := v.check(); err != nil {
			return nil, err
		}
		if o, ok := owner[v.ProductID]; ok {
			problems = append(problems, fmt.Sprintf("product %s already comes from %s", v.ProductID, o))
			continue
		}
		if have, ok := byVersion[[2]string{v.ProductID, v.VersionName}]; ok {
			if have.Status != store.StatusFailed {
				plan.Present = append(plan.Present, v)
				continue
			}
			plan.replace = append(plan.replace, have.ID)
		}
		for _, it := range v.Items {
			if sum, ok := published[it.Path]; ok && sum != it.SHA256 {
				problems = append(problems, fmt.Sprintf("path %s is already published here with other content", it.Path))
			}
		}
		plan.New = append(plan.New, v)
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("%w: %s", store.ErrConflict, strings.Join(problems, "; "))
	}
	return plan, nil
}

// Import records the archive's new versions as ready, with origin, in one
// transaction (their blobs must be in the blob store already), applies the
// retention of mirrored products and republishes. Versions already here are
// skipped; conflicts are refused as PlanImport does.
func (s *Service) Import(vs []ImportVersion, origin string) (*ImportPlan, error) {
	if !IsImport(origin) {
		return nil, fmt.Errorf("import origin %q does not start with %q", origin, OriginImportPrefix)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	imgs, err := s.store.ListImages()
	if err != nil {
		return nil, err
	}
	plan, err := planImport(imgs, vs)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	var records []*store.Image
	for _, v := range plan.New {
		img := withFields(&store.Image{
			ID: NewID(), ProductID: v.ProductID, ContentID: v.ContentID, Origin: origin, Kind: v.Kind,
			VersionName: v.VersionName, Items: v.Items, Status: store.StatusReady, CreatedAt: now, UpdatedAt: now,
		}, v.Fields)
		for _, it := range v.Items {
			if size, ok := s.blobs.Has(it.SHA256); !ok || size != it.Size {
				return nil, fmt.Errorf("import %s %s: item %s: blob %s is missing from the blob store", v.ProductID, v.VersionName, it.Name, it.SHA256)
			}
		}
		records = append(records, img)
	}
	for _, id := range plan.replace {
		if _, err := s.store.DeleteImage(id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	if err := s.store.CreateImages(records); err != nil {
		return nil, err
	}
	for _, img := range records {
		s.log.Info("Image imported", slog.String("image_id", img.ID), slog.String("product_id", img.ProductID),
			slog.String("version_name", img.VersionName), slog.String("origin", origin))
	}
	if err := s.retainImported(vs); err != nil {
		return nil, err
	}
	return plan, s.republish()
}

// retainImported keeps, of each imported product, the newest KeepVersions
// imported versions and every version the archive holds, so the stream
// carries at least what the source published.
func (s *Service) retainImported(vs []ImportVersion) error {
	if s.KeepVersions <= 0 {
		return nil
	}
	inArchive := map[[2]string]bool{}
	for _, v := range vs {
		inArchive[[2]string{v.ProductID, v.VersionName}] = true
	}
	imgs, err := s.store.ListImages()
	if err != nil {
		return err
	}
	byProduct := map[string][]store.Image{}
	for _, img := range imgs {
		if IsImport(img.Origin) && img.Status == store.StatusReady {
			byProduct[img.ProductID] = append(byProduct[img.ProductID], img)
		}
	}
	for _, v := range vs {
		ready := byProduct[v.ProductID]
		delete(byProduct, v.ProductID)
		sort.Slice(ready, func(i, j int) bool { return ready[i].VersionName > ready[j].VersionName })
		for i := s.KeepVersions; i < len(ready); i++ {
			if inArchive[[2]string{ready[i].ProductID, ready[i].VersionName}] {
				continue
			}
			if _, err := s.store.DeleteImage(ready[i].ID); err != nil {
				return err
			}
			s.log.Info("Old imported version removed", slog.String("product_id", ready[i].ProductID),
				slog.String("version_name", ready[i].VersionName), slog.Int("keep", s.KeepVersions))
		}
	}
	return nil
}
