package main_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store/storetest"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and localhost
// and its key into dir, and returns their paths and a pool trusting it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "coder test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLSOnePort is the production shape: plain HTTP off, one TLS port
// with a self-signed certificate (trusted through SSL_CERT_FILE by the
// agent and the CLI) serving the dashboard, the API, coordination and
// DERP. With direct connections blocked, `coder ping` can only succeed
// through DERP over that TLS port; the session cookie is Secure.
func TestTLSOnePort(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The certificate (not its key) is public: local agents, which run as
	// an OS account of their own, read it through SSL_CERT_FILE, so it
	// lives in a directory they can reach.
	certDir, err := os.MkdirTemp("", "coder-tls-cert-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(certDir) })
	if err := os.Chmod(certDir, 0o755); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, pool := selfSigned(t, certDir)
	if err := os.Chmod(certFile, 0o644); err != nil {
		t.Fatal(err)
	}
	trust := "SSL_CERT_FILE=" + certFile
	srv := testutil.StartServer(t, []string{trust, "CODER_PG_CONNECTION_URL=" + storetest.URL(t)},
		"--config-dir", filepath.Join(dir, "server"), "--http-address", "",
		"--tls-enable", "--tls-address", "127.0.0.1:0", "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--block-direct-connections")
	if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") {
		t.Fatalf("dashboard URL %q, want https://127.0.0.1:port", srv.URL)
	}

	cfg := filepath.Join(dir, "cli")
	run := func(args ...string) string {
		t.Helper()
		return mustCoderEnv(t, cfg, []string{trust}, args...)
	}
	run("login", srv.URL, "--first-user-username", "admin", "--first-user-password", "admin-password")
	run("templates", "push", "default", "-f", filepath.Join("..", "..", "templates", "default.yaml"))
	run("create", "dev", "-t", "default")
	testutil.Eventually(t, 60*time.Second, "the local agent to connect over TLS", func() bool {
		var ws []sdk.Workspace
		return json.Unmarshal([]byte(run("list", "-o", "json")), &ws) == nil && len(ws) == 1 && ws[0].Agents[0].Status == sdk.AgentConnected
	})
	out := run("ping", "dev", "-n", "2", "--wait", "100ms")
	if !strings.Contains(out, "pong from dev.main proxied via DERP(coder)") {
		t.Fatalf("ping through DERP on the TLS port:\n%s", out)
	}

	// Not plain HTTP, and not trusted without the certificate.
	if _, err := http.Get(srv.URL + "/login"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client that does not trust the certificate: err = %v, want a certificate error", err)
	}
	hc := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
	for _, path := range []string{"/login", "/derp/probe"} {
		res, err := hc.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK || res.TLS == nil {
			t.Fatalf("GET %s over TLS: %d", path, res.StatusCode)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/login", strings.NewReader(url.Values{"login": {"admin"}, "password": {"admin-password"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", srv.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var session *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "coder_session" {
			session = c
		}
	}
	if session == nil || !session.Secure || !session.HttpOnly {
		t.Fatalf("login over TLS: status %d, session cookie %+v, want Secure and HttpOnly", res.StatusCode, session)
	}
}
