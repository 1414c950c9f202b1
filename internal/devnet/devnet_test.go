package devnet

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/chain/local"
)

func startChain(t *testing.T, dir string) (*local.Node, *local.Client) {
	t.Helper()
	g := Genesis(10)
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
