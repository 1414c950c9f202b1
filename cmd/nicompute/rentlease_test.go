package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nicompute/nicompute/internal/rental"
)

// TestRentSSHArgv checks the OpenSSH command line of rent ssh: the
// user's options first (OpenSSH keeps the first value), the key the
// allocation lists found in ~/.ssh, "--" before the destination.
func TestRentSSHArgv(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	key := newSSHKeyPair(t)
	other := newSSHKeyPair(t)
	dir := filepath.Join(home, ".ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]sshKeyPair{"id_other": other, "id_mine": key} {
		b, _ := os.ReadFile(k.file)
		os.WriteFile(filepath.Join(dir, name), b, 0o600)
		os.WriteFile(filepath.Join(dir, name+".pub"), []byte(k.line+" me@host\n"), 0o644)
	}
	al := rental.Allocation{Host: "10.0.0.5", Port: 40022, Username: "root", SSHKeys: []string{key.line + " laptop"}}
	id := findIdentity(al.SSHKeys)
	if id != filepath.Join(dir, "id_mine") {
		t.Fatalf("identity %q", id)
	}
	if got := findIdentity([]string{"ssh-ed25519 AAAAnotmine"}); got != "" {
		t.Fatalf("identity for an unknown key: %q", got)
	}
	argv := sshArgv(al, id, []string{"UserKnownHostsFile=/dev/null"}, []string{"nvidia-smi", "-L"})
	want := []string{"ssh", "-o", "UserKnownHostsFile=/dev/null", "-p", "40022", "-o", "StrictHostKeyChecking=accept-new",
		"-i", id, "--", "root@10.0.0.5", "nvidia-smi", "-L"}
	if !slices.Equal(argv, want) {
		t.Fatalf("argv\n%q\nwant\n%q", argv, want)
	}
}
