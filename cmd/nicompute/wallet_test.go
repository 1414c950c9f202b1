package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/creack/pty"
)

const (
	walletAlice = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
	walletBob   = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
)

type walletResult struct {
	code           int
	stdout, stderr string
}

// walletRun runs the nicompute command line with stdin as input.
func walletRun(tb testing.TB, stdin string, args ...string) walletResult {
	tb.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, Stdio{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return walletResult{code: code, stdout: out.String(), stderr: errb.String()}
}

// walletOK runs a command that must succeed.
func walletOK(tb testing.TB, stdin string, args ...string) string {
	tb.Helper()
	r := walletRun(tb, stdin, args...)
	if r.code != 0 {
		tb.Fatalf("nicompute %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// walletTree maps every file under dir to its content.
func walletTree(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		out[strings.TrimPrefix(path, dir)] = string(b)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func clearWalletEnv(tb testing.TB) {
	tb.Helper()
	tb.Setenv(passwordEnv, "")
	os.Unsetenv(passwordEnv)
}

func TestWalletRegenAndShow(t *testing.T) {
	clearWalletEnv(t)
	dir := t.TempDir()
	wp := []string{"--wallet.path", dir, "--wallet.name", "w1"}

	out := walletOK(t, "", append([]string{"wallet", "regen-hotkey", "--uri", "//Alice"}, wp...)...)
	if !strings.Contains(out, walletAlice) {
		t.Fatalf("regen-hotkey output %q lacks %s", out, walletAlice)
	}
	walletOK(t, "", append([]string{"wallet", "regen-coldkeypub", "--ss58", walletBob}, wp...)...)

	out = walletOK(t, "", append([]string{"wallet", "show", "--json"}, wp...)...)
	var shown map[string]string
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("show --json: %v: %q", err, out)
	}
	if want := map[string]string{"coldkey": walletBob, "hotkey": walletAlice}; !reflect.DeepEqual(shown, want) {
		t.Fatalf("show --json = %v, want %v", shown, want)
	}

	// The loaders other commands use.
	a := &app{Stdio: Stdio{In: strings.NewReader(""), Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}}
	wf := walletFlags{path: dir, name: "w1", hotkey: "default"}
	hk, err := a.loadHotkey(wf)
	if err != nil || hk.SS58() != walletAlice {
		t.Fatalf("loadHotkey = %v, %v", hk, err)
	}
	if addr, err := a.coldkeyAddress(wf); err != nil || addr != walletBob {
		t.Fatalf("coldkeyAddress = %s, %v", addr, err)
	}
	if _, err := a.loadColdkey(wf); err == nil || !strings.Contains(err.Error(), "no coldkey") {
		t.Fatalf("loadColdkey without a coldkey file: %v", err)
	}

	// Seed and mnemonic give the same key as the URI they stand for.
	walletOK(t, "", "wallet", "regen-hotkey", "--wallet.path", dir, "--wallet.name", "w2",
		"--seed", "0xe5be9a5092b81bca64be81d212e7f2f9eba183bb7a90954f7b76361f6edb5c0a")
	walletOK(t, "", "wallet", "regen-coldkey", "--wallet.path", dir, "--wallet.name", "w2", "--no-password",
		"--mnemonic", "bottom drive obey lake curtain smoke basket hold race lonely fit walk")
	out = walletOK(t, "", "wallet", "show", "--json", "--wallet.path", dir, "--wallet.name", "w2")
	if want := `{"coldkey":"5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV","hotkey":"` + walletAlice + `"}` + "\n"; out != want {
		t.Fatalf("show --json = %q, want %q", out, want)
	}
	wf2 := walletFlags{path: dir, name: "w2", hotkey: "default"}
	if ck, err := a.loadColdkey(wf2); err != nil || ck.SS58() != "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV" {
		t.Fatalf("loadColdkey (unencrypted) = %v, %v", ck, err)
	}

	out = walletOK(t, "", "wallet", "show", "--wallet.path", dir, "--wallet.name", "w2")
	if !strings.Contains(out, walletAlice) || !strings.Contains(out, "5DfhGyQd") {
		t.Fatalf("show: %q", out)
	}
}

func TestWalletNewKeys(t *testing.T) {
	clearWalletEnv(t)
	dir := t.TempDir()
	out := walletOK(t, "", "wallet", "new-coldkey", "--no-password", "--json", "--wallet.path", dir, "--wallet.name", "fresh")
	var created struct{ Coldkey, Mnemonic string }
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(created.Mnemonic)); n != 12 {
		t.Fatalf("mnemonic has %d words", n)
	}
	// The printed mnemonic restores the same coldkey.
	walletOK(t, "", "wallet", "regen-coldkey", "--no-password", "--mnemonic", created.Mnemonic, "--wallet.path", dir, "--wallet.name", "restored")
	walletOK(t, "", "wallet", "new-hotkey", "--wallet.path", dir, "--wallet.name", "restored", "--wallet.hotkey", "h24", "--n-words", "24")
	out = walletOK(t, "", "wallet", "show", "--json", "--wallet.path", dir, "--wallet.name", "restored", "--wallet.hotkey", "h24")
	var shown map[string]string
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatal(err)
	}
	if shown["coldkey"] != created.Coldkey {
		t.Fatalf("restored coldkey %s, created %s", shown["coldkey"], created.Coldkey)
	}
	// Text mode prints the mnemonic once with the address.
	out = walletOK(t, "", "wallet", "new-hotkey", "--wallet.path", dir, "--wallet.name", "restored", "--wallet.hotkey", "h12")
	if !strings.Contains(out, "mnemonic") || !strings.Contains(out, "h12") {
		t.Fatalf("new-hotkey output: %q", out)
	}

	out = walletOK(t, "", "wallet", "list", "--json", "--wallet.path", dir)
	var list []struct {
		Name    string
		Coldkey string
		Hotkeys []struct{ Name, Hotkey string }
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("list --json: %v: %s", err, out)
	}
	if len(list) != 2 || list[0].Name != "fresh" || list[1].Name != "restored" || list[1].Coldkey != created.Coldkey ||
		len(list[1].Hotkeys) != 2 || list[1].Hotkeys[0].Name != "h12" || list[1].Hotkeys[1].Hotkey != shown["hotkey"] {
		t.Fatalf("list --json = %+v", list)
	}
	out = walletOK(t, "", "wallet", "list", "--wallet.path", dir)
	if !strings.Contains(out, "restored") || !strings.Contains(out, shown["hotkey"]) {
		t.Fatalf("list: %q", out)
	}
	if out := walletOK(t, "", "wallet", "list", "--json", "--wallet.path", filepath.Join(dir, "none")); out != "[]\n" {
		t.Fatalf("list of a missing path: %q", out)
	}
}

// TestWalletFailuresTouchNothing checks exit codes and that a failed command
// leaves the wallet directory byte-identical.
func TestWalletFailuresTouchNothing(t *testing.T) {
	clearWalletEnv(t)
	dir := t.TempDir()
	wp := []string{"--wallet.path", dir, "--wallet.name", "w"}
	walletOK(t, "", append([]string{"wallet", "regen-hotkey", "--uri", "//Alice"}, wp...)...)
	walletOK(t, "", append([]string{"wallet", "regen-coldkey", "--uri", "//Bob", "--no-password"}, wp...)...)
	before := walletTree(t, dir)

	tests := []struct {
		name     string
		stdin    string
		args     []string
		code     int
		errMatch string
	}{
		{"hotkey exists", "", []string{"wallet", "regen-hotkey", "--uri", "//Bob"}, 1, "already exists (use --overwrite"},
		{"new hotkey exists", "", []string{"wallet", "new-hotkey"}, 1, "already exists"},
		{"coldkey exists", "", []string{"wallet", "regen-coldkey", "--uri", "//Alice", "--no-password"}, 1, "already exists"},
		{"coldkey exists, no password asked", "", []string{"wallet", "new-coldkey"}, 1, "already exists"},
		{"coldkeypub exists", "", []string{"wallet", "regen-coldkeypub", "--ss58", walletAlice}, 1, "already exists"},
		{"bad mnemonic checksum", "", []string{"wallet", "regen-hotkey", "--wallet.hotkey", "new", "--mnemonic",
			"bottom drive obey lake curtain smoke basket hold race lonely fit fit"}, 1, "invalid mnemonic"},
		{"two secrets", "", []string{"wallet", "regen-hotkey", "--wallet.hotkey", "new", "--uri", "//Bob", "--seed", "0x00"}, 2, "exactly one"},
		{"no secret", "", []string{"wallet", "regen-coldkey", "--wallet.name", "other"}, 2, "exactly one"},
		{"seed without 0x", "", []string{"wallet", "regen-hotkey", "--wallet.hotkey", "new", "--seed", strings.Repeat("ab", 32)}, 1, "0x"},
		{"short seed", "", []string{"wallet", "regen-hotkey", "--wallet.hotkey", "new", "--seed", "0xabcd"}, 1, "32 bytes"},
		{"bad uri", "", []string{"wallet", "regen-hotkey", "--wallet.hotkey", "new", "--uri", "not a phrase//x"}, 1, "invalid mnemonic"},
		{"no password on stdin", "", []string{"wallet", "regen-coldkey", "--wallet.name", "other", "--uri", "//Bob"}, 1, "a password is needed"},
		{"empty password line", "\n", []string{"wallet", "new-coldkey", "--wallet.name", "other"}, 1, "empty password"},
		{"password flags clash", "", []string{"wallet", "new-coldkey", "--wallet.name", "other", "--no-password", "--password-file", "x"}, 2, "exclude"},
		{"missing password file", "", []string{"wallet", "new-coldkey", "--wallet.name", "other", "--password-file", filepath.Join(dir, "nope")}, 1, "password file"},
		{"bad word count", "", []string{"wallet", "new-hotkey", "--wallet.hotkey", "new", "--n-words", "13"}, 2, "--n-words"},
		{"bad ss58", "", []string{"wallet", "regen-coldkeypub", "--wallet.name", "other", "--ss58", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ"}, 1, "invalid SS58"},
		{"bad public key", "", []string{"wallet", "regen-coldkeypub", "--wallet.name", "other", "--public-key", "0x1234"}, 1, "--public-key"},
		{"ss58 and public key", "", []string{"wallet", "regen-coldkeypub", "--wallet.name", "other", "--ss58", walletAlice, "--public-key", "0x00"}, 2, "exactly one"},
		{"show missing wallet", "", []string{"wallet", "show", "--wallet.name", "nobody"}, 1, "no coldkeypub.txt"},
		{"show missing hotkey", "", []string{"wallet", "show", "--wallet.hotkey", "nobody"}, 1, "no hotkey nobody"},
		{"path traversal", "", []string{"wallet", "regen-hotkey", "--wallet.hotkey", "../../x", "--uri", "//Bob"}, 1, "invalid hotkey name"},
		{"unknown flag", "", []string{"wallet", "show", "--password", "x"}, 2, "unknown flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{}, tt.args...), "--wallet.path", dir)
			if !walletHasFlag(tt.args, "--wallet.name") {
				args = append(args, "--wallet.name", "w")
			}
			r := walletRun(t, tt.stdin, args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tt.code, r.stdout, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "error: ") || !strings.Contains(r.stderr, tt.errMatch) {
				t.Fatalf("stderr %q lacks %q", r.stderr, tt.errMatch)
			}
			if after := walletTree(t, dir); !reflect.DeepEqual(before, after) {
				t.Fatalf("files changed:\nbefore %v\nafter  %v", walletKeysOf(before), walletKeysOf(after))
			}
		})
	}
}

func walletHasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag {
			return true
		}
	}
	return false
}

func walletKeysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestWalletSecretFromStdin(t *testing.T) {
	clearWalletEnv(t)
	dir := t.TempDir()
	walletOK(t, "//Alice\n", "wallet", "regen-hotkey", "--uri", "-", "--wallet.path", dir)
	walletOK(t, "bottom drive obey lake curtain smoke basket hold race lonely fit walk\n",
		"wallet", "regen-coldkey", "--mnemonic", "-", "--no-password", "--wallet.path", dir)
	out := walletOK(t, "", "wallet", "show", "--json", "--wallet.path", dir)
	if want := `{"coldkey":"5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV","hotkey":"` + walletAlice + `"}` + "\n"; out != want {
		t.Fatalf("show --json = %q, want %q", out, want)
	}
	if r := walletRun(t, "\n", "wallet", "regen-hotkey", "--seed", "-", "--wallet.path", dir, "--wallet.hotkey", "x"); r.code != 1 || !strings.Contains(r.stderr, "empty secret") {
		t.Fatalf("empty stdin secret: %+v", r)
	}
}

func TestWalletOverwrite(t *testing.T) {
	clearWalletEnv(t)
	dir := t.TempDir()
	wp := []string{"--wallet.path", dir}
	walletOK(t, "", append([]string{"wallet", "regen-hotkey", "--uri", "//Alice"}, wp...)...)
	walletOK(t, "", append([]string{"wallet", "regen-hotkey", "--uri", "//Bob", "--overwrite"}, wp...)...)
	walletOK(t, "", append([]string{"wallet", "regen-coldkeypub", "--public-key",
		"0xd43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"}, wp...)...)
	out := walletOK(t, "", append([]string{"wallet", "show", "--json"}, wp...)...)
	if want := `{"coldkey":"` + walletAlice + `","hotkey":"` + walletBob + `"}` + "\n"; out != want {
		t.Fatalf("show --json = %q, want %q", out, want)
	}
}

// TestWalletEncryptedColdkey runs the real Argon2i costs (a few seconds per
// derivation): create with a password file, load with the environment
// variable, fail with a wrong password from stdin.
func TestWalletEncryptedColdkey(t *testing.T) {
	if testing.Short() {
		t.Skip("three Argon2i derivations of 512 MiB")
	}
	clearWalletEnv(t)
	dir := t.TempDir()
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("  s3cret pass \nignored second line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	walletOK(t, "", "wallet", "regen-coldkey", "--uri", "//Bob", "--password-file", pwFile, "--wallet.path", dir)
	raw, err := os.ReadFile(filepath.Join(dir, "default", "coldkey"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte("$NACL")) {
		t.Fatalf("coldkey not encrypted: %.20q", raw)
	}
	info, err := os.Stat(filepath.Join(dir, "default", "coldkey"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("coldkey mode: %v %v", info.Mode(), err)
	}

	wf := walletFlags{path: dir, name: "default", hotkey: "default"}
	var errb bytes.Buffer
	a := &app{Stdio: Stdio{In: strings.NewReader("wrong\n"), Out: &bytes.Buffer{}, Err: &errb}}
	if _, err := a.loadColdkey(wf); err == nil || !strings.Contains(err.Error(), "wrong password") {
		t.Fatalf("wrong password: %v", err)
	}
	if strings.Contains(errb.String(), "wrong") {
		t.Fatalf("password echoed: %q", errb.String())
	}
	// Surrounding whitespace is trimmed, as btwallet does.
	t.Setenv(passwordEnv, "s3cret pass")
	kp, err := a.loadColdkey(wf)
	if err != nil || kp.SS58() != walletBob {
		t.Fatalf("loadColdkey = %v, %v", kp, err)
	}
}

func TestReadLineLeavesRest(t *testing.T) {
	r := strings.NewReader("first\r\nsecond\nthird")
	for _, want := range []string{"first", "second", "third"} {
		got, err := readSecretLine(r)
		if err != nil || string(got) != want {
			t.Fatalf("readSecretLine = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := readSecretLine(r); err == nil {
		t.Fatal("readSecretLine at EOF succeeded")
	}
	if _, err := readSecretLine(strings.NewReader(strings.Repeat("x", maxPasswordLen+10))); err == nil {
		t.Fatal("over-long line accepted")
	}
}

// TestPasswordPromptOnTerminal drives the terminal prompt through a pseudo
// terminal: asked twice when creating a key, mismatches refused.
func TestPasswordPromptOnTerminal(t *testing.T) {
	clearWalletEnv(t)
	tests := []struct {
		name, typed string
		confirm     bool
		want        string
		wantErr     string
	}{
		{"once", "  hunter2 \n", false, "hunter2", ""},
		{"twice", "hunter2\nhunter2\n", true, "hunter2", ""},
		{"mismatch", "hunter2\nhunter3\n", true, "", "do not match"},
		{"empty", "\n", false, "", "empty password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ptmx, tty, err := pty.Open()
			if err != nil {
				t.Skipf("no pseudo terminal: %v", err)
			}
			defer ptmx.Close()
			defer tty.Close()
			go io.Copy(io.Discard, ptmx) // drain echo, if any
			if _, err := ptmx.Write([]byte(tt.typed)); err != nil {
				t.Fatal(err)
			}
			var prompts bytes.Buffer
			a := &app{Stdio: Stdio{In: tty, Out: &bytes.Buffer{}, Err: &prompts}}
			pw, err := a.readPassword(passwordSource{confirm: tt.confirm}, "Password: ")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("readPassword = %q, %v; want error %q", pw, err, tt.wantErr)
				}
			} else if err != nil || string(pw) != tt.want {
				t.Fatalf("readPassword = %q, %v; want %q", pw, err, tt.want)
			}
			if !strings.Contains(prompts.String(), "Password: ") || strings.Contains(prompts.String(), "hunter") {
				t.Fatalf("prompt output %q", prompts.String())
			}
			if tt.confirm && !strings.Contains(prompts.String(), "Retype") {
				t.Fatalf("no confirmation prompt: %q", prompts.String())
			}
		})
	}
}
