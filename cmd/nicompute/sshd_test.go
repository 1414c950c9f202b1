//go:build linux

package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/sshd"
)

// sshdLog collects the command's log output across goroutines.
type sshdLog = nictest.SyncBuffer

// TestSSHDCommand runs `nicompute sshd` as the container entrypoint would,
// logs in with a key and stops it by cancelling its context (SIGTERM in
// main).
func TestSSHDCommand(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, sshd.AuthorizedKeysFile), ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NICOMPUTE_SSHD_TEST_SECRET", "not-for-sessions")
	t.Setenv("SSHD_TEST_IMAGE_VAR", "from-image")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs sshdLog
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"sshd", "--dir", dir, "--listen", "127.0.0.1:0", "--shutdown-grace", "1s", "--logging.format", "json"},
			Stdio{In: strings.NewReader(""), Out: &logs, Err: &logs})
	}()
	addrRE := regexp.MustCompile(`"msg":"listening","addr":"([^"]+)"`)
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == "" && time.Now().Before(deadline); {
		if m := addrRE.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case code := <-done:
			t.Fatalf("sshd exited %d: %s", code, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if addr == "" {
		t.Fatalf("sshd did not log its address: %s", logs.String())
	}
	if _, err := os.Stat(filepath.Join(dir, sshd.HostKeyFile)); err != nil {
		t.Errorf("host key not created: %v", err)
	}

	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Output(`printf '%s|%s' "$SSHD_TEST_IMAGE_VAR" "$NICOMPUTE_SSHD_TEST_SECRET"`)
	if err != nil || string(out) != "from-image|" {
		t.Errorf("session environment %q, %v; want the image's variables without NICOMPUTE_*", out, err)
	}
	c.Close()

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d: %s", code, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("sshd did not stop after its context was cancelled")
	}
	if !strings.Contains(logs.String(), "ssh server stopped") {
		t.Errorf("no shutdown in the log: %s", logs.String())
	}
}

func TestSSHDCommandBadFlags(t *testing.T) {
	var out sshdLog
	code := Run(context.Background(), []string{"sshd", "--dir", t.TempDir(), "--listen", "127.0.0.1:notaport"},
		Stdio{In: strings.NewReader(""), Out: &out, Err: &out})
	if code != 1 || !strings.Contains(out.String(), "listen on 127.0.0.1:notaport") {
		t.Errorf("exit %d, output %q", code, out.String())
	}
	code = Run(context.Background(), []string{"sshd", "--max-startups", "-1", "--dir", t.TempDir()},
		Stdio{In: strings.NewReader(""), Out: &out, Err: &out})
	if code != 1 {
		t.Errorf("negative limit: exit %d", code)
	}
}

// TestSSHDSHA256 is the helper a validator runs in its test lease: the
// hash of a regular file, refusals for anything else, and the command
// line the validator sends (protocol.HashCommand) naming this helper at
// the path where every lease has the binary.
func TestSSHDSHA256(t *testing.T) {
	t.Parallel()
	if want := sshd.BinaryPath + " sshd sha256"; protocol.HashCommand != want {
		t.Fatalf("protocol.HashCommand = %q, want %q", protocol.HashCommand, want)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "worker")
	data := []byte("worker bytes\n")
	if err := os.WriteFile(file, data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(file, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"regular file", []string{file}, 0, hex.EncodeToString(sum[:]) + "\n"},
		{"missing", []string{filepath.Join(dir, "absent")}, 1, ""},
		{"directory", []string{dir}, 1, ""},
		{"symbolic link", []string{filepath.Join(dir, "link")}, 1, ""},
		{"no file named", nil, 2, ""},
	}
	for _, tt := range tests {
		var out, errb sshdLog
		code := Run(context.Background(), append([]string{"sshd", "sha256"}, tt.args...), Stdio{In: strings.NewReader(""), Out: &out, Err: &errb})
		if code != tt.code || out.String() != tt.out {
			t.Errorf("%s: exit %d, output %q (%s); want %d, %q", tt.name, code, out.String(), errb.String(), tt.code, tt.out)
		}
	}
}
