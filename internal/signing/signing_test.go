package signing

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/gpgvtest"
	"github.com/customstream/customstream/internal/simplestreams"
)

func TestOpenGeneratesOnceAndKeeps(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := Open(dir, log)
	require.NoError(t, err)
	info, err := os.Stat(filepath.Join(dir, KeyFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "the private key is the owner's only")

	again, err := Open(dir, log)
	require.NoError(t, err)
	assert.Equal(t, s.Fingerprint(), again.Fingerprint(), "the key stays across restarts")
	assert.Len(t, s.Fingerprint(), 40)

	signed, err := s.Sign([]byte(`{"format": "index:1.0"}`))
	require.NoError(t, err)
	keys, err := simplestreams.ReadKeyring(s.PublicKeyring())
	require.NoError(t, err)
	_, fp, err := simplestreams.VerifyClearsigned(signed, keys)
	require.NoError(t, err)
	assert.Equal(t, s.Fingerprint(), fp)
	armored, err := s.PublicArmored()
	require.NoError(t, err)
	assert.Contains(t, string(armored), "BEGIN PGP PUBLIC KEY BLOCK")
	keys, err = simplestreams.ReadKeyring(armored)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assert.Nil(t, keys[0].PrivateKey, "the public keyring holds no secret")

	require.NoError(t, os.WriteFile(filepath.Join(dir, KeyFile), []byte("garbage"), 0o600))
	_, err = Open(dir, log)
	assert.ErrorContains(t, err, "not an armored private key")
}

// TestGpgvVerifiesWithKeyringGpg checks the hand-off MAAS uses: gpgv with
// the binary keyring.gpg verifies what the server signs.
func TestGpgvVerifiesWithKeyringGpg(t *testing.T) {
	s, err := Open(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	gpgv := gpgvtest.New(t, s.PublicKeyring())
	signed, err := s.Sign([]byte("{\n \"format\": \"index:1.0\"\n}\n"))
	require.NoError(t, err)
	for name, doc := range map[string][]byte{"good": signed, "tampered": append([]byte(nil), signed...)} {
		t.Run(name, func(t *testing.T) {
			if name == "tampered" {
				i := len("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{\n \"")
				doc[i] = 'F'
			}
			out, err := gpgv.Verify(t, doc)
			if name == "good" {
				require.NoError(t, err, out)
				assert.Contains(t, out, "Good signature")
			} else {
				require.Error(t, err, out)
				assert.Contains(t, out, "BAD signature")
			}
		})
	}
}

func TestReplaceKeepsTheOldKey(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	first, err := Open(dir, log)
	require.NoError(t, err)
	entity, err := Generate()
	require.NoError(t, err)
	second, err := Replace(dir, entity)
	require.NoError(t, err)
	assert.NotEqual(t, first.Fingerprint(), second.Fingerprint())
	loaded, err := Open(dir, log)
	require.NoError(t, err)
	assert.Equal(t, second.Fingerprint(), loaded.Fingerprint(), "the server signs with the new key from its next start")
	assert.FileExists(t, filepath.Join(dir, "keys", "signing-key."+first.Fingerprint()+".old.asc"))

	// Import: an armored private key is taken; a public one is refused.
	priv, err := os.ReadFile(filepath.Join(dir, KeyFile))
	require.NoError(t, err)
	imported, err := ReadPrivateKey(priv)
	require.NoError(t, err)
	assert.Equal(t, second.Fingerprint(), fmt.Sprintf("%X", imported.PrimaryKey.Fingerprint))
	pub, err := second.PublicArmored()
	require.NoError(t, err)
	_, err = ReadPrivateKey(pub)
	assert.ErrorContains(t, err, "no private key")
	_, err = ReadPrivateKey([]byte("nonsense"))
	assert.Error(t, err)
	public, err := simplestreams.ReadKeyring(pub)
	require.NoError(t, err)
	_, err = Replace(dir, public[0])
	assert.ErrorContains(t, err, "not a private key")
}
