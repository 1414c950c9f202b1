package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/allocations"
)

// allocCLI runs nicompute in-process and returns its exit code and output.
func allocCLI(tb testing.TB, args ...string) (int, string, string) {
	tb.Helper()
	var out, errb lockedBuffer
	code := Run(context.Background(), args, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// openSSH runs cmd on the lease with the system OpenSSH client, retrying
// briefly while the server comes up; it returns the last output and error.
func openSSH(tb testing.TB, keyFile, host string, port int, cmd string) (string, error) {
	tb.Helper()
	var out []byte
	var err error
	for range 20 {
		c := exec.Command("/usr/bin/ssh", "-i", keyFile, "-p", strconv.Itoa(port),
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
			"-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "root@"+host, cmd)
		out, err = c.CombinedOutput()
		if err == nil || strings.Contains(string(out), "Permission denied") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return string(out), err
}

// TestAllocateCLI drives the validator-side commands against an
// in-process miner on the real engine, logging in with /usr/bin/ssh:
// allocate, status, exchange-key, restart, list, deallocate.
func TestAllocateCLI(t *testing.T) {
	if _, err := os.Stat("/usr/bin/ssh"); err != nil {
		t.Skip("no OpenSSH client at /usr/bin/ssh")
	}
	w := newMinerWorld(t)
	e := newLeaseEnv(t, "t"+randHex(t, 6))
	startTestMinerProc(t, minerOpts(t, w, e))
	uid, ok, err := w.client.UIDForHotkey(context.Background(), w.netuid, w.minerKey.SS58())
	if err != nil || !ok {
		t.Fatalf("miner uid: %v", err)
	}
	common := []string{"--subtensor.chain_endpoint", w.node.Endpoint(), "--wallet.path", w.wallets, "--wallet.name", "validator",
		"--netuid", strconv.Itoa(int(w.netuid))}
	byUID := append(append([]string{}, common...), "--uid", strconv.Itoa(int(uid)))
	key := newSSHKeyPair(t)

	// Usage mistakes exit 2 and touch nothing.
	for _, args := range [][]string{
		append([]string{"allocate", "--ssh-key", key.pub}, common...),
		append([]string{"allocate", "--ssh-key", "/nonexistent"}, byUID...),
		append([]string{"allocate", "--ssh-key", key.file}, byUID...), // a private key is not a public key
		append([]string{"allocate", "--ssh-key", key.pub, "--ram", "lots"}, byUID...),
		append([]string{"allocate", "--ssh-key", key.pub, "--cpus", "-1"}, byUID...),
		append([]string{"allocation", "action", "explode"}, byUID...),
	} {
		if code, _, stderr := allocCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, stderr)
		}
	}

	code, stdout, stderr := allocCLI(t, append([]string{"allocate", "--ssh-key", key.pub, "--cpus", "1", "--ram", "256MiB",
		"--disk", "0", "--timeline", "1", "--password", "--json"}, byUID...)...)
	if code != 0 {
		t.Fatalf("allocate: exit %d: %s", code, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("allocate output %q: %v", stdout, err)
	}
	if want := "ssh -i " + key.file + " -p "; !strings.HasPrefix(got["ssh_command"].(string), want) {
		t.Errorf("ssh_command %q does not start with %q", got["ssh_command"], want)
	}
	if !strings.Contains(stderr, "asking miner uid") {
		t.Errorf("allocate showed no progress on stderr: %q", stderr)
	}
	for _, k := range []string{"uid", "hotkey", "host", "port", "username", "password"} {
		if _, ok := got[k]; !ok {
			t.Errorf("allocate JSON lacks %q: %s", k, stdout)
		}
	}
	host, _ := got["host"].(string)
	port := int(got["port"].(float64))
	if host != "127.0.0.1" || got["username"] != "root" || got["hotkey"] != w.minerKey.SS58() || int(got["uid"].(float64)) != int(uid) {
		t.Fatalf("allocate JSON %s", stdout)
	}
	if out, err := openSSH(t, key.file, host, port, "echo hi-from-openssh"); err != nil || !strings.Contains(out, "hi-from-openssh") {
		t.Fatalf("OpenSSH login: %q, %v", out, err)
	}
	pw, _ := got["password"].(string)
	if c, err := sshLogin(port, ssh.Password(pw), 5*time.Second); err != nil {
		t.Fatalf("password login: %v", err)
	} else {
		c.Close()
	}

	// The record and its key are private and hold no password.
	dir := allocations.Dir(w.wallets, "validator", "default")
	recs, err := allocations.List(dir)
	if err != nil || len(recs) != 1 || recs[0].Hotkey != w.minerKey.SS58() || recs[0].Port != port || recs[0].Pending || recs[0].LeaseID == "" {
		t.Fatalf("records %+v, %v", recs, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, en := range entries {
		info, _ := en.Info()
		b, _ := os.ReadFile(filepath.Join(dir, en.Name()))
		if info.Mode().Perm() != 0o600 || strings.Contains(string(b), pw) {
			t.Errorf("%s: mode %v, holds the password: %v", en.Name(), info.Mode().Perm(), strings.Contains(string(b), pw))
		}
	}
	if code, _, stderr := allocCLI(t, append([]string{"allocate", "--ssh-key", key.pub, "--ram", "256MiB"}, byUID...)...); code != 1 || !strings.Contains(stderr, "already hold") {
		t.Errorf("second allocate: exit %d: %s", code, stderr)
	}

	code, stdout, stderr = allocCLI(t, append([]string{"allocation", "status", "--json"}, byUID...)...)
	if code != 0 || !strings.Contains(stdout, `"alive":true`) || !strings.Contains(stdout, `"state":"running"`) {
		t.Fatalf("status: exit %d: %s %s", code, stdout, stderr)
	}

	key2 := newSSHKeyPair(t)
	if code, _, stderr := allocCLI(t, append([]string{"allocation", "action", "exchange-key", "--ssh-key", key2.pub}, byUID...)...); code != 0 {
		t.Fatalf("exchange-key: exit %d: %s", code, stderr)
	}
	if out, err := openSSH(t, key.file, host, port, "true"); err == nil {
		t.Fatalf("old key still logs in: %q", out)
	}
	if out, err := openSSH(t, key2.file, host, port, "echo new-key"); err != nil || !strings.Contains(out, "new-key") {
		t.Fatalf("new key: %q, %v", out, err)
	}
	if code, _, stderr := allocCLI(t, append([]string{"allocation", "action", "restart"}, byUID...)...); code != 0 {
		t.Fatalf("restart: exit %d: %s", code, stderr)
	}
	if out, err := openSSH(t, key2.file, host, port, "echo after-restart"); err != nil || !strings.Contains(out, "after-restart") {
		t.Fatalf("after restart: %q, %v", out, err)
	}

	code, stdout, _ = allocCLI(t, "allocation", "list", "--json", "--wallet.path", w.wallets, "--wallet.name", "validator")
	if code != 0 || !strings.Contains(stdout, w.minerKey.SS58()) || strings.Contains(stdout, pw) {
		t.Fatalf("list: exit %d: %s", code, stdout)
	}

	code, stdout, stderr = allocCLI(t, append([]string{"deallocate", "--json"}, byUID...)...)
	if code != 0 || !strings.Contains(stdout, `"deallocated":true`) {
		t.Fatalf("deallocate: exit %d: %s %s", code, stdout, stderr)
	}
	if recs, _ := allocations.List(dir); len(recs) != 0 {
		t.Fatalf("records after deallocate: %+v", recs)
	}
	if cs := e.containers(t); len(cs) != 0 {
		t.Fatalf("containers after deallocate: %+v", cs)
	}
	if code, _, stderr := allocCLI(t, append([]string{"deallocate"}, byUID...)...); code != 1 || !strings.Contains(stderr, "no allocation of yours") {
		t.Fatalf("deallocate again: exit %d: %s", code, stderr)
	}
}
