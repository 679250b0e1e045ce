package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/customstream/customstream/internal/store"
)

// Session lifetimes: a session ends after a day without use, and a week
// after login whatever happens.
const (
	SessionIdle    = 24 * time.Hour
	SessionMaxAge  = 7 * 24 * time.Hour
	sessionRefresh = 5 * time.Minute
)

// ErrNoSession is returned for a missing, expired or revoked session.
var ErrNoSession = errors.New("no valid session")

// ErrPasswordChanged is the ErrNoSession of a session opened before the
// admin password changed: how the web process notices the change.
var ErrPasswordChanged = fmt.Errorf("%w: the admin password has changed", ErrNoSession)

// Sessions opens, checks and ends admin sessions stored in bbolt.
type Sessions struct {
	Store *store.Store
	Admin *Admin
	Now   func() time.Time
}

func (s *Sessions) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Open starts a session for user and returns the cookie value and the
// session.
func (s *Sessions) Open(user, remoteIP string) (string, *store.Session, error) {
	id := NewSecret(32)
	now := s.now()
	sess := &store.Session{Hash: HashSecret(id), User: user, CSRF: NewSecret(32), Password: s.Admin.Fingerprint(),
		RemoteIP: remoteIP, CreatedAt: now, SeenAt: now, ExpiresAt: now.Add(SessionIdle)}
	if err := s.Store.PutSession(sess); err != nil {
		return "", nil, fmt.Errorf("open session: %w", err)
	}
	// Expired sessions are dropped here rather than by a timer: logins are rare.
	if _, err := s.Store.DeleteExpiredSessions(now); err != nil {
		return "", nil, err
	}
	return id, sess, nil
}

// Get returns the live session whose cookie value is id, moving its idle
// expiry forward.
func (s *Sessions) Get(id string) (*store.Session, error) {
	if id == "" {
		return nil, ErrNoSession
	}
	sess, err := s.Store.GetSession(HashSecret(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, err
	}
	now := s.now()
	if now.After(sess.ExpiresAt) || now.Sub(sess.CreatedAt) > SessionMaxAge {
		_ = s.Store.DeleteSession(sess.Hash)
		return nil, ErrNoSession
	}
	if sess.Password != s.Admin.Fingerprint() {
		_ = s.Store.DeleteSession(sess.Hash)
		return nil, ErrPasswordChanged
	}
	// Written at most every few minutes: every portal request reads it.
	if now.Sub(sess.SeenAt) > sessionRefresh {
		sess.SeenAt = now
		sess.ExpiresAt = now.Add(SessionIdle)
		if sess.ExpiresAt.Sub(sess.CreatedAt) > SessionMaxAge {
			sess.ExpiresAt = sess.CreatedAt.Add(SessionMaxAge)
		}
		if err := s.Store.PutSession(sess); err != nil {
			return nil, err
		}
	}
	return sess, nil
}

// End ends the session whose cookie value is id.
func (s *Sessions) End(id string) error {
	if id == "" {
		return nil
	}
	return s.Store.DeleteSession(HashSecret(id))
}
