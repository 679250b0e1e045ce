package store

import (
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Upstream is a simplestreams mirror an admin has browsed.
type Upstream struct {
	// URL is the index URL the catalog was read from (the key).
	URL       string    `json:"url"`
	Root      string    `json:"root"`
	Signed    bool      `json:"signed"`
	Signer    string    `json:"signer"`
	Products  int       `json:"products"`
	FetchedAt time.Time `json:"fetched_at"`
	LastUsed  time.Time `json:"last_used"`
}

// PutUpstream records an upstream and its cached catalog (opaque bytes).
func (s *Store) PutUpstream(u *Upstream, catalog []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := put(tx, bucketUpstreams, u.URL, u); err != nil {
			return err
		}
		return tx.Bucket(bucketCatalogs).Put([]byte(u.URL), catalog)
	})
}

// GetCatalog returns the cached catalog of an upstream.
func (s *Store) GetCatalog(url string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketCatalogs).Get([]byte(url))
		if data == nil {
			return fmt.Errorf("catalog of %s: %w", url, ErrNotFound)
		}
		// bbolt's bytes are only valid inside the transaction.
		out = append([]byte(nil), data...)
		return nil
	})
	return out, err
}

// TouchUpstream notes that an upstream was used now.
func (s *Store) TouchUpstream(url string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		var u Upstream
		if err := get(tx, bucketUpstreams, url, &u); err != nil {
			return err
		}
		u.LastUsed = time.Now().UTC()
		return put(tx, bucketUpstreams, url, &u)
	})
}

// ListUpstreams returns the upstreams, most recently used first.
func (s *Store) ListUpstreams() ([]Upstream, error) {
	var ups []Upstream
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		ups, err = list[Upstream](tx, bucketUpstreams)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list upstreams: %w", err)
	}
	sort.Slice(ups, func(i, j int) bool { return ups[i].LastUsed.After(ups[j].LastUsed) })
	return ups, nil
}
