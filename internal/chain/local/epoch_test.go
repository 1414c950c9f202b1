package local

import (
	"context"
	"math"
	"testing"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
)

func TestEpoch(t *testing.T) {
	ctx := context.Background()
	const tempo = 20
	w := newWorld(t, func(g *Genesis) {
		g.Tempo = tempo
		g.MaxRegistrationsPerBlock = 10
	})
	created := must[uint64](t)(w.c.CurrentBlock(ctx))
	cold := key(t, "//Bob")
	must[subnet.Balance](t)(w.c.Faucet(ctx, cold.SS58(), subnet.TAO(1000)))
	hot := map[string]*keys.Keypair{}
	for _, name := range []string{"v1", "v2", "m1", "m2", "m3"} {
		hot[name] = key(t, "//Bob/"+name)
		must[subnet.UID](t)(w.c.BurnedRegister(ctx, cold, w.netuid, hot[name].SS58()))
	}
	// uids: v1 0, v2 1, m1 2, m2 3, m3 4
	for name, amount := range map[string]float64{"v1": 100, "v2": 50} {
		if err := w.c.AddStake(ctx, cold, w.netuid, hot[name].SS58(), subnet.TAO(amount)); err != nil {
			t.Fatal(err)
		}
	}
	setWeights := func(name string, ws []float64) {
		t.Helper()
		uids, vals, err := subnet.MaxUpscale([]subnet.UID{2, 3, 4}, ws)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.c.SetWeights(ctx, hot[name], w.netuid, uids, vals, 0); err != nil {
			t.Fatal(err)
		}
	}
	// Validator permits come with the subnet's first epoch (the staked
	// uids); until then a hotkey may set only its self-weight.
	advance(t, w.n, created+tempo-must[uint64](t)(w.c.CurrentBlock(ctx)))
	if m := must[*subnet.Metagraph](t)(w.c.Metagraph(ctx, w.netuid)); !m.Neurons[0].ValidatorPermit || !m.Neurons[1].ValidatorPermit {
		t.Fatal("the first epoch granted no permits")
	}
	setWeights("v1", []float64{0.6, 0.3, 0.1})
	setWeights("v2", []float64{0.5, 0.35, 0.15})

	ownerBefore := must[subnet.Balance](t)(w.c.Balance(ctx, w.owner.SS58()))
	before := must[*subnet.Metagraph](t)(w.c.Metagraph(ctx, w.netuid))
	issBefore := checkIssuance(t, w.n)

	// One block short of the epoch: nothing is paid.
	advance(t, w.n, created+2*tempo-1-must[uint64](t)(w.c.CurrentBlock(ctx)))
	if m := must[*subnet.Metagraph](t)(w.c.Metagraph(ctx, w.netuid)); m.Neurons[2].Incentive != 0 {
		t.Fatal("epoch ran early")
	}
	if b := advance(t, w.n, 1); b != created+2*tempo {
		t.Fatalf("block = %d", b)
	}
	m := must[*subnet.Metagraph](t)(w.c.Metagraph(ctx, w.netuid))
	for _, n := range m.Neurons {
		t.Logf("uid %d stake %s permit %v incentive %.4f dividends %.4f emission %s", n.UID, n.Stake, n.ValidatorPermit, n.Incentive, n.Dividends, n.Emission)
	}
	v1, v2, m1, m2, m3 := m.Neurons[0], m.Neurons[1], m.Neurons[2], m.Neurons[3], m.Neurons[4]
	if !(m1.Incentive > m2.Incentive && m2.Incentive > m3.Incentive && m3.Incentive > 0) {
		t.Errorf("incentive not ordered by weights: %.4f %.4f %.4f", m1.Incentive, m2.Incentive, m3.Incentive)
	}
	if v1.Incentive != 0 || v2.Incentive != 0 {
		t.Errorf("validators got incentive: %v %v", v1.Incentive, v2.Incentive)
	}
	if !(v1.Dividends > 0 && v2.Dividends > 0 && v1.Dividends > v2.Dividends) {
		t.Errorf("dividends %.4f %.4f: want both positive, the larger stake first", v1.Dividends, v2.Dividends)
	}
	if !v1.ValidatorPermit || !v2.ValidatorPermit || m1.ValidatorPermit {
		t.Errorf("permits = %v %v %v, want validators only", v1.ValidatorPermit, v2.ValidatorPermit, m1.ValidatorPermit)
	}
	if s := m1.Incentive + m2.Incentive + m3.Incentive; math.Abs(s-1) > 1e-9 {
		t.Errorf("incentive sums to %v", s)
	}

	// Emission: tempo blocks of emission, 18% to the owner, the rest as
	// stake on the hotkeys.
	total := subnet.Balance(tempo) * DefaultGenesis().EmissionPerBlock
	cut := subnet.Balance(mulFrac(uint64(total), 11796, 65535))
	if got := must[subnet.Balance](t)(w.c.Balance(ctx, w.owner.SS58())) - ownerBefore; got != cut {
		t.Errorf("owner received %s, want %s", got, cut)
	}
	var paid subnet.Balance
	for i, n := range m.Neurons {
		paid += n.Emission
		if n.Stake != before.Neurons[i].Stake+n.Emission {
			t.Errorf("uid %d: stake %s, want %s + emission %s", n.UID, n.Stake, before.Neurons[i].Stake, n.Emission)
		}
	}
	if rest := total - cut; paid > rest || rest-paid > 10 {
		t.Errorf("paid %s to uids, want %s", paid, rest)
	}
	if half := (total - cut) / 2; m1.Emission+m2.Emission+m3.Emission < half-10 || m1.Emission+m2.Emission+m3.Emission > half+10 {
		t.Errorf("miners got %s, want half of %s", m1.Emission+m2.Emission+m3.Emission, total-cut)
	}
	if iss := checkIssuance(t, w.n); iss != issBefore+paid+cut {
		t.Errorf("issuance %s, want %s + minted %s", iss, issBefore, paid+cut)
	}

	// The next epoch runs with the stored bonds and permits.
	advance(t, w.n, tempo)
	m = must[*subnet.Metagraph](t)(w.c.Metagraph(ctx, w.netuid))
	if !(m.Neurons[2].Incentive > m.Neurons[3].Incentive && m.Neurons[0].Dividends > 0 && m.Neurons[0].Emission > 0) {
		t.Errorf("second epoch: %+v", m.Neurons)
	}
	checkIssuance(t, w.n)
}

