package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
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
	args := []string{"--data", dir, "--chain.listen", "127.0.0.1:0", "--block-time", "50ms", "--tempo", "10", "--miners", "2"}
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
