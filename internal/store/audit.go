package store

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Audit outcomes.
const (
	AuditOK      = "ok"
	AuditRefused = "refused"
	AuditFailed  = "failed"
)

// Default audit retention: a year, and at most this many entries.
const (
	DefaultAuditMaxAge     = 365 * 24 * time.Hour
	DefaultAuditMaxEntries = 100_000
)

// AuditEntry is one admin action: who did what to what, when, from where,
// and how it ended.
type AuditEntry struct {
	// ID is the entry's key in hex: it orders entries and is the cursor of
	// the next page.
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Detail string    `json:"detail"`
	Remote string    `json:"remote_addr"`
	// Outcome is AuditOK, AuditRefused (the request was turned down) or
	// AuditFailed (wrong password, an error).
	Outcome string `json:"outcome"`
}

// AuditRetention bounds the audit log; a zero field keeps that bound off.
type AuditRetention struct {
	MaxAge     time.Duration
	MaxEntries int
}

// AuditQuery selects audit entries, newest first.
type AuditQuery struct {
	// Action is an action ("image.delete") or its group ("image").
	Action string
	// Text is matched, ignoring case, in actor, action, target, detail,
	// address and outcome.
	Text string
	// Before is the ID of the last entry already shown: the page holds
	// older entries, newest first.
	Before string
	// After is the ID of the newest entry a collector has: the page holds
	// newer entries, oldest first. At most one of Before and After.
	After string
	Limit int
}

// SetAuditRetention changes the bounds AppendAudit keeps; Open sets the
// defaults.
func (s *Store) SetAuditRetention(r AuditRetention) {
	s.auditRetention = r
}

// auditKey is the entry's time in big-endian nanoseconds, then a sequence
// number: keys sort by time and never collide.
func auditKey(nanos int64, seq uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, uint64(nanos))
	binary.BigEndian.PutUint64(k[8:], seq)
	return k
}

func auditKeyNanos(k []byte) int64 {
	return int64(binary.BigEndian.Uint64(k[:8]))
}

func auditKeySeq(k []byte) uint64 {
	return binary.BigEndian.Uint64(k[8:])
}

// AppendAudit records e, setting its ID (and its time when zero), and drops
// what falls outside the retention in the same transaction. Keys never go
// back in time: after the clock steps back, an entry takes the newest key's
// time (its Time field keeps the clock's), so key order is insertion order
// and the entry count is the difference of the first and last sequence
// numbers: pruning is a few cursor steps, not a count of the bucket.
func (s *Store) AppendAudit(e *AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		// Keys only ever grow: full pages instead of bbolt's half-full
		// splits halve the file.
		b.FillPercent = 0.95
		nanos := e.Time.UnixNano()
		if last, _ := b.Cursor().Last(); last != nil && auditKeyNanos(last) > nanos {
			nanos = auditKeyNanos(last)
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		key := auditKey(nanos, seq)
		e.ID = hex.EncodeToString(key)
		if err := put(tx, bucketAudit, string(key), e); err != nil {
			return err
		}
		_, err = pruneAudit(b, e.Time, s.auditRetention)
		return err
	})
	if err != nil {
		return fmt.Errorf("record audit entry %s: %w", e.Action, err)
	}
	return nil
}

// PruneAudit drops the entries outside the retention at now and returns how
// many; AppendAudit does it too, this catches up after the bounds shrank.
func (s *Store) PruneAudit(now time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		n, err = pruneAudit(tx.Bucket(bucketAudit), now, s.auditRetention)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune audit log: %w", err)
	}
	return n, nil
}

// pruneAudit deletes the oldest entries while there are too many or they
// are too old.
func pruneAudit(b *bolt.Bucket, now time.Time, r AuditRetention) (int, error) {
	c := b.Cursor()
	last, _ := c.Last()
	if last == nil {
		return 0, nil
	}
	oldest := int64(0)
	if r.MaxAge > 0 {
		oldest = now.Add(-r.MaxAge).UnixNano()
	}
	n := 0
	for k, _ := c.First(); k != nil && !bytes.Equal(k, last); k, _ = c.First() {
		tooMany := r.MaxEntries > 0 && auditKeySeq(last)-auditKeySeq(k)+1 > uint64(r.MaxEntries)
		if !tooMany && auditKeyNanos(k) >= oldest {
			break
		}
		if err := c.Delete(); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// ErrBadCursor is a page cursor that is no entry ID, or both cursors.
var ErrBadCursor = errors.New("not an audit entry id")

// auditCursor decodes a page cursor; "" is none.
func auditCursor(id string) ([]byte, error) {
	if id == "" {
		return nil, nil
	}
	k, err := hex.DecodeString(id)
	if err != nil || len(k) != 16 {
		return nil, fmt.Errorf("%q: %w", id, ErrBadCursor)
	}
	return k, nil
}

// ListAudit returns a page of entries matching q and the cursor of the next
// page ("" on the last): newest first, or with q.After oldest first.
func (s *Store) ListAudit(q AuditQuery) ([]AuditEntry, string, error) {
	before, err := auditCursor(q.Before)
	if err != nil {
		return nil, "", err
	}
	after, err := auditCursor(q.After)
	if err != nil {
		return nil, "", err
	}
	if before != nil && after != nil {
		return nil, "", fmt.Errorf("before and after together: %w", ErrBadCursor)
	}
	if q.Limit <= 0 {
		q.Limit = 50
	}
	text := strings.ToLower(q.Text)
	out := []AuditEntry{}
	next := ""
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		var k, v []byte
		step := c.Prev
		switch {
		case after != nil:
			step = c.Next
			k, v = c.Seek(after)
			if bytes.Equal(k, after) {
				k, v = c.Next()
			}
		case before != nil:
			// Seek lands on the cursor's entry or the one after it (when
			// the cursor's entry was pruned meanwhile, or there is none).
			k, v = c.Seek(before)
			if k == nil {
				k, v = c.Last()
			}
			for k != nil && bytes.Compare(k, before) >= 0 {
				k, v = c.Prev()
			}
		default:
			k, v = c.Last()
		}
		for ; k != nil; k, v = step() {
			var e AuditEntry
			if err := decode(v, &e); err != nil {
				return fmt.Errorf("audit %x: %w", k, err)
			}
			if !e.matches(q.Action, text) {
				continue
			}
			if len(out) == q.Limit {
				next = out[len(out)-1].ID
				return nil
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list audit log: %w", err)
	}
	return out, next, nil
}

// matches reports whether e is of action (or its group) and holds text,
// already lower-cased.
func (e *AuditEntry) matches(action, text string) bool {
	if action != "" && e.Action != action && !strings.HasPrefix(e.Action, action+".") {
		return false
	}
	if text == "" {
		return true
	}
	for _, f := range []string{e.Actor, e.Action, e.Target, e.Detail, e.Remote, e.Outcome} {
		if strings.Contains(strings.ToLower(f), text) {
			return true
		}
	}
	return false
}
