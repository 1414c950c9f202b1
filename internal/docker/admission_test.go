package docker_test

import (
	"crypto/rand"
	"crypto/rsa"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/nictest"
)

// sshFlood is the size of the flood held against a lease's SSH port: three
// times the server's limit on unauthenticated connections.
const sshFlood = 300

// TestSSHAdmissionUnderFlood runs a real lease and reaches its SSH server
// through the published port, where Docker's port proxy gives every client
// the same source address. The lease offers only modern algorithms, and
// its owner logs in with the OpenSSH client while a flood of 300
// unauthenticated connections (idle, stalled after the version line,
// stalled in authentication; reopened whenever the server closes them) is
// held against the port.
func TestSSHAdmissionUnderFlood(t *testing.T) {
	t.Parallel()
	nictest.RequireOpenSSH(t)
	e := newEnv(t)
	ctx := t.Context()
	signer, keyFile := nictest.SSHKeyFile(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaSigner, rsaKeyFile := nictest.WriteOpenSSHKey(t, rsaKey)
	s := e.spec(t, "flood", signer.PublicKey(), rsaSigner.PublicKey())
	if _, err := e.rt.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Start(ctx, s.LeaseID); err != nil {
		t.Fatal(err)
	}
	waitSSH(t, s.SSHPort)

	t.Run("algorithms", func(t *testing.T) {
		for _, key := range []string{keyFile, rsaKeyFile} {
			if out, errOut, code := nictest.OpenSSH(t, "127.0.0.1", s.SSHPort, key, nil, "echo", "ok"); code != 0 || strings.TrimSpace(out) != "ok" {
				t.Fatalf("OpenSSH with its defaults and %s: exit %d, %q, %s", key, code, out, errOut)
			}
		}
		for _, tt := range []struct {
			key  string
			opts []string
			want string // in OpenSSH's error
		}{
			{keyFile, []string{"-o", "KexAlgorithms=diffie-hellman-group14-sha1"}, "no matching key exchange method"},
			{keyFile, []string{"-o", "KexAlgorithms=diffie-hellman-group1-sha1"}, "no matching key exchange method"},
			{keyFile, []string{"-o", "KexAlgorithms=diffie-hellman-group16-sha512"}, "no matching key exchange method"},
			{keyFile, []string{"-o", "Ciphers=aes128-ctr", "-o", "MACs=hmac-sha1"}, "no matching MAC"},
			{keyFile, []string{"-o", "Ciphers=aes128-ctr", "-o", "MACs=hmac-sha1-96"}, "no matching MAC"},
			{keyFile, []string{"-o", "Ciphers=aes128-cbc"}, "no matching cipher"},
			{rsaKeyFile, []string{"-o", "PubkeyAcceptedAlgorithms=ssh-rsa"}, "Permission denied"},
		} {
			_, errOut, code := nictest.OpenSSH(t, "127.0.0.1", s.SSHPort, tt.key, append([]string{"-o", "LogLevel=INFO"}, tt.opts...), "true")
			if code == 0 || !strings.Contains(errOut, tt.want) {
				t.Errorf("OpenSSH with %v: exit %d, %q; want refused with %q", tt.opts, code, errOut, tt.want)
			}
		}
	})

	t.Run("flood", func(t *testing.T) {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.SSHPort))
		f := nictest.StartSSHFlood(t, addr, sshFlood)
		f.WaitOpen(t, sshFlood/3)
		for i := range 3 {
			start := time.Now()
			out, errOut, code := nictest.OpenSSH(t, "127.0.0.1", s.SSHPort, keyFile, nil, "echo", "in")
			if code != 0 || strings.TrimSpace(out) != "in" {
				t.Fatalf("owner's login %d during the flood: exit %d, %q, %s", i, code, out, errOut)
			}
			t.Logf("owner's login %d during the flood took %v (flood opened %d connections so far)", i, time.Since(start).Round(time.Millisecond), f.Opened())
		}
		f.Stop()
	})
}
