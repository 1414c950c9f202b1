package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/nictest"
)

// walletShow runs `wallet show --json` with the given arguments and
// returns the exit code, the JSON object it printed and stderr.
func walletShow(t *testing.T, args ...string) (int, map[string]any, string) {
	t.Helper()
	return cliJSON(t, append([]string{"wallet", "show", "--json"}, args...)...)
}

// cliJSON runs nicompute with args and returns the exit code, the JSON
// object printed on success and stderr.
func cliJSON(t *testing.T, args ...string) (int, map[string]any, string) {
	t.Helper()
	code, out, errOut := runCLI(t, args...)
	var m map[string]any
	if code == 0 {
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("nicompute %s: output %q: %v", strings.Join(args, " "), out, err)
		}
	}
	return code, m, errOut
}

func TestConfigPrecedence(t *testing.T) {
	clearWalletEnv(t)
	dir := t.TempDir()
	for _, w := range []struct{ name, uri string }{{"fromfile", "//Alice"}, {"fromenv", "//Bob"}, {"fromflag", "//Charlie"}} {
		if code, _, errOut := runCLI(t, "wallet", "regen-coldkey", "--uri", w.uri, "--no-password", "--wallet.path", dir, "--wallet.name", w.name); code != 0 {
			t.Fatalf("regen-coldkey: %s", errOut)
		}
		if code, _, errOut := runCLI(t, "wallet", "regen-hotkey", "--uri", w.uri, "--wallet.path", dir, "--wallet.name", w.name); code != 0 {
			t.Fatalf("regen-hotkey: %s", errOut)
		}
	}
	alice, bob, charlie := mustAddr(t, "//Alice"), mustAddr(t, "//Bob"), mustAddr(t, "//Charlie")

	nested := filepath.Join(dir, "nested.yaml")
	os.WriteFile(nested, []byte("wallet:\n  path: "+dir+"\n  name: fromfile\n"), 0o600)
	dotted := filepath.Join(dir, "dotted.yaml")
	os.WriteFile(dotted, []byte("wallet.path: "+dir+"\nwallet.name: fromfile\n"), 0o600)

	for _, cfg := range []string{nested, dotted} {
		if code, m, errOut := walletShow(t, "--config", cfg); code != 0 || m["hotkey"] != alice {
			t.Fatalf("config %s: exit %d, %v, %s; want //Alice's hotkey", filepath.Base(cfg), code, m, errOut)
		}
	}
	// The environment overrides the file.
	t.Setenv("NICOMPUTE_WALLET_NAME", "fromenv")
	if _, m, _ := walletShow(t, "--config", nested); m["hotkey"] != bob {
		t.Fatalf("environment did not override the config file: %v", m)
	}
	// The command line overrides both.
	if _, m, _ := walletShow(t, "--config", nested, "--wallet.name", "fromflag"); m["hotkey"] != charlie {
		t.Fatalf("flag did not override environment and file: %v", m)
	}
	// NICOMPUTE_CONFIG names the file when --config is absent.
	t.Setenv("NICOMPUTE_WALLET_NAME", "")
	os.Unsetenv("NICOMPUTE_WALLET_NAME")
	t.Setenv("NICOMPUTE_CONFIG", dotted)
	if _, m, _ := walletShow(t); m["hotkey"] != alice {
		t.Fatalf("NICOMPUTE_CONFIG not read: %v", m)
	}
}

// writeTestFile writes body to dir/name and returns the path.
func writeTestFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigErrors(t *testing.T) {
	clearWalletEnv(t)
	dir := t.TempDir()
	write := func(name, body string) string { return writeTestFile(t, dir, name, body) }
	tests := []struct {
		name, file, want string
	}{
		{"unknown key", write("unknown.yaml", "wallet:\n  nmae: x\n"), `unknown key "wallet.nmae"`},
		{"bad value", write("bad.yaml", "logging:\n  debug: maybe\n"), "logging.debug"},
		{"not yaml", write("broken.yaml", "wallet: [\n"), "config file"},
		{"scalar root", write("scalar.yaml", "hello\n"), "mapping"},
		{"missing", filepath.Join(dir, "absent.yaml"), "read config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, "wallet", "show", "--json", "--config", tt.file)
			if code != 2 || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 mentioning %q", code, errOut, tt.want)
			}
		})
	}
	t.Setenv("NICOMPUTE_LOGGING_DEBUG", "perhaps")
	if code, _, errOut := runCLI(t, "version"); code != 2 || !strings.Contains(errOut, "NICOMPUTE_LOGGING_DEBUG") {
		t.Fatalf("bad environment value: exit %d, %q", code, errOut)
	}
}

