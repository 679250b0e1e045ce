package store

import (
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SyncRule keeps a selection of an upstream mirrored: the listed products
// and every product matching the filter expressions.
type SyncRule struct {
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	ProductIDs  []string  `json:"product_ids"`
	Filters     []string  `json:"filters"`
	Bootloaders bool      `json:"bootloaders"`
	CreatedAt   time.Time `json:"created_at"`
	LastRun     time.Time `json:"last_run"`
	LastStarted int       `json:"last_started"`
	LastError   string    `json:"last_error"`
}

// PutSyncRule creates or replaces a rule.
func (s *Store) PutSyncRule(r *SyncRule) error {
	return s.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketSyncRules, r.ID, r) })
}

// DeleteSyncRule removes a rule and returns it.
func (s *Store) DeleteSyncRule(id string) (*SyncRule, error) {
	var r SyncRule
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := get(tx, bucketSyncRules, id, &r); err != nil {
			return err
		}
		return tx.Bucket(bucketSyncRules).Delete([]byte(id))
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// ListSyncRules returns the rules, oldest first.
func (s *Store) ListSyncRules() ([]SyncRule, error) {
	var rules []SyncRule
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		rules, err = list[SyncRule](tx, bucketSyncRules)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list sync rules: %w", err)
	}
	sort.Slice(rules, func(i, j int) bool { return rules[i].CreatedAt.Before(rules[j].CreatedAt) })
	return rules, nil
}
