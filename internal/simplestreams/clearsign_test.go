package simplestreams

import (
	"bytes"
	"crypto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgpclearsign "github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/customstream/customstream/internal/gpgvtest"
)

const testPayload = `{
 "content_id": "com.example:stable:v3:download",
 "format": "products:1.0",
 "label": "stable"
}
`

// newTestKey makes an EdDSA key: fast to generate and understood by gpgv.
func newTestKey(t *testing.T, cfg *packet.Config) *openpgp.Entity {
	t.Helper()
	if cfg == nil {
		cfg = &packet.Config{}
	}
	cfg.Algorithm = packet.PubKeyAlgoEdDSA
	key, err := openpgp.NewEntity("customstream test", "", "test@example.com", cfg)
	require.NoError(t, err)
	return key
}

func publicBinary(t *testing.T, keys ...*openpgp.Entity) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, k := range keys {
		require.NoError(t, k.Serialize(&buf))
	}
	return buf.Bytes()
}

func publicArmored(t *testing.T, key *openpgp.Entity) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	require.NoError(t, err)
	require.NoError(t, key.Serialize(w))
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func fingerprintOf(key *openpgp.Entity) string { return hexFingerprint(key.PrimaryKey.Fingerprint) }

func TestClearsignVerifyRoundTrip(t *testing.T) {
	key := newTestKey(t, nil)
	signed, err := Clearsign([]byte(testPayload), key)
	require.NoError(t, err)
	assert.True(t, IsClearsigned(signed))

	keyring, err := ReadKeyring(publicBinary(t, key))
	require.NoError(t, err)
	payload, fp, err := VerifyClearsigned(signed, keyring)
	require.NoError(t, err)
	assert.Equal(t, testPayload, string(payload))
	assert.Equal(t, fingerprintOf(key), fp)
	assert.Equal(t, strings.ToUpper(fp), fp)

	// gpgv 2.2 needs the CRC-24 line and a newline after the END line.
	lines := strings.Split(strings.TrimSuffix(string(signed), "\n"), "\n")
	require.GreaterOrEqual(t, len(lines), 3)
	assert.Equal(t, "-----END PGP SIGNATURE-----", lines[len(lines)-1])
	assert.Regexp(t, `^=[A-Za-z0-9+/]{4}$`, lines[len(lines)-2])
	assert.True(t, bytes.HasSuffix(signed, []byte("-----\n")))
}

func TestClearsignDashEscapes(t *testing.T) {
	key := newTestKey(t, nil)
	keyring, err := ReadKeyring(publicBinary(t, key))
	require.NoError(t, err)
	payload := "-----BEGIN PGP SIGNATURE-----\n- dash\nlast line without newline"
	signed, err := Clearsign([]byte(payload), key)
	require.NoError(t, err)
	got, _, err := VerifyClearsigned(signed, keyring)
	require.NoError(t, err)
	assert.Equal(t, payload, string(got))
}

