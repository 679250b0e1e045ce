package simplestreams

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgpclearsign "github.com/ProtonMail/go-crypto/openpgp/clearsign"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Errors VerifyClearsigned wraps, so callers can tell the cases apart with errors.Is.
var (
	ErrNoSignature  = errors.New("no signature found")
	ErrUnknownKey   = errors.New("signed by unknown key")
	ErrBadSignature = errors.New("bad signature")
	ErrKeyExpired   = errors.New("signing key expired")
)

const armorBegin = "-----BEGIN PGP "

// ReadKeyring reads public (or private) keys, armored or binary.
func ReadKeyring(data []byte) (openpgp.EntityList, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("keyring is empty")
	}
	var keys openpgp.EntityList
	// Every binary OpenPGP packet starts with a byte whose high bit is set;
	// armored text never does. Binary data is passed untrimmed.
	if data[0]&0x80 != 0 {
		el, err := openpgp.ReadKeyRing(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("read binary keyring: %w", err)
		}
		keys = el
	} else {
		// ReadArmoredKeyRing stops after the first armor block; an .asc file
		// may hold several concatenated keys, so decode each block.
		blocks := splitArmorBlocks(data)
		if len(blocks) == 0 {
			return nil, errors.New("keyring is neither a binary OpenPGP keyring nor ASCII-armored")
		}
		for _, block := range blocks {
			el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(block))
			if err != nil {
				return nil, fmt.Errorf("read armored keyring: %w", err)
			}
			keys = append(keys, el...)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("keyring holds no usable key")
	}
	return keys, nil
}

// splitArmorBlocks cuts data at every armor header ("-----BEGIN PGP ").
func splitArmorBlocks(data []byte) [][]byte {
	marker := []byte(armorBegin)
	var starts []int
	for off := 0; ; {
		i := bytes.Index(data[off:], marker)
		if i < 0 {
			break
		}
		starts = append(starts, off+i)
		off += i + len(marker)
	}
	blocks := make([][]byte, 0, len(starts))
	for n, start := range starts {
		end := len(data)
		if n+1 < len(starts) {
			end = starts[n+1]
		}
		blocks = append(blocks, data[start:end])
	}
	return blocks
}

// IsClearsigned reports whether data starts (after optional whitespace) with a clearsign header.
func IsClearsigned(data []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte(pgpSignedHeader))
}

// VerifyClearsigned checks a clearsigned document against keyring and returns the signed payload and the
// signer's primary key fingerprint (upper-case hex).
func VerifyClearsigned(data []byte, keyring openpgp.EntityList) (payload []byte, fingerprint string, err error) {
	if !IsClearsigned(data) {
		return nil, "", fmt.Errorf("%w: the document is not OpenPGP clearsigned", ErrNoSignature)
	}
	block, rest := pgpclearsign.Decode(bytes.TrimLeft(data, " \t\r\n"))
	if block == nil {
		return nil, "", fmt.Errorf("%w: the clearsigned document is malformed (broken header, text or signature block)", ErrNoSignature)
	}
	// Text after the signature is not covered by it; refuse rather than
	// let a reader mistake it for signed content.
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, "", errors.New("unsigned data follows the signature block")
	}
	sigData, err := io.ReadAll(block.ArmoredSignature.Body)
	if err != nil {
		return nil, "", fmt.Errorf("%w: cannot read the signature block: %v", ErrBadSignature, err)
	}
	if len(keyring) == 0 {
		return nil, "", fmt.Errorf("%w %s: the keyring is empty", ErrUnknownKey, issuerIDs(sigData))
	}
	sig, signer, err := openpgp.VerifyDetachedSignature(keyring, bytes.NewReader(block.Bytes), bytes.NewReader(sigData), nil)
	if err != nil {
		return nil, "", describeVerifyError(err, sig, signer, sigData)
	}
	return block.Plaintext, hexFingerprint(signer.PrimaryKey.Fingerprint), nil
}

