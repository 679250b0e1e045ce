// Package store keeps customstream's records (images, jobs) in one bbolt file.
// Only the web process opens it: bbolt locks the file for one process.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Bucket names.
var (
	bucketImages    = []byte("images")
	bucketJobs      = []byte("jobs")
	bucketUpstreams = []byte("upstreams")
	bucketCatalogs  = []byte("catalogs")
	bucketSyncRules = []byte("sync_rules")
	bucketSessions  = []byte("sessions")
	bucketAPITokens = []byte("api_tokens")
	bucketSettings  = []byte("settings")
	bucketAudit     = []byte("audit")
)

// Errors callers tell apart.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
	ErrLocked   = errors.New("database is in use by another process")
)

// Store wraps the bbolt database.
type Store struct {
	db             *bolt.DB
	auditRetention AuditRetention
	images         imageCache
}

// Open opens (or creates) the database at path, waiting at most timeout for
// another process to release it.
func Open(path string, timeout time.Duration) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w: another customstream web or all process holds it; run one per data directory (workers do not open it)", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketImages, bucketJobs, bucketUpstreams, bucketCatalogs, bucketSyncRules, bucketSessions, bucketAPITokens, bucketSettings, bucketAudit} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init %s: %w", path, err)
	}
	return &Store{db: db, auditRetention: AuditRetention{MaxAge: DefaultAuditMaxAge, MaxEntries: DefaultAuditMaxEntries}}, nil
}

// Close closes the database.
func (s *Store) Close() error {
	return s.db.Close()
}

// Ping checks that the database answers a read.
func (s *Store) Ping() error {
	return s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketImages) == nil {
			return errors.New("images bucket missing")
		}
		return nil
	})
}

func put(tx *bolt.Tx, bucket []byte, id string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s %s: %w", bucket, id, err)
	}
	return tx.Bucket(bucket).Put([]byte(id), data)
}

// get decodes inside the transaction: bbolt's bytes are only valid there.
func get(tx *bolt.Tx, bucket []byte, id string, v any) error {
	data := tx.Bucket(bucket).Get([]byte(id))
	if data == nil {
		return fmt.Errorf("%s %s: %w", bucket, id, ErrNotFound)
	}
	if err := decode(data, v); err != nil {
		return fmt.Errorf("%s %s: %w", bucket, id, err)
	}
	return nil
}

func decode(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

func list[T any](tx *bolt.Tx, bucket []byte) ([]T, error) {
	var out []T
	err := tx.Bucket(bucket).ForEach(func(k, data []byte) error {
		var v T
		if err := decode(data, &v); err != nil {
			return fmt.Errorf("%s %s: %w", bucket, k, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}
