package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/nicompute/nicompute/internal/devnet"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/web"
)

// startDevnet runs `nicompute devnet` in the background until the returned
// stop function is called, and returns the chain endpoint it printed.
func startDevnet(t *testing.T, args ...string) (endpoint string, out *lockedBuffer, stop func() int) {
	t.Helper()
	bg := runInBackground(t, regexp.MustCompile(`chain\s+(http://127\.0\.0\.1:\d+)`), append([]string{"devnet"}, args...)...)
	return bg.match, bg.out, bg.stop
}

// background is a nicompute command running in this process.
type background struct {
	match string // the first group of the regexp it was waited for
	out   *lockedBuffer
	errb  *lockedBuffer
	stop  func() int // interrupts it and returns its exit code
}

// runInBackground runs nicompute args until the test ends or stop is
// called, once its stdout matched re (within a minute).
func runInBackground(t *testing.T, re *regexp.Regexp, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	bg := &background{out: &lockedBuffer{}, errb: &lockedBuffer{}}
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, args, Stdio{In: strings.NewReader(""), Out: bg.out, Err: bg.errb})
	}()
	deadline := time.After(time.Minute)
	for {
		if m := re.FindStringSubmatch(bg.out.String()); m != nil {
			bg.match = m[1]
			break
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("%s exited with %d before it was up:\n%s\n%s", args[0], code, bg.out, bg.errb)
		case <-deadline:
			cancel()
			t.Fatalf("%s not up after a minute:\n%s\n%s", args[0], bg.out, bg.errb)
		case <-time.After(20 * time.Millisecond):
		}
	}
	var stopped bool
	bg.stop = func() int {
		if stopped {
			return 0
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not stop within 30 s of the interrupt", args[0])
			return -1
		}
	}
	t.Cleanup(func() { bg.stop() })
	return bg
}

func TestDevnetStartsAndRestarts(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--data", dir, "--chain.listen", "127.0.0.1:0", "--block-time", "50ms", "--tempo", "10", "--miners", "2", "--chain-only"}
	endpoint, out, stop := startDevnet(t, args...)

	code, stdout, stderr := runCLI(t, "subnet", "metagraph", "--netuid", "1", "--subtensor.chain_endpoint", endpoint, "--json")
	if code != 0 {
		t.Fatalf("metagraph exit %d: %s", code, stderr)
	}
	var m struct {
		NetUID  int `json:"netuid"`
		Neurons []struct {
			Hotkey string  `json:"hotkey"`
			Stake  float64 `json:"stake"`
		} `json:"neurons"`
	}
	if err := json.Unmarshal([]byte(stdout), &m); err != nil {
		t.Fatalf("metagraph JSON: %v\n%s", err, stdout)
	}
	if m.NetUID != 1 || len(m.Neurons) != 3 {
		t.Fatalf("devnet subnet = netuid %d with %d neurons, want 1 with 3", m.NetUID, len(m.Neurons))
	}
	if m.Neurons[0].Stake < 1024 {
		t.Fatalf("validator stake %v is below a permit's 1024", m.Neurons[0].Stake)
	}
	first := out.String()
	if eps := readEndpoints(t, dir); eps["chain"] != endpoint || eps["api"] != "" {
		t.Fatalf("endpoints.json of a chain-only devnet: %v", eps)
	}
	if code := stop(); code != 0 {
		t.Fatalf("devnet exit code %d after interrupt", code)
	}

	// A second run reuses the data directory: same hotkeys, no new uids.
	endpoint, out, stop = startDevnet(t, args...)
	_, stdout, _ = runCLI(t, "subnet", "metagraph", "--netuid", "1", "--subtensor.chain_endpoint", endpoint, "--json")
	var m2 struct {
		Neurons []struct {
			Hotkey string `json:"hotkey"`
		} `json:"neurons"`
	}
	if err := json.Unmarshal([]byte(stdout), &m2); err != nil {
		t.Fatal(err)
	}
	if len(m2.Neurons) != 3 || m2.Neurons[0].Hotkey != m.Neurons[0].Hotkey {
		t.Fatalf("second run did not reuse the subnet: %s", stdout)
	}
	hotkeyLine := regexp.MustCompile(`validator\s+devnet-validator uid 0 hotkey (\S+)`)
	a, b := hotkeyLine.FindStringSubmatch(first), hotkeyLine.FindStringSubmatch(out.String())
	if a == nil || b == nil || a[1] != b[1] {
		t.Fatalf("validator identity changed between runs")
	}
	if code := stop(); code != 0 {
		t.Fatalf("devnet exit code %d", code)
	}
}

func TestDevnetBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--miners", "-1"},
		{"--block-time", "1ms"},
		{"--tempo", "0"},
		{"--sim-gpus", "NVIDIA Imaginary 1TB"},
		{"--sim-gpus", "9xNVIDIA H200"},
		{"--sim-time-scale", "0"},
		{"--ssh.port", "65534"},
		{"--binary", "/etc/passwd"},
	} {
		code, _, stderr := runCLI(t, append([]string{"devnet", "--data", t.TempDir()}, args...)...)
		if code != 2 || !strings.Contains(stderr, "error:") {
			t.Errorf("devnet %v: exit %d, stderr %q; want 2 with an error", args, code, stderr)
		}
	}
}

func runCLI(tb testing.TB, args ...string) (int, string, string) {
	tb.Helper()
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	code := Run(context.Background(), args, Stdio{In: strings.NewReader(""), Out: out, Err: errOut})
	return code, out.String(), errOut.String()
}

// TestDevnetEndToEnd runs the whole subnet: three miners on Docker, each
// simulating one model, and the validator testing them with Proof-of-GPU.
// Within a few tempos the chain's incentives must follow the models'
// scores: H200 > H100 80GB HBM3 > A100-SXM4-80GB > 0 (the validator),
// with commit-reveal weights on.
func TestDevnetEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a devnet on Docker")
	}
	cli := nictest.RequireDocker(t)
	bin := nictest.BuildNicompute(t)
	if err := devnet.CheckStatic(bin); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sshBase := 30000 + rand.IntN(25000)
	dataDir := t.TempDir()
	args := []string{"--data", dataDir, "--chain.listen", "127.0.0.1:0", "--block-time", "100ms", "--tempo", "10", "--api.listen", "127.0.0.1:0",
		"--miners", "3", "--binary", bin, "--axon.port", fmt.Sprint(nictest.FreePort(t)), "--ssh.port", fmt.Sprint(sshBase)}
	endpoint, out, stop := startDevnet(t, args...)
	if strings.Contains(out.String(), "no miner runs") {
		if strings.Contains(out.String(), "busybox") {
			t.Skipf("devnet needs busybox-static for its lease image:\n%s", out)
		}
		t.Fatalf("devnet started no miner although Docker answers:\n%s", out)
	}
	miners := regexp.MustCompile(`miner\s+devnet-miner-(\d) uid (\d+) hotkey (\S+) axon \S+ simulating 1 × (.+)`).FindAllStringSubmatch(out.String(), -1)
	if len(miners) != 3 {
		t.Fatalf("devnet layout lists %d running miners:\n%s", len(miners), out)
	}
	for _, m := range miners {
		cleanupMinerContainers(t, cli, minerInstance(m[3], 1))
	}
	models := map[int]string{}
	for _, m := range miners {
		var uid int
		fmt.Sscan(m[2], &uid)
		models[uid] = strings.TrimSpace(m[4])
	}
	want := []string{"NVIDIA H200", "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"}

	var last string
	ordered := false
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline) && !ordered; time.Sleep(500 * time.Millisecond) {
		code, stdout, stderr := runCLI(t, "subnet", "metagraph", "--netuid", "1", "--subtensor.chain_endpoint", endpoint, "--json")
		if code != 0 {
			t.Fatalf("metagraph exit %d: %s", code, stderr)
		}
		last = stdout
		var mg struct {
			Neurons []struct {
				UID       int     `json:"uid"`
				Incentive float64 `json:"incentive"`
			} `json:"neurons"`
		}
		if err := json.Unmarshal([]byte(stdout), &mg); err != nil {
			t.Fatalf("metagraph JSON: %v\n%s", err, stdout)
		}
		inc := map[string]float64{}
		validator := -1.0
		for _, n := range mg.Neurons {
			if m, ok := models[n.UID]; ok {
				inc[m] = n.Incentive
			} else {
				validator = n.Incentive
			}
		}
		ordered = inc[want[0]] > inc[want[1]] && inc[want[1]] > inc[want[2]] && inc[want[2]] > 0 && validator == 0
	}
	if !ordered {
		t.Fatalf("incentives not ordered by the models' scores after 2 minutes:\n%s\ndevnet output:\n%s", last, out)
	}
	t.Logf("incentives ordered %s after the devnet started (%s)", time.Since(start).Round(time.Second), last)
	// The validator's worker went into each miner's cache for it, under
	// its hash, through the lease containers.
	cached, _ := filepath.Glob(filepath.Join(dataDir, "*", "*", "pog-cache", "*", "nicompute-*"))
	if len(cached) != len(miners) {
		t.Errorf("worker cached on %d of %d miners: %q", len(cached), len(miners), cached)
	}
	if !strings.Contains(out.String(), "1 × NVIDIA H200") {
		t.Errorf("the validator's miner table was not printed:\n%s", out)
	}
	// The devnet subnet has commit-reveal on: the validator's weights were
	// committed to the chain's beacon, and the chain revealed them (the
	// incentives above come from revealed weights).
	if !strings.Contains(out.String(), "committed for reveal in round") {
		t.Errorf("the validator did not commit its weights:\n%s", out)
	}
	code, stdout, stderr := runCLI(t, "subnet", "hyperparameters", "--netuid", "1", "--subtensor.chain_endpoint", endpoint, "--json")
	var hp struct {
		CommitReveal bool   `json:"commit_reveal_weights_enabled"`
		Period       uint64 `json:"commit_reveal_period"`
	}
	if err := json.Unmarshal([]byte(stdout), &hp); code != 0 || err != nil || !hp.CommitReveal || hp.Period != 1 {
		t.Errorf("devnet hyperparameters: exit %d, %v, %s %s", code, err, stdout, stderr)
	}
	rentOnDevnet(t, dataDir, out.String(), func() { checkDevnetObservability(t, dataDir) })
	if code := stop(); code != 0 {
		t.Fatalf("devnet exit code %d", code)
	}
}

