package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/customstream/customstream/internal/config"
	"github.com/customstream/customstream/internal/signing"
	"github.com/customstream/customstream/internal/store"
)

const keysUsage = `Usage:
  customstream keys show           print the signing key's fingerprint
  customstream keys rotate         replace the signing key with a new one
  customstream keys import FILE    make an armored private key (gpg --armor --export-secret-keys) the signing key
`

// runKeys manages the stream signing key in CUSTOMSTREAM_DATA_DIR.
func runKeys(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] == "import") != (len(args) == 2) || len(args) > 2 {
		fmt.Fprint(stderr, keysUsage)
		return 2
	}
	cfg, ok := loadConfig(stderr)
	if !ok {
		return 2
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var s *signing.Signer
	var err error
	switch args[0] {
	case "show":
		s, err = signing.Open(cfg.DataDir, log)
	case "rotate", "import":
		if err = serverStopped(cfg.DataDir); err != nil {
			break
		}
		s, err = replaceKey(cfg.DataDir, args[1:])
	default:
		fmt.Fprint(stderr, keysUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "customstream:", err)
		return 1
	}
	fmt.Fprintln(stdout, "Signing key fingerprint:", s.Fingerprint())
	if args[0] != "show" {
		fmt.Fprintln(stdout, "Start the server: it signs the stream again with this key. Give MAAS the new /keyring.gpg (the MAAS setup page shows how).")
	}
	return 0
}

func replaceKey(dataDir string, file []string) (*signing.Signer, error) {
	if len(file) == 0 {
		entity, err := signing.Generate()
		if err != nil {
			return nil, err
		}
		return signing.Replace(dataDir, entity)
	}
	data, err := os.ReadFile(file[0])
	if err != nil {
		return nil, err
	}
	entity, err := signing.ReadPrivateKey(data)
	if err != nil {
		return nil, err
	}
	return signing.Replace(dataDir, entity)
}

// loadConfig loads the configuration of an offline command, saying on
// stderr what is wrong with it.
func loadConfig(stderr io.Writer) (*config.Config, bool) {
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "customstream:", err)
		return nil, false
	}
	return cfg, true
}

// serverStopped refuses to change the key under a running server, which
// would go on signing with the old one.
func serverStopped(dataDir string) error {
	st, err := openStopped(dataDir, "change the key")
	if err != nil {
		return err
	}
	return st.Close()
}

// openStopped opens the database of a stopped server, for a command that
// does what; a running server holds it, and the command is refused.
func openStopped(dataDir, what string) (*store.Store, error) {
	st, err := store.Open(filepath.Join(dataDir, "customstream.db"), 200*time.Millisecond)
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("the server is running on this data directory: stop it, %s, start it again", what)
	}
	return st, err
}
