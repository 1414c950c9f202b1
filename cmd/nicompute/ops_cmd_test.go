package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/nicompute/nicompute/internal/devnet"
	"github.com/nicompute/nicompute/internal/doctor"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/selfupdate"
	"github.com/nicompute/nicompute/internal/sqlite"
)

func TestDoctorCommand(t *testing.T) {
	dir := t.TempDir()
	endpoint, _, _ := startDevnet(t, "--data", dir, "--chain.listen", "127.0.0.1:0", "--block-time", "50ms", "--tempo", "10", "--miners", "1", "--chain-only")
	base := []string{"doctor", "--netuid", "1", "--subtensor.chain_endpoint", endpoint, "--wallet.path", filepath.Join(dir, "wallets"), "--json"}
	for _, tc := range []struct {
		role, wallet string
		want         map[string]doctor.Status
	}{
		{"validator", devnet.ValidatorWallet, map[string]doctor.Status{"version vs the subnet's": doctor.Pass, "clock vs chain": doctor.Pass, "free disk": doctor.Pass}},
		{"miner", devnet.MinerWallet(0), map[string]doctor.Status{"registration and stake": doctor.Pass, "axon on chain vs this machine": doctor.Warn, "clock vs chain": doctor.Pass}},
		{"validator", devnet.OwnerWallet, map[string]doctor.Status{"registration and stake": doctor.Fail}},
	} {
		code, stdout, stderr := runCLI(t, append(base, "--role", tc.role, "--wallet.name", tc.wallet)...)
		var r doctor.Report
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("%s %s: %v\n%s\n%s", tc.role, tc.wallet, err, stdout, stderr)
		}
		if want := map[bool]int{true: 1, false: 0}[r.Failed()]; code != want {
			t.Errorf("%s %s: exit %d with failed=%v", tc.role, tc.wallet, code, r.Failed())
		}
		got := map[string]doctor.Status{}
		for _, x := range r.Results {
			got[x.Check] = x.Status
			if x.Status != doctor.Pass && (x.Meaning == "" || x.Remedy == "") {
				t.Errorf("%s: %s without meaning or remedy", tc.role, x.Check)
			}
		}
		for check, st := range tc.want {
			if got[check] != st {
				t.Errorf("%s %s: %s = %s, want %s (%+v)", tc.role, tc.wallet, check, got[check], st, r.Results)
			}
		}
	}
	if code, _, stderr := runCLI(t, "doctor", "--role", "renter"); code != 2 || !strings.Contains(stderr, "--role must be") {
		t.Fatalf("bad role: %d %q", code, stderr)
	}
	t.Run("api", func(t *testing.T) { doctorAPI(t, base) })
}

