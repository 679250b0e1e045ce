package auth

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/store"
)

func TestPasswordHash(t *testing.T) {
	hash, err := HashPassword("correct horse battery")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(hash, "$argon2id$v=19$m=19456,t=2,p=1$"), hash)
	other, err := HashPassword("correct horse battery")
	require.NoError(t, err)
	assert.NotEqual(t, hash, other, "every hash has its own salt")

	tests := []struct {
		name, hash, password string
		ok                   bool
	}{
		{"right", hash, "correct horse battery", true},
		{"wrong", hash, "correct horse battery!", false},
		{"empty", hash, "", false},
		{"not a hash", "plain text", "plain text", false},
		{"other algorithm", strings.Replace(hash, "argon2id", "argon2i", 1), "correct horse battery", false},
		{"absurd memory", strings.Replace(hash, "m=19456", "m=99999999", 1), "correct horse battery", false},
		{"bad salt", strings.Replace(hash, "$m=19456,t=2,p=1$", "$m=19456,t=2,p=1$!!!", 1), "correct horse battery", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.ok, CheckPassword(tt.hash, tt.password))
		})
	}
}

func TestLoadAdmin(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))

	t.Run("from the environment", func(t *testing.T) {
		dir := t.TempDir()
		a, err := LoadAdmin(dir, "from-the-environment", log)
		require.NoError(t, err)
		assert.True(t, a.Check("admin", "from-the-environment"))
		assert.False(t, a.Check("root", "from-the-environment"))
		assert.NoFileExists(t, filepath.Join(dir, PasswordFile), "nothing stored")
	})

	t.Run("generated at first start", func(t *testing.T) {
		dir := t.TempDir()
		logged.Reset()
		a, err := LoadAdmin(dir, "", log)
		require.NoError(t, err)
		_, rest, ok := strings.Cut(logged.String(), "password=")
		require.True(t, ok, "the password is logged: %s", logged.String())
		password := strings.Fields(rest)[0]
		assert.Len(t, password, 20)
		assert.True(t, a.Check("admin", password))

		data, err := os.ReadFile(filepath.Join(dir, PasswordFile))
		require.NoError(t, err)
		assert.NotContains(t, string(data), password, "only the hash is stored")
		info, err := os.Stat(filepath.Join(dir, PasswordFile))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())

		logged.Reset()
		again, err := LoadAdmin(dir, "", log)
		require.NoError(t, err)
		assert.True(t, again.Check("admin", password), "the stored password stays")
		assert.NotContains(t, logged.String(), "password=", "logged only once")

		before := a.Fingerprint()
		require.Error(t, SetPassword(dir, "short"))
		require.NoError(t, SetPassword(dir, "a new long password"))
		assert.True(t, a.Check("admin", "a new long password"), "a running server sees the new password")
		assert.False(t, a.Check("admin", password))
		assert.NotEqual(t, before, a.Fingerprint())
	})

	t.Run("damaged file", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, PasswordFile), []byte("hunter2\n"), 0o600))
		_, err := LoadAdmin(dir, "", log)
		assert.ErrorContains(t, err, "argon2id")
	})
}

func TestSessions(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "test.db"), time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	admin, err := LoadAdmin(dir, "", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	s := &Sessions{Store: st, Admin: admin, Now: func() time.Time { return now }}

	id, sess, err := s.Open(AdminUser, "192.0.2.1")
	require.NoError(t, err)
	assert.NotEqual(t, id, sess.Hash, "the cookie value is not stored")
	assert.Len(t, sess.CSRF, 43)

	got, err := s.Get(id)
	require.NoError(t, err)
	assert.Equal(t, sess.CSRF, got.CSRF)
	_, err = s.Get("other")
	assert.ErrorIs(t, err, ErrNoSession)
	_, err = s.Get("")
	assert.ErrorIs(t, err, ErrNoSession)

	// Used every 20 hours, it lives until its week is over.
	for i := 0; i < 8; i++ {
		now = now.Add(20 * time.Hour)
		_, err = s.Get(id)
		require.NoError(t, err, "after %d uses", i+1)
	}
	now = now.Add(20 * time.Hour)
	_, err = s.Get(id)
	assert.ErrorIs(t, err, ErrNoSession, "a week after login")

	id, _, err = s.Open(AdminUser, "192.0.2.1")
	require.NoError(t, err)
	now = now.Add(SessionIdle + time.Minute)
	_, err = s.Get(id)
	assert.ErrorIs(t, err, ErrNoSession, "a day without use")
	assert.NotErrorIs(t, err, ErrPasswordChanged)

	id, _, err = s.Open(AdminUser, "192.0.2.1")
	require.NoError(t, err)
	require.NoError(t, SetPassword(dir, "another long password"))
	_, err = s.Get(id)
	assert.ErrorIs(t, err, ErrNoSession, "a new password ends every session")
	assert.ErrorIs(t, err, ErrPasswordChanged, "and says why")
	_, err = s.Get(id)
	assert.NotErrorIs(t, err, ErrPasswordChanged, "once")

	id, _, err = s.Open(AdminUser, "192.0.2.1")
	require.NoError(t, err)
	require.NoError(t, s.End(id))
	_, err = s.Get(id)
	assert.ErrorIs(t, err, ErrNoSession, "logged out")
}

func TestLimiter(t *testing.T) {
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	l := NewLimiter(3, 10*time.Minute)
	l.Now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		ok, _ := l.Allow("a")
		require.True(t, ok, "attempt %d", i+1)
		l.Fail("a")
	}
	ok, wait := l.Allow("a")
	assert.False(t, ok)
	assert.Equal(t, 10*time.Minute, wait)
	assert.True(t, l.FirstRefusal("a"), "the lock-out is reported")
	assert.False(t, l.FirstRefusal("a"), "once")
	ok, _ = l.Allow("b")
	assert.True(t, ok, "other addresses are not affected")

	now = now.Add(10 * time.Minute)
	ok, _ = l.Allow("a")
	assert.True(t, ok, "the window is over")
	for range 3 {
		l.Fail("a")
	}
	ok, _ = l.Allow("a")
	assert.False(t, ok)
	assert.True(t, l.FirstRefusal("a"), "a new lock-out is reported again")

	l.Fail("c")
	l.Succeed("c")
	l.Fail("c")
	l.Fail("c")
	ok, _ = l.Allow("c")
	assert.True(t, ok, "a success forgets earlier failures")

	// A flood of addresses cannot grow the table without bound.
	for i := 0; i < maxTracked+500; i++ {
		now = now.Add(time.Millisecond)
		l.Fail(fmt.Sprint("flood-", i))
	}
	assert.LessOrEqual(t, len(l.failures), maxTracked)
}

// FuzzCheckPassword: a damaged or hostile hash file never panics the
// server or logs anyone in with a wrong password.
func FuzzCheckPassword(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g", "password")
	f.Add("$argon2id$v=19$m=8,t=1,p=1$$", "")
	f.Add("$argon2id$v=19$m=8,t=1,p=255$AA$AA", "x")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, encoded, password string) {
		if CheckPassword(encoded, password) {
			// Only a real hash of this very password may match.
			if !strings.HasPrefix(encoded, "$argon2id$") {
				t.Fatalf("%q matched without being an argon2id hash", encoded)
			}
		}
	})
}