func TestEnvName(t *testing.T) {
	for flag, want := range map[string]string{
		"wallet.name":                           "NICOMPUTE_WALLET_NAME",
		"subtensor.chain_endpoint":              "NICOMPUTE_SUBTENSOR_CHAIN_ENDPOINT",
		"miner.whitelist.not.enough.stake":      "NICOMPUTE_MINER_WHITELIST_NOT_ENOUGH_STAKE",
		"validator.whitelist.updated.threshold": "NICOMPUTE_VALIDATOR_WHITELIST_UPDATED_THRESHOLD",
		"block-time":                            "NICOMPUTE_BLOCK_TIME",
	} {
		if got := envName(flag); got != want {
			t.Errorf("envName(%q) = %q, want %q", flag, got, want)
		}
	}
}

func TestVersionCommand(t *testing.T) {
	code, out, _ := runCLI(t, "version", "--json")
	var v map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v["version"] == "" || v["commit"] == "" || !strings.HasPrefix(v["go_version"], "go") {
		t.Fatalf("version --json: exit %d, %q", code, out)
	}
	if code, out, _ := runCLI(t, "version"); code != 0 || !strings.HasPrefix(out, "nicompute ") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}

func TestLoggingLevels(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		debug   bool
		trace   bool
		jsonFmt bool
	}{
		{nil, false, false, false},
		{[]string{"--logging.debug"}, true, false, false},
		{[]string{"--logging.trace"}, true, true, false},
		{[]string{"--logging.format", "json"}, false, false, true},
	} {
		a := &app{Stdio: Stdio{Out: &lockedBuffer{}, Err: &lockedBuffer{}}}
		root := a.rootCmd()
		root.SetArgs(append([]string{"version"}, tt.args...))
		root.SetOut(&lockedBuffer{})
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		if got := a.logger().Enabled(ctx, -4); got != tt.debug {
			t.Errorf("%v: debug enabled = %v", tt.args, got)
		}
		if got := a.logger().Enabled(ctx, levelTrace); got != tt.trace {
			t.Errorf("%v: trace enabled = %v", tt.args, got)
		}
		a.logger().Info("probe")
		if isJSON := strings.HasPrefix(a.Err.(*lockedBuffer).String(), "{"); isJSON != tt.jsonFmt {
			t.Errorf("%v: JSON output = %v", tt.args, isJSON)
		}
	}
}

