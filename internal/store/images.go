package store

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Image states.
const (
	StatusHashing     = "hashing"
	StatusDownloading = "downloading"
	StatusReady       = "ready"
	StatusFailed      = "failed"
	// StatusDamaged is a version a scrub found a damaged file in, that
	// cannot be downloaded again (an upload, an import): out of the stream
	// until an admin deletes it or uploads it again.
	StatusDamaged = "damaged"
)

// Image kinds: a kernel-booted multi-file image, a single-file root image,
// or a bootloader (mirrored only).
const (
	KindBoot       = "boot"
	KindSingle     = "single"
	KindBootloader = "bootloader"
)

// OriginUpload marks an image uploaded to this server; a mirrored image's
// origin is its upstream's mirror root URL.
const OriginUpload = "upload"

// Busy reports whether the image still waits for its job.
func (img *Image) Busy() bool {
	return img.Status == StatusHashing || img.Status == StatusDownloading
}

// Image is one version of a product: what the API calls an image.
type Image struct {
	ID              string `json:"id"`
	ProductID       string `json:"product_id"`
	ContentID       string `json:"content_id"`
	Origin          string `json:"origin"`
	Kind            string `json:"kind"`
	OS              string `json:"os"`
	Release         string `json:"release"`
	Arch            string `json:"arch"`
	Subarch         string `json:"subarch"`
	Subarches       string `json:"subarches"`
	Kflavor         string `json:"kflavor"`
	Label           string `json:"label"`
	Version         string `json:"version"`
	ReleaseTitle    string `json:"release_title"`
	ReleaseCodename string `json:"release_codename"`
	SupportEOL      string `json:"support_eol"`
	VersionName     string `json:"version_name"`
	// Fields are a mirrored product's upstream fields, published as they are.
	Fields    map[string]string `json:"fields,omitempty"`
	Status    string            `json:"status"`
	Error     string            `json:"error"`
	JobID     string            `json:"job_id"`
	Items     []Item            `json:"items"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// Item is one file of an image version.
type Item struct {
	Name   string `json:"name"`
	FType  string `json:"ftype"`
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Staged is the staging file while the item waits for its hash job.
	Staged string `json:"staged,omitempty"`
	// Expected is a sha256 the uploader gave, checked by the hash job.
	Expected string `json:"expected,omitempty"`
	// Source is the upstream URL of a mirrored item.
	Source string `json:"source,omitempty"`
	// Extra are a mirrored item's other upstream fields (kpackage, src_*).
	Extra map[string]string `json:"extra,omitempty"`
}

// Size is the sum of the image's item sizes.
func (img *Image) Size() int64 {
	var n int64
	for _, it := range img.Items {
		n += it.Size
	}
	return n
}

// CreateImage stores a new image version and the job that will complete it,
// refusing a second version with the same product id and version name.
func (s *Store) CreateImage(img *Image, job *Job) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := putNewImages(tx, []*Image{img}); err != nil {
			return err
		}
		if job != nil {
			return put(tx, bucketJobs, job.ID, job)
		}
		return nil
	})
}

// CreateImages stores several new image versions (without jobs) in one
// transaction: all of them, or none when one would be a second version with
// the same product id and version name.
func (s *Store) CreateImages(imgs []*Image) error {
	return s.db.Update(func(tx *bolt.Tx) error { return putNewImages(tx, imgs) })
}

func putNewImages(tx *bolt.Tx, imgs []*Image) error {
	taken := map[[2]string]bool{}
	err := tx.Bucket(bucketImages).ForEach(func(_, data []byte) error {
		var other Image
		if err := decode(data, &other); err != nil {
			return err
		}
		taken[[2]string{other.ProductID, other.VersionName}] = true
		return nil
	})
	if err != nil {
		return err
	}
	for _, img := range imgs {
		key := [2]string{img.ProductID, img.VersionName}
		if taken[key] {
			return fmt.Errorf("version %s of %s: %w", img.VersionName, img.ProductID, ErrConflict)
		}
		taken[key] = true
		if err := put(tx, bucketImages, img.ID, img); err != nil {
			return err
		}
	}
	return nil
}

// GetImage returns one image by id.
func (s *Store) GetImage(id string) (*Image, error) {
	var img Image
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx, bucketImages, id, &img) })
	if err != nil {
		return nil, err
	}
	return &img, nil
}

// ListImages returns every image, by product id then version name.
func (s *Store) ListImages() ([]Image, error) {
	var imgs []Image
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		imgs, err = s.images.list(tx.Bucket(bucketImages))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return imgs, nil
}

// imageCache keeps each image record decoded, with the bytes it was decoded
// from. Every publish lists all records, and decoding 5,000 of them took
// most of a publish that added one; now only changed records are decoded.
type imageCache struct {
	mu      sync.Mutex
	decoded map[string]*cachedImage
	// sorted are the decoded records in the order lists return them;
	// changed records are moved into place, not sorted again.
	sorted []*cachedImage
	listed uint64 // counts lists, to find the records deleted since the last
}

type cachedImage struct {
	key    string
	raw    []byte
	img    Image
	listed uint64
	stale  bool // replaced by a newer decoding
}

func (e *cachedImage) compare(o *cachedImage) int {
	if c := strings.Compare(e.img.ProductID, o.img.ProductID); c != 0 {
		return c
	}
	return strings.Compare(e.img.VersionName, o.img.VersionName)
}

// list returns the bucket's records by product id and version name,
// decoding only those whose bytes changed since the last list. Callers get
// copies they may modify.
func (c *imageCache) list(b *bolt.Bucket) ([]Image, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.decoded == nil {
		c.decoded = map[string]*cachedImage{}
	}
	c.listed++
	var changed []*cachedImage
	seen := 0
	err := b.ForEach(func(k, data []byte) error {
		e := c.decoded[string(k)]
		if e == nil || !bytes.Equal(e.raw, data) {
			if e != nil {
				e.stale = true
			}
			e = &cachedImage{key: string(k), raw: bytes.Clone(data)}
			c.decoded[string(k)] = e
			changed = append(changed, e)
		}
		e.listed = c.listed
		seen++
		return nil
	})
	if err == nil {
		err = decodeAll(changed)
	}
	if err != nil {
		c.decoded, c.sorted = nil, nil // partly decoded: start again
		return nil, err
	}
	if len(c.decoded) > seen {
		for k, e := range c.decoded {
			if e.listed != c.listed {
				delete(c.decoded, k)
			}
		}
	}
	if c.sorted == nil || len(changed) > len(c.sorted)/8 {
		// Sorting records scattered in memory is slow: only when many changed.
		c.sorted = slices.SortedFunc(maps.Values(c.decoded), (*cachedImage).compare)
	} else {
		c.sorted = slices.DeleteFunc(c.sorted, func(e *cachedImage) bool { return e.stale || e.listed != c.listed })
		for _, e := range changed {
			i, _ := slices.BinarySearchFunc(c.sorted, e, (*cachedImage).compare)
			c.sorted = slices.Insert(c.sorted, i, e)
		}
	}
	out := make([]Image, len(c.sorted))
	for i, e := range c.sorted {
		out[i] = e.img.Clone()
	}
	return out, nil
}

// decodeAll decodes the records, on every core when there are many (the
// first list after a start decodes them all).
func decodeAll(recs []*cachedImage) error {
	workers := min(runtime.GOMAXPROCS(0), len(recs)/256+1)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(recs); i += workers {
				if err := decode(recs[i].raw, &recs[i].img); err != nil {
					errs[w] = fmt.Errorf("%s %s: %w", bucketImages, recs[i].key, err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Clone copies img with its own items and maps.
func (img Image) Clone() Image {
	img.Fields = maps.Clone(img.Fields)
	img.Items = slices.Clone(img.Items)
	for i := range img.Items {
		img.Items[i].Extra = maps.Clone(img.Items[i].Extra)
	}
	return img
}

// DeleteImage removes an image record and returns it; an unfinished job of
// the image is canceled in the same transaction.
func (s *Store) DeleteImage(id string) (*Image, error) {
	var img Image
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := get(tx, bucketImages, id, &img); err != nil {
			return err
		}
		if img.JobID != "" {
			if err := cancelJob(tx, img.JobID); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		return tx.Bucket(bucketImages).Delete([]byte(id))
	})
	if err != nil {
		return nil, err
	}
	return &img, nil
}