// doctorAPI runs doctor --role api against real files: the validator's
// results, a TLS pair, the API's store and admin token files, well and
// badly kept.
func doctorAPI(t *testing.T, base []string) {
	ctx := context.Background()
	vdir, apiData := t.TempDir(), t.TempDir()
	vdb, err := sqlite.Open(ctx, filepath.Join(vdir, "validator.db"), sqlite.ValidatorSchema)
	if err != nil {
		t.Fatal(err)
	}
	r := market.PoGResult{Hotkey: "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty", UID: 1, Block: 9, At: time.Now(), Outcome: market.PoGPass, Model: "NVIDIA H200", Count: 1}
	if err := sqlite.NewValidatorStore(vdb).AddResult(ctx, r, 4); err != nil {
		t.Fatal(err)
	}
	vdb.Close()
	tokenFile, _ := createToken(t, apiData, "ops", "admin")
	readFile, _ := createToken(t, apiData, "ann", "read")
	pki := newTestPKI(t)
	api := append(base, "--role", "api", "--wallet.name", devnet.ValidatorWallet, "--api.data", apiData, "--api.listen", "0.0.0.0:1",
		"--api.tls-cert", pki.serverCert, "--api.tls-key", pki.serverKey)
	run := func(extra ...string) (int, map[string]doctor.Result) {
		t.Helper()
		code, stdout, stderr := runCLI(t, append(api, extra...)...)
		var rep doctor.Report
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("%v\n%s\n%s", err, stdout, stderr)
		}
		got := map[string]doctor.Result{}
		for _, x := range rep.Results {
			got[x.Check] = x
		}
		return code, got
	}
	expect := func(got map[string]doctor.Result, want map[string]doctor.Status) {
		t.Helper()
		for check, st := range want {
			if got[check].Status != st {
				t.Errorf("%s = %s (%s), want %s", check, got[check].Status, got[check].Found, st)
			}
		}
	}
	before, _ := os.ReadFile(filepath.Join(apiData, "api.db"))
	code, got := run("--api.validator-data", vdir, "--api.token-file", tokenFile)
	expect(got, map[string]doctor.Status{"validator results": doctor.Pass, "api listen address": doctor.Pass, "tls certificate": doctor.Warn,
		"api state file": doctor.Pass, "admin token file": doctor.Pass})
	if code != 0 {
		t.Errorf("exit %d with nothing failed", code)
	}
	if after, _ := os.ReadFile(filepath.Join(apiData, "api.db")); string(before) != string(after) {
		t.Error("doctor changed the API's store")
	}

	os.Chmod(tokenFile, 0o644)
	os.Chmod(filepath.Join(apiData, "api.db"), 0o644)
	code, got = run("--api.validator-data", t.TempDir(), "--api.token-file", tokenFile, "--api.tls-cert", pki.clientCert)
	expect(got, map[string]doctor.Status{"validator results": doctor.Fail, "tls certificate": doctor.Fail, "api state file": doctor.Fail, "admin token file": doctor.Fail})
	if code != 1 || !strings.Contains(got["admin token file"].Remedy, "chmod 600 "+tokenFile) {
		t.Errorf("exit %d, token file %+v", code, got["admin token file"])
	}
	if st, _ := os.Stat(filepath.Join(apiData, "api.db")); st.Mode().Perm() != 0o644 {
		t.Error("doctor changed the store's mode")
	}
	_, got = run("--api.validator-data", vdir, "--api.token-file", readFile)
	expect(got, map[string]doctor.Status{"admin token file": doctor.Warn})
	if code, _, stderr := runCLI(t, append(base, "--role", "api", "--api.tls-key", pki.serverKey)...); code != 2 || !strings.Contains(stderr, "go together") {
		t.Errorf("key without certificate: %d %s", code, stderr)
	}
}

func TestServiceCommand(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "nicompute")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, unit, stderr := runCLI(t, "service", "systemd", "--role", "miner", "--binary", bin, "--user", "nicompute",
		"--", "--netuid", "27", "--wallet.name", "my miner", "--metrics.listen", "127.0.0.1:9101", "--auto-update", "--update.url", "https://r.example/m.json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=120", "User=nicompute",
		"ExecStart=" + bin + ` miner --netuid 27 --wallet.name "my miner" --metrics.listen 127.0.0.1:9101 --auto-update --update.url https://r.example/m.json`} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	code, unit, stderr = runCLI(t, "service", "systemd", "--role", "api", "--binary", bin,
		"--", "--netuid", "27", "--wallet.name", "validator", "--api.listen", "0.0.0.0:8903", "--metrics.listen", "127.0.0.1:9103")
	if code != 0 || !strings.Contains(unit, "Type=notify") || !strings.Contains(unit, "ExecStart="+bin+" api --netuid 27 --wallet.name validator --api.listen 0.0.0.0:8903 --metrics.listen 127.0.0.1:9103") {
		t.Fatalf("api unit: exit %d %s\n%s", code, stderr, unit)
	}
	out := filepath.Join(t.TempDir(), "eco.config.js")
	if code, _, stderr := runCLI(t, "service", "pm2", "--role", "validator", "--binary", bin, "--out", out, "--", "--netuid", "27"); code != 0 {
		t.Fatalf("pm2: %d %s", code, stderr)
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), `"validator",`) || !strings.Contains(string(b), `"interpreter": "none"`) {
		t.Fatalf("ecosystem:\n%s", b)
	}
	for _, args := range [][]string{
		{"service", "systemd", "--role", "miner", "--", "--no-such-flag"},
		{"service", "systemd", "--role", "miner", "--", "stray"},
		{"service", "systemd", "--role", "api", "--", "--axon.port", "8091"},
		{"service", "systemd", "--role", "wallet"},
		{"service", "pm2", "--role", "miner", "--binary", "/etc/passwd"},
		{"service", "systemd"},
	} {
		if code, _, stderr := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, stderr)
		}
	}
}