// TestSignalStopsChain runs the real binary and checks that SIGTERM and
// SIGINT stop a daemon cleanly (exit 0) with its state kept.
func TestSignalStopsChain(t *testing.T) {
	bin := nictest.BuildNicompute(t)
	dir := t.TempDir()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(bin, "chain", "--data", dir, "--chain.listen", "127.0.0.1:0", "--block-time", "10ms")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr lockedBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line := make(chan string, 1)
		go func() {
			s := bufio.NewScanner(stdout)
			if s.Scan() {
				line <- s.Text()
			}
			for s.Scan() {
			}
		}()
		select {
		case l := <-line:
			if !strings.Contains(l, "http://127.0.0.1:") {
				t.Fatalf("first line %q", l)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("chain did not start: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
		cmd.Process.Signal(sig)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%v: exit %v: %s", sig, err, stderr.String())
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%v did not stop the chain", sig)
		}
		if !strings.Contains(stderr.String(), "chain closed") {
			t.Fatalf("%v: no clean close logged: %s", sig, stderr.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "chain.db")); err != nil {
		t.Fatal(err)
	}
}

// TestConfigServesEveryFlag: a required flag (--netuid) may come from the
// environment or the config file, and one config file may hold the flags
// of several commands: each command takes its own and ignores the others,
// while a key no command knows is refused with a suggestion.
func TestConfigServesEveryFlag(t *testing.T) {
	clearWalletEnv(t)
	c := newChainCLI(t, nil)
	c.wallet("owner")
	c.ok("owner", "wallet", "faucet", "--amount", "10")
	created := c.ok("owner", "subnet", "create")
	netuid := strconv.Itoa(int(created["netuid"].(float64)))
	dir := t.TempDir()
	write := func(name, body string) string { return writeTestFile(t, dir, name, body) }
	// The flags of the miner, the validator, allocate and the chain
	// commands in one file.
	shared := write("shared.yaml", fmt.Sprintf(`netuid: %s
wallet:
  path: %s
  name: owner
subtensor:
  chain_endpoint: %s
miner:
  image: busybox
  images: []
axon.port: 8091
ssh:
  forwarding: false
validator.pog.max-workers: 2
ssh-key: /nonexistent.pub
`, netuid, c.wallets, c.endpoint))

	hyper := func(args ...string) (int, map[string]any, string) {
		return cliJSON(t, append([]string{"subnet", "hyperparameters", "--json"}, args...)...)
	}
	if code, m, errOut := hyper("--config", shared); code != 0 || m["tempo"] == nil {
		t.Fatalf("required --netuid from the shared config file: exit %d, %v, %s", code, m, errOut)
	}
	t.Setenv("NICOMPUTE_NETUID", netuid)
	if code, m, errOut := hyper("--subtensor.chain_endpoint", c.endpoint); code != 0 || m["tempo"] == nil {
		t.Fatalf("required --netuid from the environment: exit %d, %v, %s", code, m, errOut)
	}
	os.Unsetenv("NICOMPUTE_NETUID")
	if code, _, errOut := runCLI(t, "subnet", "hyperparameters", "--subtensor.chain_endpoint", c.endpoint); code != 2 || !strings.Contains(errOut, "netuid") {
		t.Fatalf("no --netuid anywhere: exit %d, %s", code, errOut)
	}
	if code, m, errOut := walletShow(t, "--config", shared); code != 0 || m["hotkey"] == nil {
		t.Fatalf("wallet show with the shared config file: exit %d, %v, %s", code, m, errOut)
	}

	typo := write("typo.yaml", "wallet:\n  name: owner\nminer:\n  imagee: busybox\n")
	if code, _, errOut := walletShow(t, "--config", typo); code != 2 || !strings.Contains(errOut, `"miner.imagee"`) || !strings.Contains(errOut, `did you mean "miner.image"`) {
		t.Fatalf("typo in a section of another command: exit %d, %s", code, errOut)
	}
}

// TestMistypedSubcommand: an unknown subcommand of a group exits 2 with a
// suggestion; the group alone prints its help.
func TestMistypedSubcommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"walet"}, `unknown command "walet"`},
		{[]string{"wallet", "lst"}, `did you mean "list"?`},
		{[]string{"allocation", "stauts"}, `did you mean "status"?`},
		{[]string{"subnet", "metagraf"}, `unknown command "metagraf" for "nicompute subnet"`},
	} {
		code, out, errOut := runCLI(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, out, errOut, tc.want)
		}
	}
	if code, out, _ := runCLI(t, "wallet"); code != 0 || !strings.Contains(out, "Available Commands") {
		t.Errorf("wallet alone: exit %d, %q", code, out)
	}
}

func TestCommandLineHints(t *testing.T) {
	w := walletFlags{path: defaultWalletPath, name: "my wallet", hotkey: defaultHotkeyName}
	s := subtensorFlags{network: "finney"}
	got := commandLine("subnet register", 27, w, s)
	want := "nicompute subnet register --netuid 27 --wallet.name 'my wallet' --subtensor.network finney"
	if got != want {
		t.Errorf("commandLine = %q, want %q", got, want)
	}
	for in, want := range map[string]string{
		"plain":          "plain",
		"~/wallets/a-b":  "~/wallets/a-b",
		"it's":           `'it'\''s'`,
		"":               "''",
		"$(reboot)":      "'$(reboot)'",
		"ws://host:9944": "ws://host:9944",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}
