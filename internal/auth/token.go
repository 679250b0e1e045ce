// Package auth holds who may change things: the API token.
package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/customstream/customstream/internal/publish"
)

// APIToken returns the configured token, or the one stored in the data
// directory, generating (and logging once) a new one at first start.
func APIToken(dataDir, configured string, log *slog.Logger) (string, error) {
	if configured != "" {
		return configured, nil
	}
	path := filepath.Join(dataDir, "api-token")
	data, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(data))) >= 16 {
		return strings.TrimSpace(string(data)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("api token: %w", err)
	}
	buf := make([]byte, 24)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	token := hex.EncodeToString(buf)
	if err := publish.WriteFileAtomic(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	log.Info("Generated an API token; it is stored in the data directory", slog.String("token", token), slog.String("file", path))
	return token, nil
}