// describeVerifyError turns go-crypto's errors into sentences an admin can act on.
func describeVerifyError(err error, sig *packet.Signature, signer *openpgp.Entity, sigData []byte) error {
	who := ""
	if signer != nil {
		who = " " + hexFingerprint(signer.PrimaryKey.Fingerprint)
	}
	switch {
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return fmt.Errorf("%w %s: add the signer's public key to the keyring", ErrUnknownKey, issuerIDs(sigData))
	case errors.Is(err, pgperrors.ErrKeyExpired):
		return fmt.Errorf("%w: key%s has expired; refresh the keyring", ErrKeyExpired, who)
	case errors.Is(err, pgperrors.ErrSignatureExpired):
		when := ""
		if sig != nil && sig.SigLifetimeSecs != nil && *sig.SigLifetimeSecs > 0 {
			when = " on " + sig.CreationTime.Add(time.Duration(*sig.SigLifetimeSecs)*time.Second).UTC().Format(time.DateOnly)
		}
		return fmt.Errorf("%w: the signature by%s expired%s", ErrBadSignature, who, when)
	case errors.Is(err, pgperrors.ErrKeyRevoked):
		return fmt.Errorf("%w: key%s has been revoked", ErrBadSignature, who)
	}
	var weak pgperrors.WeakAlgorithmError
	if errors.As(err, &weak) {
		return fmt.Errorf("%w: it uses a rejected weak algorithm (%v)", ErrBadSignature, err)
	}
	var sigErr pgperrors.SignatureError
	if errors.As(err, &sigErr) {
		return fmt.Errorf("%w: the document was altered or the signature is corrupt (%v)", ErrBadSignature, err)
	}
	return fmt.Errorf("%w: %v", ErrBadSignature, err)
}

// issuerIDs lists the key ids (upper-case hex) named by the signature packets, for error messages.
func issuerIDs(sigData []byte) string {
	var ids []string
	packets := packet.NewReader(bytes.NewReader(sigData))
	for {
		p, err := packets.Next()
		if err != nil {
			break
		}
		sig, ok := p.(*packet.Signature)
		if !ok {
			continue
		}
		switch {
		case len(sig.IssuerFingerprint) > 0:
			ids = append(ids, hexFingerprint(sig.IssuerFingerprint))
		case sig.IssuerKeyId != nil:
			ids = append(ids, fmt.Sprintf("%016X", *sig.IssuerKeyId))
		}
	}
	if len(ids) == 0 {
		return "(no issuer in the signature)"
	}
	return strings.Join(ids, ", ")
}

func hexFingerprint(fp []byte) string { return strings.ToUpper(hex.EncodeToString(fp)) }

