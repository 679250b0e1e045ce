package images

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"github.com/customstream/customstream/internal/store"
)

// MirrorPrefix is the top directory of mirrored items in our tree; uploads
// live under uploads/, so the two never collide, and each upstream gets its
// own directory below it.
const MirrorPrefix = "mirror"

// MirrorItem is one upstream item of a version to mirror.
type MirrorItem struct {
	Name   string
	FType  string
	Path   string // relative to the upstream's mirror root
	URL    string // where to download it
	Size   int64
	SHA256 string
	Extra  map[string]string
}

// MirrorVersion is one upstream product version to mirror.
type MirrorVersion struct {
	Root        string // the upstream's mirror root URL
	ContentID   string
	ProductID   string
	Kind        string
	VersionName string
	Fields      map[string]string
	Items       []MirrorItem
}

var (
	// segmentRE allows the characters upstream paths and ids really use;
	// "." and ".." are refused separately.
	segmentRE   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._+~-]*$`)
	contentIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9:._-]{0,199}$`)
	productIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9:._+~-]{0,199}$`)
)

// ErrAlreadyMirrored means the version is already mirrored or on its way.
var ErrAlreadyMirrored = errors.New("already mirrored")

// upstreamDir names an upstream's directory under mirror/: its host (port
// joined by '_') and path, so two upstreams never share one.
func upstreamDir(root string) (string, error) {
	u, err := url.Parse(root)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("upstream root %q is not a URL", root)
	}
	parts := []string{strings.ReplaceAll(u.Host, ":", "_")}
	for _, seg := range strings.Split(strings.Trim(u.Path, "/"), "/") {
		if seg != "" {
			parts = append(parts, seg)
		}
	}
	for _, p := range parts {
		if !segmentRE.MatchString(p) {
			return "", fmt.Errorf("upstream root %q: %q cannot be a directory name", root, p)
		}
	}
	return strings.Join(parts, "/"), nil
}

// MirrorPath is where an upstream item lives in our tree.
func MirrorPath(root, itemPath string) (string, error) {
	dir, err := upstreamDir(root)
	if err != nil {
		return "", err
	}
	if itemPath == "" || strings.HasPrefix(itemPath, "/") {
		return "", fmt.Errorf("upstream item path %q is not relative", itemPath)
	}
	for _, seg := range strings.Split(itemPath, "/") {
		if seg == "." || seg == ".." || !segmentRE.MatchString(seg) {
			return "", fmt.Errorf("upstream item path %q is not safe: %q", itemPath, seg)
		}
	}
	return MirrorPrefix + "/" + dir + "/" + itemPath, nil
}

func (v *MirrorVersion) check() error {
	if err := checkVersion(v.ContentID, v.ProductID, v.VersionName, len(v.Items)); err != nil {
		return fmt.Errorf("upstream %w", err)
	}
	for _, it := range v.Items {
		if !sha256RE.MatchString(it.SHA256) || it.Size < 0 {
			return fmt.Errorf("item %s of %s %s: the upstream gives no valid size and sha256", it.Name, v.ProductID, v.VersionName)
		}
	}
	return nil
}

// checkVersion refuses ids and names that cannot be file names or that MAAS
// would not accept, and a version without items.
func checkVersion(contentID, productID, versionName string, items int) error {
	switch {
	case !contentIDRE.MatchString(contentID):
		return fmt.Errorf("content id %q is not usable as a file name", contentID)
	case !productIDRE.MatchString(productID):
		return fmt.Errorf("product id %q has characters MAAS would not accept", productID)
	case !versionNameRE.MatchString(versionName):
		return fmt.Errorf("version name %q of %s is not allowed", versionName, productID)
	case items == 0:
		return fmt.Errorf("version %s of %s has no items", versionName, productID)
	}
	return nil
}

// withFields sets the image's descriptive fields from the fields its source
// published for the product, and keeps those to publish them as they are.
func withFields(img *store.Image, f map[string]string) *store.Image {
	img.OS, img.Release, img.Arch, img.Subarch, img.Subarches = f["os"], f["release"], f["arch"], f["subarch"], f["subarches"]
	img.Kflavor, img.Label, img.Version, img.ReleaseTitle = f["kflavor"], f["label"], f["version"], f["release_title"]
	img.ReleaseCodename, img.SupportEOL, img.Fields = f["release_codename"], f["support_eol"], f
	return img
}

// CreateMirror records a version to mirror, in state downloading, with its
// job. A version already mirrored (or on its way) from the same upstream is
// ErrAlreadyMirrored; a product another upstream already provides is refused,
// since one product file cannot hold both.
func (s *Service) CreateMirror(v MirrorVersion, newJob NewJobFunc) (*store.Image, *store.Job, error) {
	if err := v.check(); err != nil {
		return nil, nil, err
	}
	img := withFields(&store.Image{
		ID: NewID(), ProductID: v.ProductID, ContentID: v.ContentID, Origin: v.Root, Kind: v.Kind,
		VersionName: v.VersionName, Status: store.StatusDownloading, CreatedAt: s.now().UTC(), UpdatedAt: s.now().UTC(),
	}, v.Fields)
	for _, it := range v.Items {
		p, err := MirrorPath(v.Root, it.Path)
		if err != nil {
			return nil, nil, err
		}
		img.Items = append(img.Items, store.Item{Name: it.Name, FType: it.FType, Path: p, Size: it.Size,
			Expected: it.SHA256, Source: it.URL, Extra: it.Extra})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	imgs, err := s.store.ListImages()
	if err != nil {
		return nil, nil, err
	}
	for _, other := range imgs {
		if other.ProductID != v.ProductID {
			continue
		}
		if other.Origin != v.Root {
			return nil, nil, fmt.Errorf("product %s already comes from %s: %w", v.ProductID, other.Origin, store.ErrConflict)
		}
		if other.VersionName == v.VersionName && other.Status != store.StatusFailed {
			return &other, nil, ErrAlreadyMirrored
		}
	}
	// A failed attempt at the same version makes way for the new one.
	for _, other := range imgs {
		if other.ProductID == v.ProductID && other.VersionName == v.VersionName {
			if _, err := s.store.DeleteImage(other.ID); err != nil {
				return nil, nil, err
			}
		}
	}
	job, err := newJob(img)
	if err != nil {
		return nil, nil, err
	}
	img.JobID = job.ID
	if err := s.store.CreateImage(img, job); err != nil {
		return nil, nil, err
	}
	s.log.Info("Mirror queued", slog.String("image_id", img.ID), slog.String("product_id", img.ProductID),
		slog.String("version_name", img.VersionName), slog.String("upstream", v.Root), slog.String("job_id", job.ID))
	return img, job, nil
}

// retain deletes the ready versions of img's product beyond the newest keep,
// once a new mirrored version is ready. Local uploads are never pruned, and
// nothing is deleted because the upstream dropped it.
func (s *Service) retain(img *store.Image) error {
	if img.Origin == store.OriginUpload || s.KeepVersions <= 0 || img.Status != store.StatusReady {
		return nil
	}
	imgs, err := s.store.ListImages()
	if err != nil {
		return err
	}
	var ready []store.Image
	for _, other := range imgs {
		if other.ProductID == img.ProductID && other.Origin == img.Origin && other.Status == store.StatusReady {
			ready = append(ready, other)
		}
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].VersionName > ready[j].VersionName })
	for i := s.KeepVersions; i < len(ready); i++ {
		if _, err := s.store.DeleteImage(ready[i].ID); err != nil {
			return err
		}
		s.log.Info("Old mirrored version removed", slog.String("product_id", ready[i].ProductID),
			slog.String("version_name", ready[i].VersionName), slog.Int("keep", s.KeepVersions))
	}
	return nil
}