func TestEpochEmptySubnet(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, func(g *Genesis) { g.Tempo = 3 })
	iss := checkIssuance(t, w.n)
	advance(t, w.n, 10)
	if got := checkIssuance(t, w.n); got != iss {
		t.Fatalf("empty subnet minted %s", got-iss)
	}
	// Neurons without stake: nobody earns, nothing is minted.
	w.register(t, key(t, "//Bob"), key(t, "//Bob/h"), 5)
	iss = checkIssuance(t, w.n)
	advance(t, w.n, 6)
	if got := checkIssuance(t, w.n); got != iss {
		t.Fatalf("stakeless subnet minted %s", got-iss)
	}
	if m := must[*subnet.Metagraph](t)(w.c.Metagraph(ctx, w.netuid)); m.Neurons[0].Emission != 0 {
		t.Fatalf("emission %s", m.Neurons[0].Emission)
	}
}

func TestAdvanceLargeJump(t *testing.T) {
	w := newWorld(t, func(g *Genesis) { g.Tempo = 360 })
	w.register(t, key(t, "//Bob"), key(t, "//Bob/h"), 5)
	if err := w.c.AddStake(context.Background(), key(t, "//Bob"), w.netuid, key(t, "//Bob/h").SS58(), subnet.TAO(1)); err != nil {
		t.Fatal(err)
	}
	if b := advance(t, w.n, 3600); b != 3601 {
		t.Fatalf("block = %d", b)
	}
	var epochs, last uint64
	err := w.n.read(context.Background(), func(q queryer) error {
		return q.QueryRowContext(context.Background(), `SELECT epochs, last_epoch FROM subnets WHERE netuid = ?`, w.netuid).Scan(&epochs, &last)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Created at block 0 with tempo 360: epochs at 360, 720, … 3600.
	if epochs != 10 || last != 3600 {
		t.Fatalf("epochs = %d, last = %d; want 10 at 3600", epochs, last)
	}
	checkIssuance(t, w.n)
}

// An epoch whose payout cannot be made (the issuance would leave its range)
// is skipped and logged; blocks keep being sealed.
func TestEpochPayoutOverflowKeepsSealing(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, func(g *Genesis) {
		g.Tempo = 1
		g.EmissionPerBlock = maxAmount / 4
	})
	cold, hot := key(t, "//Bob"), key(t, "//Bob/h")
	w.register(t, cold, hot, 10)
	if err := w.c.AddStake(ctx, cold, w.netuid, hot.SS58(), subnet.TAO(5)); err != nil {
		t.Fatal(err)
	}
	head := w.n.Head()
	for i := range 10 {
		b, err := w.n.Advance(ctx, 1)
		if err != nil || b != head+uint64(i)+1 {
			t.Fatalf("advance %d: block %d, %v", i, b, err)
		}
	}
	iss := checkIssuance(t, w.n)
	if iss < maxAmount/2 {
		t.Fatalf("issuance %s: the payouts before the overflow did not run", iss)
	}
	// Many more epochs, all of whose payouts overflow.
	if b := advance(t, w.n, 50); b != head+60 {
		t.Fatalf("block = %d, want %d", b, head+60)
	}
	if got := checkIssuance(t, w.n); got != iss {
		t.Fatalf("issuance moved from %s to %s with every payout refused", iss, got)
	}
	// Extrinsics still apply.
	if err := w.c.Transfer(ctx, cold, w.owner.SS58(), subnet.TAO(1)); err != nil {
		t.Fatal(err)
	}
}
