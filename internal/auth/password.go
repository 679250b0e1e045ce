// Package auth decides who may change things: the admin's password and
// sessions, API tokens, and the limit on failed logins.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/customstream/customstream/internal/publish"
)

// argon2id parameters: OWASP's first recommendation (19 MiB, 2 passes, one
// thread), some tens of milliseconds, so a guess is slow and a login cheap.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// PasswordFile is where the admin password's hash is kept, relative to the
// data directory, unless CUSTOMSTREAM_ADMIN_PASSWORD sets the password.
const PasswordFile = "admin-password"

// AdminUser is the portal's one user name.
const AdminUser = "admin"

// MinPasswordLength is the shortest password SetPassword accepts.
const MinPasswordLength = 12

// HashPassword returns password's argon2id hash in the PHC string format.
func HashPassword(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// CheckPassword reports whether password matches a hash from HashPassword.
func CheckPassword(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false
	}
	var memory, passes uint32
	var threads uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &memory, &passes, &threads); err != nil {
		return false
	}
	// A hash file edited to ask for absurd work must not stall the server.
	if memory == 0 || memory > 64*1024 || passes == 0 || passes > 8 || threads == 0 {
		return false
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) == 0 || len(want) > 64 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, passes, memory, threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// Admin checks the admin's password.
type Admin struct {
	// hash is set when the password comes from the environment; otherwise
	// the hash is read from file at each check, so `customstream password`
	// takes effect without a restart.
	hash string
	file string
}

// LoadAdmin returns the admin whose password is configured or, when that is
// empty, the one stored in the data directory. At first start it generates
// a password, logs it once and stores only its hash.
func LoadAdmin(dataDir, configured string, log *slog.Logger) (*Admin, error) {
	if configured != "" {
		hash, err := HashPassword(configured)
		if err != nil {
			return nil, err
		}
		return &Admin{hash: hash}, nil
	}
	a := &Admin{file: filepath.Join(dataDir, PasswordFile)}
	_, err := a.currentHash()
	if err == nil {
		return a, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	password := NewSecret(15)
	if err := SetPassword(dataDir, password); err != nil {
		return nil, err
	}
	log.Warn("Generated the admin password; it is shown only this once (set another with `customstream password`)",
		slog.String("user", AdminUser), slog.String("password", password))
	return a, nil
}

// Check reports whether user and password are the admin's.
func (a *Admin) Check(user, password string) bool {
	hash, err := a.currentHash()
	if err != nil {
		return false
	}
	ok := CheckPassword(hash, password)
	return ok && subtle.ConstantTimeCompare([]byte(user), []byte(AdminUser)) == 1
}

// Fingerprint identifies the current password hash (not the password):
// sessions opened under another one are over.
func (a *Admin) Fingerprint() string {
	hash, err := a.currentHash()
	if err != nil {
		return ""
	}
	sum := sha256.Sum256([]byte(hash))
	return hex.EncodeToString(sum[:8])
}

func (a *Admin) currentHash() (string, error) {
	if a.file == "" {
		return a.hash, nil
	}
	data, err := os.ReadFile(a.file)
	if err != nil {
		return "", fmt.Errorf("admin password: %w", err)
	}
	hash := strings.TrimSpace(string(data))
	if !strings.HasPrefix(hash, "$argon2id$") {
		return "", fmt.Errorf("admin password: %s does not hold an argon2id hash", a.file)
	}
	return hash, nil
}

// SetPassword stores the hash of password as the admin's in the data
// directory.
func SetPassword(dataDir, password string) error {
	if len(password) < MinPasswordLength {
		return fmt.Errorf("the password must be at least %d characters long", MinPasswordLength)
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	if err := publish.WriteFileAtomic(filepath.Join(dataDir, PasswordFile), []byte(hash+"\n"), 0o600); err != nil {
		return fmt.Errorf("admin password: %w", err)
	}
	return nil
}
