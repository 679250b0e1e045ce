package store

import (
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Session is an admin's logged-in browser. It is kept under the hash of its
// cookie value, so a copy of the database logs nobody in.
type Session struct {
	Hash string `json:"hash"`
	User string `json:"user"`
	// CSRF is the token every state-changing portal request must carry.
	CSRF string `json:"csrf"`
	// Password fingerprints the admin password hash the session was opened
	// with: a changed password ends every session.
	Password  string    `json:"password"`
	RemoteIP  string    `json:"remote_ip"`
	CreatedAt time.Time `json:"created_at"`
	SeenAt    time.Time `json:"seen_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// PutSession creates or replaces a session.
func (s *Store) PutSession(sess *Session) error {
	return s.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketSessions, sess.Hash, sess) })
}

// GetSession returns the session stored under hash.
func (s *Store) GetSession(hash string) (*Session, error) {
	var sess Session
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx, bucketSessions, hash, &sess) })
	if err != nil {
		return nil, err
	}
	return &sess, nil
}

// DeleteSession removes a session; removing one already gone is no error.
func (s *Store) DeleteSession(hash string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketSessions).Delete([]byte(hash)) })
}

// DeleteExpiredSessions removes every session that expired before now and
// returns how many.
func (s *Store) DeleteExpiredSessions(now time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		sessions, err := list[Session](tx, bucketSessions)
		if err != nil {
			return err
		}
		for _, sess := range sessions {
			if sess.ExpiresAt.Before(now) {
				if err := tx.Bucket(bucketSessions).Delete([]byte(sess.Hash)); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	return n, nil
}

// APIToken is a named bearer token for the JSON API; only the hash of the
// token is stored.
type APIToken struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Hash string `json:"hash"`
	// Hint is the token's first characters, to tell tokens apart.
	Hint       string    `json:"hint"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
}

// CreateAPIToken stores a new token; a name already taken is ErrConflict.
func (s *Store) CreateAPIToken(t *APIToken) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		tokens, err := list[APIToken](tx, bucketAPITokens)
		if err != nil {
			return err
		}
		for _, other := range tokens {
			if other.Name == t.Name {
				return fmt.Errorf("API token %q: %w", t.Name, ErrConflict)
			}
		}
		return put(tx, bucketAPITokens, t.ID, t)
	})
}

// ListAPITokens returns the tokens, oldest first.
func (s *Store) ListAPITokens() ([]APIToken, error) {
	var tokens []APIToken
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		tokens, err = list[APIToken](tx, bucketAPITokens)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list API tokens: %w", err)
	}
	sort.Slice(tokens, func(i, j int) bool { return tokens[i].CreatedAt.Before(tokens[j].CreatedAt) })
	return tokens, nil
}

// APITokenByHash returns the token whose hash is hash.
func (s *Store) APITokenByHash(hash string) (*APIToken, error) {
	tokens, err := s.ListAPITokens()
	if err != nil {
		return nil, err
	}
	for i := range tokens {
		if tokens[i].Hash == hash {
			return &tokens[i], nil
		}
	}
	return nil, fmt.Errorf("API token: %w", ErrNotFound)
}

// TouchAPIToken records when a token was last used.
func (s *Store) TouchAPIToken(id string, at time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		var t APIToken
		if err := get(tx, bucketAPITokens, id, &t); err != nil {
			return err
		}
		t.LastUsedAt = at
		return put(tx, bucketAPITokens, id, &t)
	})
}

// DeleteAPIToken revokes a token and returns it.
func (s *Store) DeleteAPIToken(id string) (*APIToken, error) {
	var t APIToken
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := get(tx, bucketAPITokens, id, &t); err != nil {
			return err
		}
		return tx.Bucket(bucketAPITokens).Delete([]byte(id))
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}
