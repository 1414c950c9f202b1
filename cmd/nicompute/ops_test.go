package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/chain/local"
	"github.com/nicompute/nicompute/internal/devnet"
	"github.com/nicompute/nicompute/internal/selfupdate"
)

// releaseFeed serves a signed release of version v whose nicompute is a
// script answering `version --json` with v. The manifest is served once
// gate is closed.
func releaseFeed(t *testing.T, v string, gate <-chan struct{}) (url, pubkey string, bin []byte) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	bin = []byte("#!/bin/sh\necho '{\"version\":\"" + v + "\"}'\n")
	files := map[string][]byte{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/manifest.json" {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		if b, ok := files[r.URL.Path]; ok {
			w.Write(b)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	sum := sha256.Sum256(bin)
	m := selfupdate.Manifest{Version: v, Binaries: map[string]map[string]selfupdate.Binary{
		"linux/amd64": {"nicompute": {URL: srv.URL + "/nicompute", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(bin))}},
		"linux/arm64": {"nicompute": {URL: srv.URL + "/nicompute", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(bin))}},
	}}
	raw, _ := json.Marshal(m)
	files["/nicompute"], files["/manifest.json"], files["/manifest.json.sig"] = bin, raw, selfupdate.Sign(key, raw)
	return srv.URL + "/manifest.json", base64.StdEncoding.EncodeToString(pub), bin
}

// notifySocket listens as systemd does for Type=notify services and
// returns the received notifications.
func notifySocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	ch := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

