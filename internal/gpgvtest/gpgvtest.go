// Package gpgvtest lets tests check signatures the way MAAS does: with
// Debian's gpgv and a binary keyring.
package gpgvtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Verifier runs gpgv against one keyring.
type Verifier struct {
	gpgv, home, keyring string
}

// New writes keyring (binary, as keyring.gpg) for gpgv, or skips the test
// when gpgv is not installed.
func New(t testing.TB, keyring []byte) *Verifier {
	t.Helper()
	gpgv, err := exec.LookPath("gpgv")
	if err != nil {
		t.Skip("gpgv is not installed (apt-get install gpgv): the GnuPG cross-check is skipped")
	}
	home := t.TempDir()
	path := filepath.Join(home, "keyring.gpg")
	if err := os.WriteFile(path, keyring, 0o644); err != nil {
		t.Fatal(err)
	}
	return &Verifier{gpgv: gpgv, home: home, keyring: path}
}

// Verify runs gpgv on doc and returns what it printed; the error is gpgv's
// exit status, non-nil for a bad or missing signature.
func (v *Verifier) Verify(t testing.TB, doc []byte) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "doc.sjson")
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(v.gpgv, "--homedir", v.home, "--keyring", v.keyring, path)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+v.home, "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}