func TestReleaseCommand(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "release.key")
	code, pub, stderr := runCLI(t, "release", "keygen", "--key", key)
	if code != 0 {
		t.Fatalf("keygen: %d %s", code, stderr)
	}
	rel := filepath.Join(dir, "out")
	bin := filepath.Join(rel, "linux-amd64", "nicompute")
	os.MkdirAll(filepath.Dir(bin), 0o755)
	os.WriteFile(bin, []byte("binary"), 0o755)
	if code, _, stderr := runCLI(t, "release", "manifest", "--key", key, "--version", "1.2.3", "--base-url", "https://r.example/1.2.3/",
		"--dir", rel, "linux/amd64/nicompute="+bin); code != 0 {
		t.Fatalf("manifest: %d %s", code, stderr)
	}
	manifest, _ := os.ReadFile(filepath.Join(rel, "manifest.json"))
	sig, _ := os.ReadFile(filepath.Join(rel, "manifest.json.sig"))
	keys, err := selfupdate.ParseKeys(strings.TrimSpace(pub))
	if err != nil {
		t.Fatal(err)
	}
	m, err := selfupdate.Verify(manifest, sig, keys)
	if err != nil {
		t.Fatal(err)
	}
	if b := m.Binaries["linux/amd64"]["nicompute"]; m.Version != "1.2.3" || b.URL != "https://r.example/1.2.3/linux-amd64/nicompute" || b.Size != 6 {
		t.Fatalf("manifest %+v", m)
	}
	if code, out, _ := runCLI(t, "release", "pubkey", "--key", key); code != 0 || out != pub {
		t.Fatalf("pubkey: %d %q vs %q", code, out, pub)
	}
	if code, _, _ := runCLI(t, "release", "manifest", "--key", key, "--version", "1.0.0", "--base-url", "x", "--dir", rel, "linux/amd64/nicompute=/etc/passwd"); code != 2 {
		t.Fatalf("a file outside --dir: exit %d", code)
	}
	os.Chmod(key, 0o644)
	if code, _, stderr := runCLI(t, "release", "pubkey", "--key", key); code != 1 || !strings.Contains(stderr, "readable by others") {
		t.Fatalf("world-readable key: %d %s", code, stderr)
	}
}

func TestParseUFW(t *testing.T) {
	out := "Status: active\n\nTo                         Action      From\n--                         ------      ----\n22/tcp                     ALLOW       Anywhere\n8091/tcp                   ALLOW       Anywhere\n9100                       DENY        Anywhere\n22/tcp (v6)                ALLOW       Anywhere (v6)\n"
	u := parseUFW([]byte(out))
	if !u.Installed || !u.Active || strings.Join(u.Allowed, ",") != "22/tcp,8091/tcp,22/tcp" {
		t.Fatalf("%+v", u)
	}
	if u := parseUFW([]byte("Status: inactive\n")); u.Active {
		t.Fatal("inactive read as active")
	}
}

func TestBootUpdaterFlags(t *testing.T) {
	errOut := &lockedBuffer{}
	a := &app{Stdio: Stdio{Out: errOut, Err: errOut}}
	a.setupLogging()
	if up, err := a.bootUpdater(updateFlags{auto: true, interval: time.Hour}); up != nil || err != nil || !strings.Contains(errOut.String(), "auto-update is off") {
		t.Fatalf("no feed: %v %v %q", up, err, errOut)
	}
	if up, err := a.bootUpdater(updateFlags{}); up != nil || err != nil {
		t.Fatalf("off: %v %v", up, err)
	}
	for _, f := range []updateFlags{
		{auto: true, url: "https://r.example/m.json", interval: time.Hour},                         // no key
		{auto: true, url: "https://r.example/m.json", interval: time.Hour, pubkey: "bm90IGEga2V5"}, // not a key
		{auto: true, url: "https://r.example/m.json", interval: time.Second},
	} {
		var ee *exitError
		if _, err := a.bootUpdater(f); !errors.As(err, &ee) || ee.code != 2 {
			t.Errorf("%+v: %v, want a usage error", f, err)
		}
	}
	// SN27's spelling parses as the same flag.
	var u updateFlags
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	u.register(fs)
	if err := fs.Parse([]string{"--auto_update"}); err != nil || !u.auto {
		t.Fatalf("--auto_update: %v %v", err, u.auto)
	}
}
