package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// NewSecret returns n random bytes, URL-safe base64 encoded.
func NewSecret(n int) string {
	buf := make([]byte, n)
	// crypto/rand.Read does not fail on Linux (Go 1.24+ crashes instead).
	_, _ = rand.Read(buf)
	return base64.RawURLEncoding.EncodeToString(buf)
}

// HashSecret returns the hex sha256 of a high-entropy secret (a session id,
// an API token): what is stored instead of it. A slow hash buys nothing for
// 256 random bits.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// TokenPrefix starts every API token, so a leaked one is recognisable.
const TokenPrefix = "cst_"

// NewAPIToken returns a new API token.
func NewAPIToken() string {
	return TokenPrefix + NewSecret(32)
}
