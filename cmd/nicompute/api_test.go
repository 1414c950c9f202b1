package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, as PEM files in a temporary directory.
type testPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalPKCS8PrivateKey(k)
		return write(name+".pem", "CERTIFICATE", der), write(name+".key", "PRIVATE KEY", kd)
	}
	p := testPKI{ca: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

// TestAPIOverTLS serves the API over HTTPS with required client
// certificates: the renter's CLI gets in with the CA and its certificate,
// and not without the certificate.
func TestAPIOverTLS(t *testing.T) {
	w := newMinerWorld(t)
	pki := newTestPKI(t)
	apiData := t.TempDir()
	token, _ := createToken(t, apiData, "tls", "read")
	api := runInBackground(t, regexp.MustCompile(`allocation API on (https://127\.0\.0\.1:\d+)`), "api",
		"--netuid", strconv.Itoa(int(w.netuid)), "--subtensor.chain_endpoint", w.node.Endpoint(),
		"--wallet.path", w.wallets, "--wallet.name", "validator", "--api.listen", "127.0.0.1:0", "--api.data", apiData,
		"--api.validator-data", t.TempDir(), "--api.tls-cert", pki.serverCert, "--api.tls-key", pki.serverKey, "--api.tls-client-ca", pki.ca)
	common := []string{"--api.url", api.match, "--api.token-file", token, "--api.ca", pki.ca}
	code, out, errs := runCLI(t, append([]string{"rent", "offers", "--json", "--api.client-cert", pki.clientCert, "--api.client-key", pki.clientKey}, common...)...)
	if code != 0 || !strings.Contains(out, `"offers":[]`) {
		t.Fatalf("offers over mutual TLS: %d %s %s", code, out, errs)
	}
	if code, _, errs := runCLI(t, append([]string{"rent", "offers"}, common...)...); code != 1 || !strings.Contains(errs, "could not be reached") {
		t.Fatalf("without a client certificate: %d %s", code, errs)
	}
	plain := strings.Replace(api.match, "https://", "http://", 1)
	if code, _, _ := runCLI(t, "rent", "offers", "--api.url", plain, "--api.token-file", token); code != 1 {
		t.Fatalf("plain HTTP to the TLS port: exit %d", code)
	}
}

// TestAPICommands checks the token commands and the usage mistakes of api
// and rent: exit 2 with a reason, nothing created.
func TestAPICommands(t *testing.T) {
	t.Setenv(apiTokenEnv, "")
	data := t.TempDir()
	_, secret := createToken(t, data, "ci", "read")
	code, out, _ := runCLI(t, "api", "token", "list", "--api.data", data, "--json")
	var list struct {
		Tokens []struct {
			ID        string `json:"id"`
			RevokedAt string `json:"revoked_at"`
		} `json:"tokens"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Tokens) != 1 || strings.Contains(out, secret) {
		t.Fatalf("token list: %d %s", code, out)
	}
	b, _ := os.ReadFile(filepath.Join(data, "api.db"))
	if strings.Contains(string(b), secret) {
		t.Fatal("the token is stored in clear")
	}
	if code, out, _ := runCLI(t, "api", "token", "revoke", list.Tokens[0].ID, "--api.data", data); code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %d %s", code, out)
	}
	if code, _, errs := runCLI(t, "api", "token", "revoke", "tok_nope", "--api.data", data); code != 1 || !strings.Contains(errs, "no token") {
		t.Fatalf("revoke unknown: %d %s", code, errs)
	}
	keyFile := newSSHKeyPair(t).pub
	for _, args := range [][]string{
		{"api", "token", "create", "--api.data", data},
		{"api", "token", "create", "--name", "x", "--scope", "root", "--api.data", data},
		{"api", "token", "create", "--name", "x y", "--api.data", data},
		{"api", "token", "create", "--name", "x", "--rate", "-5", "--api.data", data},
		{"api", "--api.tls-cert", "/nonexistent", "--api.data", data},
		{"rent", "offers"},
		{"rent", "offers", "--api.token-file", "/nonexistent"},
		{"rent", "create", "--api.token-file", keyFile},
		{"rent", "create", "--api.token-file", keyFile, "--ssh-key", "/nonexistent"},
		{"rent", "create", "--api.token-file", keyFile, "--ssh-key", keyFile, "--ram", "lots"},
		{"rent", "extend", "a1", "--api.token-file", keyFile, "--duration", "1s"},
		{"rent", "create", "--api.token-file", keyFile, "--ssh-key", keyFile, "--duration", "forever"},
		{"rent", "show", "--api.token-file", keyFile},
	} {
		if code, _, errs := runCLI(t, args...); code != 2 || !strings.Contains(errs, "error:") {
			t.Errorf("%v: exit %d %s, want 2", args, code, errs)
		}
	}
	code, out, _ = runCLI(t, "api", "token", "list", "--api.data", data)
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, "revoked") {
		t.Fatalf("a usage mistake created a token:\n%s", out)
	}
}
