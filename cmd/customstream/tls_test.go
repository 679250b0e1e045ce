package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files and
// returns their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "customstream test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile, pool
}

// TestTLS runs `customstream all` with a certificate: the stream and the
// portal answer over HTTPS only, the session cookie is Secure, and the
// password set with `customstream password -` logs in.
func TestTLS(t *testing.T) {
	integration(t)
	certFile, keyFile, pool := selfSigned(t)
	dataDir := t.TempDir()
	addr := freeAddr(t)
	env := []string{"PATH=" + os.Getenv("PATH"), "CUSTOMSTREAM_ADDR=" + addr, "CUSTOMSTREAM_DATA_DIR=" + dataDir,
		"CUSTOMSTREAM_TLS_CERT=" + certFile, "CUSTOMSTREAM_TLS_KEY=" + keyFile, "CUSTOMSTREAM_MIN_FREE=1MiB"}

	setPassword := exec.Command(binary, "password", "-")
	setPassword.Env = env
	setPassword.Stdin = strings.NewReader("a password for the test\n")
	out, err := setPassword.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "changed")

	startProc(t, "customstream-all-tls", env, binary, "all")
	client := &http.Client{Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		// The login answer's cookie is what is checked, not where it leads.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := "https://" + addr
	require.Eventually(t, func() bool {
		resp, err := client.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 100*time.Millisecond, "no HTTPS answer from %s", base)

	resp, err := client.Get(base + "/streams/v1/index.json")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get("Strict-Transport-Security"))

	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + addr + "/streams/v1/index.json"); err == nil {
		resp.Body.Close()
		assert.NotEqual(t, http.StatusOK, resp.StatusCode, "plain HTTP must not be served")
	}

	resp, err = client.PostForm(base+"/login", url.Values{"user": {"admin"}, "password": {"a password for the test"}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	cookie := resp.Header.Get("Set-Cookie")
	assert.Contains(t, cookie, "customstream_session=")
	assert.Contains(t, cookie, "secure")
	assert.Contains(t, cookie, "HttpOnly")
}

// TestBadTLSConfig: a certificate that cannot be loaded stops the start with
// a message naming the setting.
func TestBadTLSConfig(t *testing.T) {
	integration(t)
	certFile, _, _ := selfSigned(t)
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"key is not a key", []string{"CUSTOMSTREAM_TLS_CERT=" + certFile, "CUSTOMSTREAM_TLS_KEY=" + certFile}, "CUSTOMSTREAM_TLS_CERT/CUSTOMSTREAM_TLS_KEY"},
		{"key missing", []string{"CUSTOMSTREAM_TLS_CERT=" + certFile}, "set both CUSTOMSTREAM_TLS_CERT and CUSTOMSTREAM_TLS_KEY"},
		{"unreadable", []string{"CUSTOMSTREAM_TLS_CERT=/nonexistent.pem", "CUSTOMSTREAM_TLS_KEY=/nonexistent.key"}, "cannot read /nonexistent.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(binary, "all")
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "CUSTOMSTREAM_ADDR=" + freeAddr(t), "CUSTOMSTREAM_DATA_DIR=" + t.TempDir()}, tt.env...)
			done := make(chan struct{})
			var out []byte
			var err error
			go func() { out, err = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("customstream started with a bad TLS setting: %s", out)
			}
			require.Error(t, err, "%s", out)
			assert.Contains(t, string(out), tt.want)
		})
	}
}
