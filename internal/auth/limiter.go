package auth

import (
	"sync"
	"time"
)

// Limiter counts failed logins per client address and refuses more than Max
// of them within Window.
type Limiter struct {
	Max    int
	Window time.Duration
	Now    func() time.Time

	mu       sync.Mutex
	failures map[string]*failures
}

type failures struct {
	count int
	since time.Time
	// reported is set once the lock-out has been reported.
	reported bool
}

// maxTracked bounds the memory a flood of addresses can take; past it the
// oldest windows are forgotten first, as expired ones are.
const maxTracked = 10000

// NewLimiter returns a limiter allowing max failures per window.
func NewLimiter(max int, window time.Duration) *Limiter {
	return &Limiter{Max: max, Window: window, failures: map[string]*failures{}}
}

func (l *Limiter) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// Allow reports whether key may try again, and if not, after how long.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.failures[key]
	if f == nil {
		return true, 0
	}
	left := l.Window - l.now().Sub(f.since)
	if left <= 0 {
		delete(l.failures, key)
		return true, 0
	}
	if f.count >= l.Max {
		return false, left
	}
	return true, 0
}

// FirstRefusal reports whether key's lock-out is reported for the first
// time in its window, and marks it reported: a flood of refused attempts
// is recorded once, not once each.
func (l *Limiter) FirstRefusal(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.failures[key]
	if f == nil {
		return true
	}
	first := !f.reported
	f.reported = true
	return first
}

// Fail records a failed attempt by key.
func (l *Limiter) Fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f := l.failures[key]
	if f == nil || now.Sub(f.since) >= l.Window {
		if len(l.failures) >= maxTracked {
			l.forget(now)
		}
		l.failures[key] = &failures{count: 1, since: now}
		return
	}
	f.count++
}

// Succeed forgets key's failures.
func (l *Limiter) Succeed(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, key)
}

// forget drops expired windows, and the oldest half if none expired.
func (l *Limiter) forget(now time.Time) {
	var oldest time.Time
	for k, f := range l.failures {
		if now.Sub(f.since) >= l.Window {
			delete(l.failures, k)
		} else if oldest.IsZero() || f.since.Before(oldest) {
			oldest = f.since
		}
	}
	if len(l.failures) < maxTracked {
		return
	}
	cut := oldest.Add(now.Sub(oldest) / 2)
	for k, f := range l.failures {
		if !f.since.After(cut) {
			delete(l.failures, k)
		}
	}
}