// Clearsign signs payload with the private key, as go-crypto's clearsign
// package does (same text, same signature packet) but a line at a time:
// its escaper handles one byte per call, which took a quarter of a
// publish's time on multi-megabyte product files. The signature block
// keeps its CRC-24 line, and the END line ends with a newline: go-crypto's
// clearsign writes neither, and gpgv 2.2 (what MAAS runs on Ubuntu 22.04)
// then reads the END line as base64 and fails.
func Clearsign(payload []byte, key *openpgp.Entity) ([]byte, error) {
	if key == nil || key.PrivateKey == nil {
		return nil, errors.New("clearsign: the key has no private part")
	}
	now := time.Now()
	signing, ok := key.SigningKey(now)
	if !ok || signing.PrivateKey == nil {
		return nil, fmt.Errorf("clearsign: key %s has no valid signing key (expired or revoked?)", hexFingerprint(key.PrimaryKey.Fingerprint))
	}
	k := signing.PrivateKey
	if k.Encrypted {
		return nil, fmt.Errorf("clearsign: key %s is passphrase-protected; decrypt it first", hexFingerprint(key.PrimaryKey.Fingerprint))
	}
	hash := signatureHash(&k.PublicKey)
	config := &packet.Config{DefaultHash: hash}
	h := hash.New()
	sig := &packet.Signature{Version: k.Version, SigType: packet.SigTypeText, PubKeyAlgo: k.PubKeyAlgo, Hash: hash,
		CreationTime: now, IssuerKeyId: &k.KeyId, IssuerKeyVersion: uint8(k.Version), IssuerFingerprint: k.Fingerprint}
	lifetime := config.SigLifetime()
	sig.SigLifetimeSecs = &lifetime
	if k.Version == 6 {
		salt, err := packet.SignatureSaltForHash(hash, config.Random())
		if err != nil {
			return nil, fmt.Errorf("clearsign: %w", err)
		}
		if err := sig.SetSalt(salt); err != nil {
			return nil, fmt.Errorf("clearsign: %w", err)
		}
		h.Write(salt)
	}

	var out bytes.Buffer
	out.Grow(len(payload) + len(payload)/64 + 1024)
	out.WriteString(pgpSignedHeader + "\n")
	if k.Version != 6 { // v6 signatures name their hash in the packet only
		out.WriteString("Hash: " + hashName(hash) + "\n")
	}
	out.WriteByte('\n')
	out.Write(clearText(payload, h))
	out.WriteByte('\n')
	if err := sig.Sign(h, k, config); err != nil {
		return nil, fmt.Errorf("clearsign: %w", err)
	}
	w, err := armor.Encode(&out, "PGP SIGNATURE", nil)
	if err != nil {
		return nil, fmt.Errorf("clearsign: %w", err)
	}
	if err := sig.Serialize(w); err != nil {
		return nil, fmt.Errorf("clearsign: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("clearsign: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// signatureHash is SHA-256, which every gpgv accepts and this machine's
// CPUs compute three times as fast as SHA-512 (a product file of
// megabytes is hashed at each publish); keys on larger curves, whose
// signatures must use a longer hash (RFC 9580 5.2.3.4), get SHA-512.
func signatureHash(k *packet.PublicKey) crypto.Hash {
	switch k.PubKeyAlgo {
	case packet.PubKeyAlgoEd448:
		return crypto.SHA512
	case packet.PubKeyAlgoECDSA, packet.PubKeyAlgoEdDSA:
		if curve, err := k.Curve(); err == nil && curve != packet.Curve25519 && curve != packet.CurveNistP256 &&
			curve != packet.CurveBrainpoolP256 && curve != packet.CurveSecP256k1 {
			return crypto.SHA512
		}
	}
	return crypto.SHA256
}

// hashName is the clearsign "Hash:" header's name of a signatureHash.
func hashName(h crypto.Hash) string {
	if h == crypto.SHA512 {
		return "SHA512"
	}
	return "SHA256"
}

// clearText returns the text of a clearsigned message and writes what its
// signature covers to h (RFC 4880 7.1): each line without its trailing
// spaces, tabs and carriage returns; lines starting with a dash escaped in
// the text only; CRLF between lines in the signed form.
func clearText(payload []byte, h io.Writer) []byte {
	if plainText(payload) {
		// The common case (every published document): the text is the
		// payload, and only line ends change for the signature.
		h.Write(bytes.ReplaceAll(payload, []byte{'\n'}, []byte{'\r', '\n'}))
		return payload
	}
	text := make([]byte, 0, len(payload)+len(payload)/64)
	signed := make([]byte, 0, len(payload)+len(payload)/16)
	for first := true; ; first = false {
		line, rest, more := bytes.Cut(payload, []byte{'\n'})
		line = bytes.TrimRight(line, " \t\r")
		if !first {
			signed = append(signed, '\r', '\n')
		}
		signed = append(signed, line...)
		if len(line) > 0 && line[0] == '-' {
			text = append(text, '-', ' ')
		}
		text = append(text, line...)
		if !more {
			break
		}
		text = append(text, '\n')
		payload = rest
	}
	h.Write(signed)
	return text
}

// plainText reports whether no line of payload ends in white space or a
// carriage return, or starts with a dash: then clearsigning changes none.
func plainText(payload []byte) bool {
	if len(payload) > 0 && (payload[0] == '-' || bytes.IndexByte(payload, '\r') >= 0) {
		return false
	}
	if last := payload[max(len(payload)-1, 0):]; len(last) > 0 && (last[0] == ' ' || last[0] == '\t') {
		return false
	}
	for _, seq := range []string{" \n", "\t\n", "\n-"} {
		if bytes.Contains(payload, []byte(seq)) {
			return false
		}
	}
	return true
}
