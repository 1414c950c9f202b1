package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/nicompute/nicompute/internal/devnet"
	"github.com/nicompute/nicompute/internal/nictest"
)

// startDevnet runs `nicompute devnet` in the background until the returned
// stop function is called, and returns the chain endpoint it printed.
func startDevnet(t *testing.T, args ...string) (endpoint string, out *lockedBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, append([]string{"devnet"}, args...), Stdio{In: strings.NewReader(""), Out: out, Err: errOut})
	}()
	re := regexp.MustCompile(`chain\s+(http://127\.0\.0\.1:\d+)`)
	deadline := time.After(time.Minute)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			endpoint = m[1]
			break
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("devnet exited with %d before it was up:\n%s\n%s", code, out, errOut)
		case <-deadline:
			cancel()
			t.Fatalf("devnet not up after a minute:\n%s\n%s", out, errOut)
		case <-time.After(20 * time.Millisecond):
		}
	}
	var stopped bool
	stop = func() int {
		if stopped {
			return 0
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(30 * time.Second):
			t.Fatal("devnet did not stop within 30 s of the interrupt")
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	return endpoint, out, stop
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
	data := t.TempDir()
	args := []string{"--data", data, "--chain.listen", "127.0.0.1:0", "--block-time", "100ms", "--tempo", "10",
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
	cached, _ := filepath.Glob(filepath.Join(data, "*", "*", "pog-cache", "*", "nicompute-*"))
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
	if code := stop(); code != 0 {
		t.Fatalf("devnet exit code %d", code)
	}
}

// cleanupMinerContainers removes, when the test ends, the lease containers
// a devnet miner (runtime instance) left (normally none: the validator
// deallocates its tests).
func cleanupMinerContainers(t *testing.T, cli *client.Client, instance string) {
	t.Helper()
	nictest.CleanupLabel(t, cli, "nicompute.miner="+instance)
}