// rentOnDevnet rents the best verified GPU of a running devnet through its
// allocation API with the admin token devnet keeps, logs in with OpenSSH,
// runs whileRented and stops the rental.
func rentOnDevnet(t *testing.T, data, out string, whileRented func()) {
	t.Helper()
	eps := readEndpoints(t, data)
	if eps["chain"] == "" || eps["api"] == "" || !regexp.MustCompile(`api\s+`+regexp.QuoteMeta(eps["api"])).MatchString(out) {
		t.Fatalf("endpoints.json %v; devnet output:\n%s", eps, out)
	}
	tokenFile := filepath.Join(data, "api", "admin.token")
	if st, err := os.Stat(tokenFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v, %v", st, err)
	}
	rent := func(args ...string) (int, string, string) {
		return runCLI(t, append(append([]string{"rent"}, args...), "--api.url", eps["api"], "--api.token-file", tokenFile)...)
	}
	code, stdout, stderr := rent("offers", "--json")
	var offers web.OfferList
	if code != 0 || json.Unmarshal([]byte(stdout), &offers) != nil || len(offers.Offers) != 3 || offers.Offers[0].GPUModel != "NVIDIA H200" || len(offers.Offers[0].Hotkeys) != 1 {
		t.Fatalf("offers: %d %s %s", code, stdout, stderr)
	}
	key := newSSHKeyPair(t)
	// The validator's Proof-of-GPU test leases hold each miner's only GPU
	// for a moment every few seconds: a refusal then is expected, and a
	// renter tries again.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, stdout, stderr = rent("create", "--gpus", "1", "--gpu-model", "H200", "--ssh-key", key.pub, "--duration", "10m", "--json")
		if code == 0 || !strings.Contains(stderr, "allocation_refused") || time.Now().After(deadline) {
			break
		}
	}
	var a rental.Allocation
	if code != 0 || json.Unmarshal([]byte(stdout), &a) != nil || a.GPUModel != "NVIDIA H200" || a.State != market.AllocOnline {
		t.Fatalf("create: %d %s %s", code, stdout, stderr)
	}
	if out, err := openSSH(t, key.file, a.Host, a.Port, "echo hi-from-devnet"); err != nil || !strings.Contains(out, "hi-from-devnet") {
		t.Fatalf("OpenSSH login to the rented lease: %q, %v", out, err)
	}
	whileRented()
	if code, stdout, stderr = rent("stop", a.ID); code != 0 || !strings.Contains(stdout, "ended") {
		t.Fatalf("stop: %d %s %s", code, stdout, stderr)
	}
}

// cleanupMinerContainers removes, when the test ends, the lease containers
// a devnet miner (runtime instance) left (normally none: the validator
// deallocates its tests).
func cleanupMinerContainers(t *testing.T, cli *client.Client, instance string) {
	t.Helper()
	nictest.CleanupLabel(t, cli, "nicompute.miner="+instance)
}
