package nictest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHKeyFile returns a fresh ed25519 signer and the path of its private
// key in OpenSSH format (mode 0600), for the OpenSSH client.
func SSHKeyFile(tb testing.TB) (ssh.Signer, string) {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatalf("ed25519 key: %v", err)
	}
	return WriteOpenSSHKey(tb, priv)
}

// WriteOpenSSHKey writes priv (an ed25519, RSA or ECDSA private key) in
// OpenSSH format, mode 0600, to a temporary file and returns its signer
// and the file's path.
func WriteOpenSSHKey(tb testing.TB, priv crypto.Signer) (ssh.Signer, string) {
	tb.Helper()
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		tb.Fatalf("ssh signer: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		tb.Fatalf("marshal key: %v", err)
	}
	path := filepath.Join(tb.TempDir(), "id_key")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		tb.Fatal(err)
	}
	return signer, path
}

// RequireOpenSSH returns the path of the OpenSSH client, skipping the test
// when it is not installed.
func RequireOpenSSH(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("ssh")
	if err != nil {
		tb.Skipf("OpenSSH client not installed: %v", err)
	}
	return p
}

// OpenSSH runs the OpenSSH client as root@host -p port with keyFile,
// non-interactively and trusting any host key, and the remote command argv.
// opts come first, so they override the helper's own options (OpenSSH keeps
// the first value of an option). It returns stdout, stderr and the exit
// code (255 when ssh itself failed).
func OpenSSH(tb testing.TB, host string, port int, keyFile string, opts []string, argv ...string) (string, string, int) {
	tb.Helper()
	bin := RequireOpenSSH(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append(opts[:len(opts):len(opts)],
		"-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes",
		"-o", "LogLevel=ERROR",
		"-o", "ConnectTimeout=20",
		"-i", keyFile,
		"-p", strconv.Itoa(port),
		"root@"+host,
	)
	args = append(args, argv...)
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	case err != nil:
		tb.Fatalf("run ssh: %v", err)
	}
	return out.String(), errb.String(), 0
}