func waitNotice(t *testing.T, ch <-chan string, prefix string) string {
	t.Helper()
	for {
		select {
		case m := <-ch:
			if strings.HasPrefix(m, prefix) {
				return m
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s notification within 30 s", prefix)
		}
	}
}

// TestValidatorOperations runs `nicompute validator` as a service manager
// would: it notifies READY, serves /metrics and the dashboard, publishes
// its metrics endpoint on chain, installs a newer signed release
// (keeping the previous binary) and restarts into it after STOPPING.
func TestValidatorOperations(t *testing.T) {
	dir := t.TempDir()
	endpoint, _, _ := startDevnet(t, "--data", dir, "--chain.listen", "127.0.0.1:0", "--block-time", "50ms", "--tempo", "10", "--miners", "1", "--chain-only")
	notices := notifySocket(t)
	gate := make(chan struct{})
	feed, pubkey, newBin := releaseFeed(t, "99.0.0", gate)
	exe := filepath.Join(t.TempDir(), "nicompute")
	oldBin := []byte("#!/bin/sh\necho '{\"version\":\"0.1.0\"}'\n")
	if err := os.WriteFile(exe, oldBin, 0o755); err != nil {
		t.Fatal(err)
	}
	restarted := make(chan string, 1)
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	a := &app{Stdio: Stdio{In: strings.NewReader(""), Out: out, Err: errOut}, restart: func(exe string) error { restarted <- exe; return nil }}
	args := []string{"validator", "--netuid", "1", "--subtensor.chain_endpoint", endpoint, "--wallet.path", filepath.Join(dir, "wallets"),
		"--wallet.name", devnet.ValidatorWallet, "--validator.data", t.TempDir(), "--validator.pog.max-random-delay", "0",
		"--validator.chain-poll", "50ms", "--validator.perform.hardware.query=false",
		"--metrics.listen", "127.0.0.1:0", "--validator.force.update.prometheus",
		"--auto-update", "--update.url", feed, "--update.pubkey", pubkey, "--update.binary", exe, "--update.interval", "1h"}
	done := make(chan int, 1)
	go func() { done <- a.run(context.Background(), args) }()

	ready := waitNotice(t, notices, "READY=1")
	if !strings.Contains(ready, "STATUS=validator") {
		t.Errorf("ready notification %q", ready)
	}
	// The feed holds the release back until the running daemon's metrics,
	// dashboard and published endpoint are checked.
	m := regexp.MustCompile(`msg="metrics served" url=(http://127\.0\.0\.1:(\d+))/metrics`).FindStringSubmatch(errOut.String())
	if m == nil {
		t.Fatalf("no metrics URL logged:\n%s", errOut)
	}
	if text := httpGet(t, m[1]+"/metrics"); !strings.Contains(text, `role="validator"`) || !strings.Contains(text, "nicompute_chain_rpc_duration_seconds") {
		t.Errorf("metrics:\n%s", text)
	}
	if page := httpGet(t, m[1]+"/"); !strings.Contains(page, "nicompute validator · subnet 1") {
		t.Errorf("dashboard:\n%s", page)
	}
	c, err := local.Dial(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mg, err := c.Metagraph(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := mg.ByUID(0); v.Prometheus.IP != "127.0.0.1" || strconv.Itoa(int(v.Prometheus.Port)) != m[2] || v.Prometheus.Version == 0 {
		t.Fatalf("validator's prometheus info %+v, metrics on port %s", v.Prometheus, m[2])
	}
	close(gate)
	waitNotice(t, notices, "STOPPING=1")
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, errOut)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("validator did not stop after installing the release")
	}
	if got := <-restarted; got != exe {
		t.Fatalf("restarted into %s, want %s", got, exe)
	}
	if b, _ := os.ReadFile(exe); string(b) != string(newBin) {
		t.Fatal("the release was not installed")
	}
	if b, _ := os.ReadFile(exe + ".prev"); string(b) != string(oldBin) {
		t.Fatal("the previous binary was not kept")
	}
	logs := errOut.String()
	for _, want := range []string{"verified release staged", "release installed; restarting into it", "metrics endpoint published on chain"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}

	// The installed release now starts, and fails to (its data directory
	// is unusable): the previous binary is put back and run.
	notAdir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notAdir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	failArgs := append([]string(nil), args...)
	for i, arg := range failArgs {
		if arg == "--validator.data" {
			failArgs[i+1] = notAdir
		}
	}
	errOut2 := &lockedBuffer{}
	a2 := &app{Stdio: Stdio{In: strings.NewReader(""), Out: out, Err: errOut2}, restart: func(exe string) error { restarted <- exe; return nil }}
	if code := a2.run(context.Background(), failArgs); code != 0 {
		t.Fatalf("exit %d:\n%s", code, errOut2)
	}
	if got := <-restarted; got != exe {
		t.Fatalf("restarted into %s", got)
	}
	if b, _ := os.ReadFile(exe); string(b) != string(oldBin) {
		t.Fatal("the failed release was not rolled back")
	}
	if !strings.Contains(errOut2.String(), "the new release failed to start; the previous binary is back") {
		t.Errorf("log:\n%s", errOut2)
	}
}

// fakeDaemon is a daemon that runs until closed.
type fakeDaemon struct {
	done   chan struct{}
	closed bool
}

func (d *fakeDaemon) Done() <-chan struct{} { return d.done }
func (d *fakeDaemon) Close() error {
	if !d.closed {
		d.closed = true
		close(d.done)
	}
	return nil
}

// TestLifecycleWaitsForAllocations: a staged release is installed only
// once quiesce (the miner: no allocation running) returns, and the
// watchdog is pinged while the daemon runs.
func TestLifecycleWaitsForAllocations(t *testing.T) {
	notices := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", "")
	gate := make(chan struct{})
	close(gate)
	feed, pubkey, newBin := releaseFeed(t, "99.0.0", gate)
	exe := filepath.Join(t.TempDir(), "nicompute")
	os.WriteFile(exe, []byte("old"), 0o755)
	errOut := &lockedBuffer{}
	a := &app{Stdio: Stdio{Out: errOut, Err: errOut}}
	a.setupLogging()
	f := updateFlags{auto: true, url: feed, pubkey: pubkey, interval: time.Hour, binary: exe}
	up, err := a.bootUpdater(f)
	if err != nil {
		t.Fatal(err)
	}
	allocating := make(chan struct{})
	quiesced := make(chan struct{})
	quiesce := func(ctx context.Context) (func(), error) {
		close(quiesced)
		select { // an allocation is running until the test ends it
		case <-allocating:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if b, _ := os.ReadFile(exe); string(b) != "old" {
			t.Error("the binary was replaced while an allocation ran")
		}
		return func() {}, nil
	}
	d := &fakeDaemon{done: make(chan struct{})}
	res := make(chan error, 1)
	go func() { res <- a.lifecycle(context.Background(), "miner", d, up, f, quiesce) }()
	waitNotice(t, notices, "READY=1")
	waitNotice(t, notices, "WATCHDOG=1")
	<-quiesced
	time.Sleep(100 * time.Millisecond)
	if b, _ := os.ReadFile(exe); string(b) != "old" {
		t.Fatal("installed before the allocation ended")
	}
	close(allocating)
	if err := <-res; !errors.Is(err, errRestart) {
		t.Fatalf("lifecycle returned %v, want a restart", err)
	}
	if b, _ := os.ReadFile(exe); string(b) != string(newBin) || !d.closed {
		t.Fatalf("after the allocation: installed %v, daemon closed %v", string(b) == string(newBin), d.closed)
	}
}

// TestChainCommandOperations: `nicompute chain` serves its metrics and
// speaks sd_notify, so a Type=notify unit runs it.
func TestChainCommandOperations(t *testing.T) {
	notices := notifySocket(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"chain", "--data", t.TempDir(), "--chain.listen", "127.0.0.1:0", "--block-time", "5ms", "--metrics.listen", "127.0.0.1:0"},
			Stdio{In: strings.NewReader(""), Out: out, Err: errOut})
	}()
	if ready := waitNotice(t, notices, "READY=1"); !strings.Contains(ready, "STATUS=chain running") {
		t.Errorf("ready %q", ready)
	}
	m := regexp.MustCompile(`msg="metrics served" url=(\S+)`).FindStringSubmatch(errOut.String())
	if m == nil {
		t.Fatalf("no metrics URL logged:\n%s", errOut)
	}
	if text := httpGet(t, m[1]); !strings.Contains(text, `role="chain"`) || !strings.Contains(text, "nicompute_chain_block ") {
		t.Fatalf("chain metrics:\n%s", text)
	}
	cancel()
	waitNotice(t, notices, "STOPPING=1")
	if code := <-done; code != 0 {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
}
