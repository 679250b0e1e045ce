// Package signing holds the server's own OpenPGP key: generated at first
// start, kept in the data directory (mode 0600), used to clearsign every
// published document, and handed to MAAS as a keyring.
package signing

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/simplestreams"
)

// KeyFile is the armored private key, relative to the data directory.
const KeyFile = "keys/signing-key.asc"

// Signer signs with the server's key.
type Signer struct {
	entity *openpgp.Entity
	public []byte // binary public key: what keyring_data@= and gpgv take
}

// Open loads the key from dataDir, generating one at first start.
func Open(dataDir string, log *slog.Logger) (*Signer, error) {
	path := filepath.Join(dataDir, KeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		entity, err := Generate()
		if err != nil {
			return nil, err
		}
		if err := save(path, entity); err != nil {
			return nil, err
		}
		s, err := newSigner(entity)
		if err != nil {
			return nil, err
		}
		log.Info("Generated the stream signing key", slog.String("fingerprint", s.Fingerprint()), slog.String("file", path))
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	keys, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	if err != nil || len(keys) == 0 || keys[0].PrivateKey == nil {
		return nil, fmt.Errorf("signing key %s: not an armored private key", path)
	}
	return newSigner(keys[0])
}

// Generate makes a new Ed25519 signing key, which Debian's and Ubuntu's gpgv
// (what MAAS runs) verify, and which is made in an instant.
func Generate() (*openpgp.Entity, error) {
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}
	e, err := openpgp.NewEntity("customstream stream signing key", "", "customstream@localhost", cfg)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	return e, nil
}

func save(path string, e *openpgp.Entity) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PrivateKeyType, nil)
	if err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	if err := e.SerializePrivate(w, nil); err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	buf.WriteByte('\n')
	return publish.WriteFileAtomic(path, buf.Bytes(), 0o600)
}

func newSigner(e *openpgp.Entity) (*Signer, error) {
	var pub bytes.Buffer
	if err := e.Serialize(&pub); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return &Signer{entity: e, public: pub.Bytes()}, nil
}

// Sign clearsigns payload.
func (s *Signer) Sign(payload []byte) ([]byte, error) {
	return simplestreams.Clearsign(payload, s.entity)
}

// Fingerprint is the key's fingerprint in upper-case hex.
func (s *Signer) Fingerprint() string {
	return fmt.Sprintf("%X", s.entity.PrimaryKey.Fingerprint)
}

// PublicKeyring is the public key in binary form (keyring.gpg).
func (s *Signer) PublicKeyring() []byte { return s.public }

// PublicArmored is the public key armored (keyring.asc).
func (s *Signer) PublicArmored() ([]byte, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(s.public); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// Keyring is the public key as a keyring, to verify what Sign made.
func (s *Signer) Keyring() openpgp.EntityList { return openpgp.EntityList{s.entity} }

// Replace makes entity the signing key, keeping the previous one beside it
// (keys/signing-key.FINGERPRINT.old.asc) so nothing is lost by mistake.
// The web process signs with it from its next start, signing every document
// again.
func Replace(dataDir string, entity *openpgp.Entity) (*Signer, error) {
	if entity.PrivateKey == nil {
		return nil, errors.New("signing key: not a private key")
	}
	if entity.PrivateKey.Encrypted {
		return nil, errors.New("signing key: it is protected by a passphrase; export it without one (gpg --export-secret-keys after removing the passphrase)")
	}
	s, err := newSigner(entity)
	if err != nil {
		return nil, err
	}
	if _, err := s.Sign([]byte("{}\n")); err != nil {
		return nil, fmt.Errorf("signing key: it cannot sign: %w", err)
	}
	path := filepath.Join(dataDir, KeyFile)
	if old, err := os.ReadFile(path); err == nil {
		if keys, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(old)); err == nil && len(keys) > 0 {
			backup := filepath.Join(dataDir, "keys", fmt.Sprintf("signing-key.%X.old.asc", keys[0].PrimaryKey.Fingerprint))
			if err := publish.WriteFileAtomic(backup, old, 0o600); err != nil {
				return nil, err
			}
		}
	}
	if err := save(path, entity); err != nil {
		return nil, err
	}
	return s, nil
}

// ReadPrivateKey reads an armored private key, to import it.
func ReadPrivateKey(data []byte) (*openpgp.Entity, error) {
	keys, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("signing key: not an armored OpenPGP key: %w", err)
	}
	for _, k := range keys {
		if k.PrivateKey != nil {
			return k, nil
		}
	}
	return nil, errors.New("signing key: the file holds no private key (export it with gpg --armor --export-secret-keys)")
}