func TestVerifyClearsignedFailures(t *testing.T) {
	key := newTestKey(t, nil)
	other := newTestKey(t, nil)
	signed, err := Clearsign([]byte(testPayload), key)
	require.NoError(t, err)
	good, err := ReadKeyring(publicBinary(t, key))
	require.NoError(t, err)
	wrong, err := ReadKeyring(publicBinary(t, other))
	require.NoError(t, err)

	tampered := bytes.Replace(signed, []byte(`"stable"`), []byte(`"stablf"`), 1)
	require.NotEqual(t, signed, tampered)

	keyID := strings.ToUpper(key.PrimaryKey.KeyIdString())
	tests := []struct {
		name    string
		doc     []byte
		keyring openpgp.EntityList
		is      error
		want    []string
	}{
		{"tampered payload", tampered, good, ErrBadSignature, []string{"bad signature"}},
		{"other key", signed, wrong, ErrUnknownKey, []string{"signed by unknown key", keyID}},
		{"empty keyring", signed, nil, ErrUnknownKey, []string{"signed by unknown key", "keyring is empty"}},
		{"plain JSON", []byte(testPayload), good, ErrNoSignature, []string{"no signature found"}},
		{"truncated signature", signed[:bytes.Index(signed, []byte("-----END PGP SIGNATURE"))], good, ErrNoSignature, []string{"no signature found", "malformed"}},
		{"data after signature", append(append([]byte{}, signed...), []byte("{\"evil\": 1}\n")...), good, nil, []string{"unsigned data follows"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			payload, fp, err := VerifyClearsigned(tc.doc, tc.keyring)
			require.Error(t, err)
			assert.Nil(t, payload)
			assert.Empty(t, fp)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestVerifyClearsignedExpiredKey(t *testing.T) {
	past := func() time.Time { return time.Now().Add(-48 * time.Hour) }
	key := newTestKey(t, &packet.Config{Time: past, KeyLifetimeSecs: 3600})

	// Clearsign refuses an expired key, so sign "in the past" directly.
	var buf bytes.Buffer
	w, err := pgpclearsign.Encode(&buf, key.PrivateKey, &packet.Config{Time: past, DefaultHash: crypto.SHA256})
	require.NoError(t, err)
	_, err = w.Write([]byte(testPayload))
	require.NoError(t, err)
	require.NoError(t, w.Close())

	keyring, err := ReadKeyring(publicBinary(t, key))
	require.NoError(t, err)
	_, _, err = VerifyClearsigned(buf.Bytes(), keyring)
	require.ErrorIs(t, err, ErrKeyExpired)
	assert.Contains(t, err.Error(), fingerprintOf(key))

	_, err = Clearsign([]byte(testPayload), key)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no valid signing key")
}

func TestClearsignRefusesPublicKey(t *testing.T) {
	key := newTestKey(t, nil)
	keyring, err := ReadKeyring(publicBinary(t, key))
	require.NoError(t, err)
	_, err = Clearsign([]byte(testPayload), keyring[0])
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no private part")
}

func TestIsClearsigned(t *testing.T) {
	tests := []struct {
		name string
		data string
		want bool
	}{
		{"header", "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n", true},
		{"leading whitespace", "\n  \r\n-----BEGIN PGP SIGNED MESSAGE-----\n", true},
		{"json", `{"format": "index:1.0"}`, false},
		{"empty", "", false},
		{"other armor", "-----BEGIN PGP SIGNATURE-----\n", false},
		{"header later", "junk\n-----BEGIN PGP SIGNED MESSAGE-----\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, IsClearsigned([]byte(tc.data)))
		})
	}
}

func TestReadKeyring(t *testing.T) {
	key := newTestKey(t, nil)
	other := newTestKey(t, nil)
	var private bytes.Buffer
	require.NoError(t, key.SerializePrivate(&private, nil))

	tests := []struct {
		name string
		data []byte
		want []string // fingerprints
	}{
		{"binary", publicBinary(t, key), []string{fingerprintOf(key)}},
		{"binary two keys", publicBinary(t, key, other), []string{fingerprintOf(key), fingerprintOf(other)}},
		{"armored", publicArmored(t, key), []string{fingerprintOf(key)}},
		{"armored with leading text", append([]byte("comment\n\n"), publicArmored(t, key)...), []string{fingerprintOf(key)}},
		{"two armored blocks", append(publicArmored(t, key), publicArmored(t, other)...), []string{fingerprintOf(key), fingerprintOf(other)}},
		{"private binary", private.Bytes(), []string{fingerprintOf(key)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			el, err := ReadKeyring(tc.data)
			require.NoError(t, err)
			var got []string
			for _, e := range el {
				got = append(got, fingerprintOf(e))
			}
			assert.Equal(t, tc.want, got)
		})
	}

	t.Run("empty", func(t *testing.T) {
		_, err := ReadKeyring([]byte("  \n"))
		require.ErrorContains(t, err, "empty")
	})
	t.Run("garbage", func(t *testing.T) {
		_, err := ReadKeyring([]byte("not a key"))
		require.Error(t, err)
	})
}

func TestReadKeyringUbuntuCloudImageKey(t *testing.T) {
	// The upstream package embeds the real key; read the same file here.
	data, err := os.ReadFile(filepath.Join("..", "upstream", "keys", "ubuntu-cloudimage-keyring.asc"))
	require.NoError(t, err)
	el, err := ReadKeyring(data)
	require.NoError(t, err)
	require.Len(t, el, 1)
	assert.Equal(t, "4A3CE3CD565D7EB5C810E2B97FF3F408476CF100", fingerprintOf(el[0]))
	_, ok := el[0].SigningKey(time.Now())
	assert.True(t, ok, "the Ubuntu key must be usable to verify signatures")
}

// TestClearsignAcceptedByGpgv checks our signatures the way MAAS does: with Debian's gpgv.
func TestClearsignAcceptedByGpgv(t *testing.T) {
	key := newTestKey(t, nil)
	gpgv := gpgvtest.New(t, publicBinary(t, key))

	signed, err := Clearsign([]byte(testPayload), key)
	require.NoError(t, err)
	tampered := bytes.Replace(signed, []byte(`"stable"`), []byte(`"stablf"`), 1)

	run := func(t *testing.T, doc []byte) (string, error) { return gpgv.Verify(t, doc) }

	t.Run("good", func(t *testing.T) {
		out, err := run(t, signed)
		require.NoError(t, err, out)
		assert.Contains(t, out, "Good signature")
	})
	t.Run("tampered", func(t *testing.T) {
		out, err := run(t, tampered)
		require.Error(t, err, out)
		assert.Contains(t, out, "BAD signature")
	})
}

// Clearsign writes the text go-crypto's clearsign package writes, and its
// signature covers what go-crypto's reader checks: the edge cases of
// RFC 4880's clearsign rules (dashes, trailing white space, CR, blank
// lines, no final newline), with v4 and v6 keys, and a key whose curve
// needs SHA-512.
func TestClearsignMatchesGoCrypto(t *testing.T) {
	payloads := []string{
		"", "\n", "\n\n", "a", "a\n", "a\nb", "a\nb\n", "a\n\nb\n",
		"trailing spaces   \nand a tab\t\nand CRLF\r\nlast\r\n",
		"-dash\n- dash space\n  -indented dash\n--\n-",
		"   \n\t\nwhite space only lines above\n", "last line ends in a space ", "x\n\t", "x\r",
		testPayload,
	}
	v6, err := openpgp.NewEntity("customstream test", "", "test@example.com", &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519})
	require.NoError(t, err)
	p384, err := openpgp.NewEntity("customstream test", "", "test@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoECDSA, Curve: packet.CurveNistP384})
	require.NoError(t, err)
	keys := map[string]*openpgp.Entity{"v4": newTestKey(t, nil), "v6": v6, "P-384": p384}
	for name, key := range keys {
		keyring, err := ReadKeyring(publicBinary(t, key))
		require.NoError(t, err)
		for _, payload := range payloads {
			t.Run(name+"/"+strings.ReplaceAll(payload, "\n", `\n`), func(t *testing.T) {
				signed, err := Clearsign([]byte(payload), key)
				require.NoError(t, err)
				var ref bytes.Buffer
				w, err := pgpclearsign.Encode(&ref, key.PrivateKey, &packet.Config{DefaultHash: signatureHash(&key.PrivateKey.PublicKey)})
				require.NoError(t, err)
				_, err = w.Write([]byte(payload))
				require.NoError(t, err)
				require.NoError(t, w.Close())
				textOf := func(b []byte) string {
					i := bytes.Index(b, []byte("\n-----BEGIN PGP SIGNATURE-----"))
					require.GreaterOrEqual(t, i, 0)
					return string(b[:i])
				}
				assert.Equal(t, textOf(ref.Bytes()), textOf(signed))
				got, _, err := VerifyClearsigned(signed, keyring)
				require.NoError(t, err)
				want, _ := pgpclearsign.Decode(ref.Bytes())
				require.NotNil(t, want)
				assert.Equal(t, string(want.Plaintext), string(got))
			})
		}
	}
}

// Ed25519 keys sign with SHA-256 (fast with the CPU's SHA extensions);
// keys on curves that need a longer hash get SHA-512. The header names
// the digest, and the signature packet uses it.
func TestClearsignDigest(t *testing.T) {
	p384, err := openpgp.NewEntity("customstream test", "", "test@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoECDSA, Curve: packet.CurveNistP384})
	require.NoError(t, err)
	tests := []struct {
		name string
		key  *openpgp.Entity
		want crypto.Hash
		head string
	}{
		{"Ed25519", newTestKey(t, nil), crypto.SHA256, "Hash: SHA256"},
		{"P-384", p384, crypto.SHA512, "Hash: SHA512"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signed, err := Clearsign([]byte(testPayload), tt.key)
			require.NoError(t, err)
			assert.Contains(t, string(signed), "\n"+tt.head+"\n")
			block, _ := pgpclearsign.Decode(signed)
			require.NotNil(t, block)
			p, err := packet.Read(block.ArmoredSignature.Body)
			require.NoError(t, err)
			sig, ok := p.(*packet.Signature)
			require.True(t, ok)
			assert.Equal(t, tt.want, sig.Hash)
		})
	}
}
