package devnet

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/chain/local"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/scratch"
)

func startChain(t *testing.T, dir string) (*local.Node, *local.Client) {
	t.Helper()
	g := Genesis(10)
	// No emission: balances change only by what Bootstrap does, not by the
	// owner's cut of epochs that pass between two runs.
	g.EmissionPerBlock = 0
	node, err := local.Open(context.Background(), local.Config{DataDir: dir, BlockTime: 20 * time.Millisecond, Genesis: &g})
	if err != nil {
		t.Fatal(err)
	}
	c, err := local.Dial(context.Background(), node.Endpoint())
	if err != nil {
		node.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); node.Close() })
	return node, c
}

func TestBootstrapIsIdempotent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	_, c := startChain(t, filepath.Join(dir, "chain"))
	opts := Options{WalletDir: filepath.Join(dir, "wallets"), Miners: 3, Tempo: 10}
	steps := 0
	opts.Progress = func(string) { steps++ }
	l1, err := Bootstrap(ctx, c, opts)
	if err != nil {
		t.Fatal(err)
	}
	if steps != Steps(opts) {
		t.Fatalf("progress called %d times, Steps says %d", steps, Steps(opts))
	}
	m, err := c.Metagraph(ctx, l1.NetUID)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Neurons) != 4 {
		t.Fatalf("%d neurons registered, want 4", len(m.Neurons))
	}
	v, ok := m.ByHotkey(l1.Validator.Hotkey.SS58())
	if !ok || v.Stake < ValidatorStake {
		t.Fatalf("validator stake %v, want ≥ %v", v.Stake, ValidatorStake)
	}
	for _, mi := range l1.Miners {
		n, ok := m.ByUID(mi.UID)
		if !ok || n.Hotkey != mi.Hotkey.SS58() || n.Coldkey != mi.Coldkey.SS58() {
			t.Fatalf("miner %s not registered as uid %d", mi.Wallet, mi.UID)
		}
	}
	ownerBal, _ := c.Balance(ctx, l1.Owner.Coldkey.SS58())
	validatorBal, _ := c.Balance(ctx, l1.Validator.Coldkey.SS58())

	opts.Progress = nil
	l2, err := Bootstrap(ctx, c, opts)
	if err != nil {
		t.Fatal(err)
	}
	if l2.NetUID != l1.NetUID || l2.Validator.Hotkey.SS58() != l1.Validator.Hotkey.SS58() || l2.Miners[2].UID != l1.Miners[2].UID {
		t.Fatal("second bootstrap did not reuse wallets, subnet and registrations")
	}
	m2, _ := c.Metagraph(ctx, l1.NetUID)
	if len(m2.Neurons) != 4 {
		t.Fatalf("second bootstrap registered again: %d neurons", len(m2.Neurons))
	}
	if bal, _ := c.Balance(ctx, l1.Owner.Coldkey.SS58()); bal != ownerBal {
		t.Fatalf("owner balance changed from %v to %v on a second run", ownerBal, bal)
	}
	if bal, _ := c.Balance(ctx, l1.Validator.Coldkey.SS58()); bal != validatorBal {
		t.Fatalf("validator balance changed from %v to %v on a second run", validatorBal, bal)
	}
	nets, _ := c.Subnets(ctx)
	if len(nets) != 1 {
		t.Fatalf("%d subnets, want 1", len(nets))
	}

	// More miners on a later run add to the same subnet.
	opts.Miners = 5
	l3, err := Bootstrap(ctx, c, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(l3.Miners) != 5 || l3.Miners[4].UID == 0 {
		t.Fatalf("grown layout: %+v", l3.Miners)
	}
}

func TestBootstrapRefusesNegativeMiners(t *testing.T) {
	if _, err := Bootstrap(context.Background(), nil, Options{Miners: -1}); err == nil {
		t.Fatal("negative miner count accepted")
	}
}

func TestParseSimGPUs(t *testing.T) {
	table := market.DefaultGPUTable()
	tests := []struct {
		name    string
		specs   []string
		miners  int
		want    []string
		wantErr bool
	}{
		{"defaults for three", DefaultSimGPUs, 3, []string{"1 × NVIDIA H200", "1 × NVIDIA H100 80GB HBM3", "1 × NVIDIA A100-SXM4-80GB"}, false},
		{"repeats for more miners", []string{"NVIDIA H200", "2xNVIDIA H100"}, 3, []string{"1 × NVIDIA H200", "2 × NVIDIA H100", "1 × NVIDIA H200"}, false},
		{"first entries for fewer miners", DefaultSimGPUs, 1, []string{"1 × NVIDIA H200"}, false},
		{"no miners", nil, 0, nil, false},
		{"unknown model", []string{"NVIDIA Imaginary"}, 1, nil, true},
		{"too many GPUs", []string{"9xNVIDIA H200"}, 1, nil, true},
		{"nothing for miners", nil, 2, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSimGPUs(table, tt.specs, tt.miners)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i].String() != tt.want[i] {
					t.Errorf("miner %d: %s, want %s", i, got[i], tt.want[i])
				}
			}
		})
	}
	g, _ := ParseSimGPUs(table, []string{"2xNVIDIA H200"}, 1)
	if spec := g[0].Spec(); spec != "2xNVIDIA H200" {
		t.Errorf("spec %q", spec)
	}
	devs := g[0].Devices(5)
	if len(devs) != 2 || devs[1].UUID != "GPU-devnet-5-1" || devs[0].CapacityMiB != 143771 {
		t.Errorf("devices %+v", devs)
	}
	if SplitSimGPUs(" a, ,b ")[1] != "b" {
		t.Error("SplitSimGPUs")
	}
}

func TestMinerIP(t *testing.T) {
	for i, want := range map[int]string{0: "127.0.0.2", 1: "127.0.0.3", 253: "127.0.0.255", 254: "127.0.1.0"} {
		if got := MinerIP(i); got != want {
			t.Errorf("MinerIP(%d) = %s, want %s", i, got, want)
		}
	}
}

func TestCheckStatic(t *testing.T) {
	if err := CheckStatic("/etc/passwd"); err == nil {
		t.Error("a text file passed as a static binary")
	}
	// The dynamic loader itself has no PT_INTERP; a program using it has.
	for _, p := range []string{"/usr/bin/env", "/bin/ls"} {
		if err := CheckStatic(p); err == nil {
			t.Logf("%s is static here", p)
		} else if !strings.Contains(err.Error(), "dynamically linked") && !strings.Contains(err.Error(), "not an ELF") {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := os.Stat(scratch.BusyboxPath); err == nil {
		if err := CheckStatic(scratch.BusyboxPath); err != nil {
			t.Errorf("busybox-static: %v", err)
		}
	}
}

func TestWriteEndpoints(t *testing.T) {
	dir := t.TempDir()
	if err := WriteEndpoints(dir, map[string]string{"validator.metrics": "http://127.0.0.1:2/metrics", "chain": "http://127.0.0.1:1", MinerName(0) + ".dashboard": "http://127.0.0.1:3/"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, EndpointsFile))
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"chain\": \"http://127.0.0.1:1\",\n  \"miner-0.dashboard\": \"http://127.0.0.1:3/\",\n  \"validator.metrics\": \"http://127.0.0.1:2/metrics\"\n}\n"
	if string(b) != want {
		t.Fatalf("endpoints.json:\n%s\nwant\n%s", b, want)
	}
	if st, _ := os.Stat(filepath.Join(dir, EndpointsFile)); st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", st.Mode())
	}
}
