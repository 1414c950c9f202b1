package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/devnet"
)

func TestValidatorCommand(t *testing.T) {
	dir := t.TempDir()
	endpoint, _, _ := startDevnet(t, "--data", dir, "--chain.listen", "127.0.0.1:0", "--block-time", "50ms", "--tempo", "10", "--miners", "1", "--chain-only")
	wallets := filepath.Join(dir, "wallets")
	base := []string{"validator", "--netuid", "1", "--subtensor.chain_endpoint", endpoint, "--wallet.path", wallets,
		"--validator.data", t.TempDir(), "--validator.pog.max-random-delay", "0", "--validator.chain-poll", "50ms"}

	t.Run("unregistered hotkey exits", func(t *testing.T) {
		code, _, stderr := runCLI(t, append(base, "--wallet.name", devnet.OwnerWallet)...)
		if code != 1 || !strings.Contains(stderr, "not registered") {
			t.Fatalf("exit %d, stderr %q; want 1 naming the missing registration", code, stderr)
		}
	})

	t.Run("runs until interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		out, errOut := &lockedBuffer{}, &lockedBuffer{}
		done := make(chan int, 1)
		args := append(base, "--wallet.name", devnet.ValidatorWallet, "--validator.perform.hardware.query=false", "--validator.weights.interval", "2")
		go func() { done <- Run(ctx, args, Stdio{In: strings.NewReader(""), Out: out, Err: errOut}) }()
		deadline := time.After(30 * time.Second)
		for !strings.Contains(out.String(), "sweep finished") || !strings.Contains(errOut.String(), "no miner has a score yet") {
			select {
			case code := <-done:
				t.Fatalf("validator exited with %d:\n%s\n%s", code, out, errOut)
			case <-deadline:
				t.Fatalf("no sweep within 30 s:\n%s\n%s", out, errOut)
			case <-time.After(20 * time.Millisecond):
			}
		}
		if !strings.Contains(out.String(), "not tested: axon not served") {
			t.Errorf("miner table does not say why the miner was not tested:\n%s", out)
		}
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Fatalf("exit %d after the interrupt:\n%s", code, errOut)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("validator did not stop within 15 s of the interrupt")
		}
	})
}

func TestValidatorBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--validator.specs.batch.size", "0"},
		{"--validator.whitelist.updated.threshold", "101"},
		{"--validator.pog.interval", "0"},
		{"--validator.pog.max-workers", "0"},
		{"--validator.pog.verifiers", "-1"},
		{"--validator.miner.min_version", "1.2"},
		{"--validator.pog.lease.ram", "lots"},
		{"--validator.gpu-table", "/nonexistent/table.yaml"},
		{"--validator.perform.hardware.query=maybe"},
	} {
		code, _, stderr := runCLI(t, append([]string{"validator", "--wallet.path", t.TempDir()}, args...)...)
		if code != 2 || !strings.Contains(stderr, "error:") {
			t.Errorf("validator %v: exit %d, stderr %q; want 2 with an error", args, code, stderr)
		}
	}
}
