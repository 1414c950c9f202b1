package local

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
)

// snapshot is the observable state a refused call must not change.
type snapshot struct {
	balances  map[string]subnet.Balance
	metagraph *subnet.Metagraph
	issuance  subnet.Balance
}

func (w *world) snapshot(tb testing.TB, accounts ...*keys.Keypair) snapshot {
	tb.Helper()
	ctx := context.Background()
	s := snapshot{balances: map[string]subnet.Balance{}, issuance: checkIssuance(tb, w.n)}
	for _, a := range accounts {
		s.balances[a.SS58()] = must[subnet.Balance](tb)(w.c.Balance(ctx, a.SS58()))
	}
	s.metagraph = must[*subnet.Metagraph](tb)(w.c.Metagraph(ctx, w.netuid))
	return s
}

func (w *world) unchanged(tb testing.TB, before snapshot, accounts ...*keys.Keypair) {
	tb.Helper()
	after := w.snapshot(tb, accounts...)
	if !reflect.DeepEqual(before, after) {
		tb.Fatalf("state changed by a refused call:\nbefore %+v\nafter  %+v", before, after)
	}
}

func TestFaucetAndTransfer(t *testing.T) {
	ctx := context.Background()
	n := testNode(t, func(g *Genesis) { g.FaucetLimit = subnet.TAO(100) })
	c := dialNode(t, n)
	a, b := key(t, "//Alice"), key(t, "//Bob")
	if got := must[subnet.Balance](t)(c.Faucet(ctx, a.SS58(), subnet.TAO(10))); got != subnet.TAO(10) {
		t.Fatalf("faucet returned %s", got)
	}
	must[subnet.Balance](t)(c.Faucet(ctx, a.SS58(), subnet.TAO(5)))
	if got := checkIssuance(t, n); got != subnet.TAO(15) {
		t.Fatalf("issuance = %s, want 15", got)
	}
	for _, tc := range []struct {
		name   string
		addr   string
		amount subnet.Balance
	}{
		{"zero", a.SS58(), 0},
		{"above limit", a.SS58(), subnet.TAO(101)},
		{"bad address", "5notanaddress", 1},
	} {
		t.Run("faucet "+tc.name, func(t *testing.T) {
			_, err := c.Faucet(ctx, tc.addr, tc.amount)
			wantCode(t, err, subnet.EINVALID)
		})
	}

	fee := DefaultGenesis().Fee
	if err := c.Transfer(ctx, a, b.SS58(), subnet.TAO(4)); err != nil {
		t.Fatal(err)
	}
	if got := must[subnet.Balance](t)(c.Balance(ctx, a.SS58())); got != subnet.TAO(11)-fee {
		t.Fatalf("sender balance = %s, want 11 τ − fee", got)
	}
	if got := must[subnet.Balance](t)(c.Balance(ctx, b.SS58())); got != subnet.TAO(4) {
		t.Fatalf("receiver balance = %s, want 4 τ", got)
	}
	if got := checkIssuance(t, n); got != subnet.TAO(15)-fee {
		t.Fatalf("issuance = %s, want 15 τ − fee (destroyed)", got)
	}
	// Refusals leave both balances as they are.
	for _, tc := range []struct {
		name   string
		dest   string
		amount subnet.Balance
		code   string
	}{
		{"insufficient", b.SS58(), subnet.TAO(11), subnet.EINSUFFICIENTBALANCE},
		{"fee not covered", b.SS58(), subnet.TAO(11) - fee, subnet.EINSUFFICIENTBALANCE},
		{"zero", b.SS58(), 0, subnet.EINVALID},
		{"bad dest", "nope", 1, subnet.EINVALID},
	} {
		t.Run("transfer "+tc.name, func(t *testing.T) {
			ba, bb := must[subnet.Balance](t)(c.Balance(ctx, a.SS58())), must[subnet.Balance](t)(c.Balance(ctx, b.SS58()))
			wantCode(t, c.Transfer(ctx, a, tc.dest, tc.amount), tc.code)
			if must[subnet.Balance](t)(c.Balance(ctx, a.SS58())) != ba || must[subnet.Balance](t)(c.Balance(ctx, b.SS58())) != bb {
				t.Fatal("balances changed by a refused transfer")
			}
		})
	}
}

func TestCreateSubnet(t *testing.T) {
	ctx := context.Background()
	n := testNode(t, nil)
	c := dialNode(t, n)
	owner, poor := key(t, "//Alice"), key(t, "//Bob")
	must[subnet.Balance](t)(c.Faucet(ctx, owner.SS58(), subnet.TAO(1)))
	for want := subnet.NetUID(1); want <= 3; want++ {
		got := must[subnet.NetUID](t)(c.CreateSubnet(ctx, owner, uint16(want)*10))
		if got != want {
			t.Fatalf("netuid = %d, want %d", got, want)
		}
		if h := must[subnet.Hyperparameters](t)(c.Hyperparameters(ctx, got)); h.Tempo != uint16(want)*10 || h.Burn != subnet.TAO(1) || h.MaxAllowedUIDs != 256 {
			t.Fatalf("hyperparameters = %+v", h)
		}
	}
	if got := must[subnet.NetUID](t)(c.CreateSubnet(ctx, owner, 0)); got != 4 {
		t.Fatalf("netuid = %d", got)
	} else if h := must[subnet.Hyperparameters](t)(c.Hyperparameters(ctx, got)); h.Tempo != 360 {
		t.Fatalf("default tempo = %d, want 360", h.Tempo)
	}
	if got := must[subnet.Balance](t)(c.Balance(ctx, owner.SS58())); got != subnet.TAO(1)-4*DefaultGenesis().Fee {
		t.Fatalf("owner balance = %s: the fee of 4 creations not charged", got)
	}
	_, err := c.CreateSubnet(ctx, poor, 0)
	wantCode(t, err, subnet.EINSUFFICIENTBALANCE)
	list := must[[]SubnetInfo](t)(c.Subnets(ctx))
	if len(list) != 4 || list[0].Owner != owner.SS58() || list[3].NetUID != 4 {
		t.Fatalf("subnets = %+v", list)
	}
	_, err = c.Hyperparameters(ctx, 9)
	wantCode(t, err, subnet.ENOSUBNET)
	_, err = c.Metagraph(ctx, 9)
	wantCode(t, err, subnet.ENOSUBNET)
}

func TestSetHyperparameters(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, nil)
	u16 := func(v uint16) *uint16 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	burn := subnet.TAO(0.5)
	err := w.c.SetHyperparameters(ctx, w.owner, w.netuid, HyperparameterUpdate{
		Tempo: u16(5), ImmunityPeriod: u64(3), WeightsVersion: u64(7), Burn: &burn, MaxAllowedUIDs: u16(4),
	})
	if err != nil {
		t.Fatal(err)
	}
	h := must[subnet.Hyperparameters](t)(w.c.Hyperparameters(ctx, w.netuid))
	if h.Tempo != 5 || h.ImmunityPeriod != 3 || h.WeightsVersionKey != 7 || h.Burn != burn || h.MaxAllowedUIDs != 4 || h.WeightsRateLimit != 100 {
		t.Fatalf("hyperparameters = %+v", h)
	}
	wantCode(t, w.c.SetHyperparameters(ctx, key(t, "//Bob"), w.netuid, HyperparameterUpdate{Tempo: u16(1)}), subnet.EUNAUTHORIZED)
	wantCode(t, w.c.SetHyperparameters(ctx, w.owner, w.netuid, HyperparameterUpdate{Tempo: u16(0)}), subnet.EINVALID)
	wantCode(t, w.c.SetHyperparameters(ctx, w.owner, 42, HyperparameterUpdate{}), subnet.ENOSUBNET)
	w.register(t, key(t, "//C1"), key(t, "//C1/h1"), 10)
	w.register(t, key(t, "//C1"), key(t, "//C1/h2"), 0)
	wantCode(t, w.c.SetHyperparameters(ctx, w.owner, w.netuid, HyperparameterUpdate{MaxAllowedUIDs: u16(1)}), subnet.EINVALID)
	if h2 := must[subnet.Hyperparameters](t)(w.c.Hyperparameters(ctx, w.netuid)); h2 != h {
		t.Fatalf("refused update changed hyperparameters: %+v", h2)
	}
}

func TestBurnedRegister(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, nil)
	g := DefaultGenesis()
	cold, other, poor := key(t, "//Bob"), key(t, "//Charlie"), key(t, "//Dave")
	hot1, hot2 := key(t, "//Bob/1"), key(t, "//Bob/2")
	must[subnet.Balance](t)(w.c.Faucet(ctx, cold.SS58(), subnet.TAO(10)))
	must[subnet.Balance](t)(w.c.Faucet(ctx, other.SS58(), subnet.TAO(10)))
	must[subnet.Balance](t)(w.c.Faucet(ctx, poor.SS58(), g.Burn)) // the fee is missing

	if burn := must[subnet.Balance](t)(w.c.BurnCost(ctx, w.netuid)); burn != g.Burn {
		t.Fatalf("burn = %s", burn)
	}
	uid := must[subnet.UID](t)(w.c.BurnedRegister(ctx, cold, w.netuid, hot1.SS58()))
	if uid != 0 {
		t.Fatalf("first uid = %d", uid)
	}
	if got := must[subnet.Balance](t)(w.c.Balance(ctx, cold.SS58())); got != subnet.TAO(10)-g.Burn-g.Fee {
		t.Fatalf("balance after registration = %s", got)
	}
	checkIssuance(t, w.n)

	all := []*keys.Keypair{cold, other, poor}
	for _, tc := range []struct {
		name    string
		coldkey *keys.Keypair
		netuid  subnet.NetUID
		hotkey  string
		code    string
	}{
		{"same block", cold, w.netuid, hot2.SS58(), subnet.ERATELIMITED},
		{"already registered", cold, w.netuid, hot1.SS58(), subnet.EALREADY},
		{"hotkey of another coldkey", other, w.netuid, hot1.SS58(), subnet.EUNAUTHORIZED},
		{"no subnet", cold, 99, hot2.SS58(), subnet.ENOSUBNET},
		{"bad hotkey", cold, w.netuid, "5Fake", subnet.EINVALID},
		{"burn + fee not covered", poor, w.netuid, key(t, "//Dave/1").SS58(), subnet.EINSUFFICIENTBALANCE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.code != subnet.ERATELIMITED {
				advance(t, w.n, 1)
			}
			before := w.snapshot(t, all...)
			uid, err := w.c.BurnedRegister(ctx, tc.coldkey, tc.netuid, tc.hotkey)
			wantCode(t, err, tc.code)
			if tc.code == subnet.EALREADY && uid != 0 {
				t.Fatalf("EALREADY with uid %d, want 0", uid)
			}
			w.unchanged(t, before, all...)
		})
	}
	advance(t, w.n, 1)
	if uid := must[subnet.UID](t)(w.c.BurnedRegister(ctx, cold, w.netuid, hot2.SS58())); uid != 1 {
		t.Fatalf("second uid = %d", uid)
	}
	u, ok, err := w.c.UIDForHotkey(ctx, w.netuid, hot2.SS58())
	if err != nil || !ok || u != 1 {
		t.Fatalf("UIDForHotkey = %d, %v, %v", u, ok, err)
	}
	if _, ok, _ := w.c.UIDForHotkey(ctx, w.netuid, other.SS58()); ok {
		t.Fatal("unregistered hotkey found")
	}
	if nets := must[[]subnet.NetUID](t)(w.c.NetUIDsForHotkey(ctx, hot1.SS58())); !reflect.DeepEqual(nets, []subnet.NetUID{w.netuid}) {
		t.Fatalf("NetUIDsForHotkey = %v", nets)
	}
	if n := must[uint16](t)(w.c.SubnetworkN(ctx, w.netuid)); n != 2 {
		t.Fatalf("SubnetworkN = %d", n)
	}
	m := must[*subnet.Metagraph](t)(w.c.Metagraph(ctx, w.netuid))
	if nr, _ := m.ByUID(1); nr.Hotkey != hot2.SS58() || nr.Coldkey != cold.SS58() || nr.RegisteredAt != m.Block {
		t.Fatalf("neuron 1 = %+v", nr)
	}
}

func TestRegistrationsPerBlock(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, func(g *Genesis) { g.MaxRegistrationsPerBlock = 3 })
	cold := key(t, "//Bob")
	must[subnet.Balance](t)(w.c.Faucet(ctx, cold.SS58(), subnet.TAO(100)))
	for i := range 3 {
		if _, err := w.c.BurnedRegister(ctx, cold, w.netuid, key(t, "//Bob/"+string(rune('a'+i))).SS58()); err != nil {
			t.Fatal(err)
		}
	}
	_, err := w.c.BurnedRegister(ctx, cold, w.netuid, key(t, "//Bob/z").SS58())
	wantCode(t, err, subnet.ERATELIMITED)
	advance(t, w.n, 1)
	if uid := must[subnet.UID](t)(w.c.BurnedRegister(ctx, cold, w.netuid, key(t, "//Bob/z").SS58())); uid != 3 {
		t.Fatalf("uid = %d", uid)
	}
}

func TestPruning(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, func(g *Genesis) {
		g.MaxAllowedUIDs = 3
		g.ImmunityPeriod = 10
		g.Tempo = 1000
	})
	cA, cB, cC, cD := key(t, "//A"), key(t, "//B"), key(t, "//C"), key(t, "//D")
	hA, hB, hC, hD := key(t, "//A/h"), key(t, "//B/h"), key(t, "//C/h"), key(t, "//D/h")
	w.register(t, cA, hA, 100) // uid 0, the validator
	w.register(t, cB, hB, 10)  // uid 1, a miner A weights
	w.register(t, cC, hC, 10)  // uid 2, a miner no one weights
	if err := w.c.AddStake(ctx, cA, w.netuid, hA.SS58(), subnet.TAO(50)); err != nil {
		t.Fatal(err)
	}
	if err := w.c.AddStake(ctx, cC, w.netuid, hC.SS58(), subnet.TAO(1)); err != nil {
		t.Fatal(err)
	}
	w.grantPermits(t)
	if err := w.c.SetWeights(ctx, hA, w.netuid, []subnet.UID{1}, []uint16{65535}, 0); err != nil {
		t.Fatal(err)
	}
	must[subnet.Balance](t)(w.c.Faucet(ctx, cD.SS58(), subnet.TAO(10)))

	// Everyone is still immune: the subnet is full.
	advance(t, w.n, 1)
	before := w.snapshot(t, cD)
	_, err := w.c.BurnedRegister(ctx, cD, w.netuid, hD.SS58())
	wantCode(t, err, subnet.EFULL)
	w.unchanged(t, before, cD)

	// An epoch gives A dividends and B incentive; C earns nothing.
	if err := w.c.SetHyperparameters(ctx, w.owner, w.netuid, HyperparameterUpdate{Tempo: ptr[uint16](1)}); err != nil {
		t.Fatal(err)
	}
	advance(t, w.n, 10)
	m := must[*subnet.Metagraph](t)(w.c.Metagraph(ctx, w.netuid))
	for _, nr := range m.Neurons {
		t.Logf("uid %d emission %s incentive %.3f dividends %.3f", nr.UID, nr.Emission, nr.Incentive, nr.Dividends)
	}
	if a, _ := m.ByUID(0); a.Emission == 0 {
		t.Fatal("validator earned nothing")
	}
	if b, _ := m.ByUID(1); b.Emission == 0 {
		t.Fatal("weighted miner earned nothing")
	}
	if c, _ := m.ByUID(2); c.Emission != 0 {
		t.Fatalf("unweighted miner earned %s", c.Emission)
	}
	if err := w.c.SetHyperparameters(ctx, w.owner, w.netuid, HyperparameterUpdate{Tempo: ptr[uint16](1000)}); err != nil {
		t.Fatal(err)
	}
	balC := must[subnet.Balance](t)(w.c.Balance(ctx, cC.SS58()))
	nC, _ := must[*subnet.Metagraph](t)(w.c.Metagraph(ctx, w.netuid)).ByUID(2)
	stakeC := nC.Stake // 1 TAO and what the permits' epoch paid on it
	if stakeC < subnet.TAO(1) {
		t.Fatalf("C's stake %s, want at least 1 TAO", stakeC)
	}

	uid := must[subnet.UID](t)(w.c.BurnedRegister(ctx, cD, w.netuid, hD.SS58()))
	if uid != 2 {
		t.Fatalf("D took uid %d, want 2 (lowest emission)", uid)
	}
	m = must[*subnet.Metagraph](t)(w.c.Metagraph(ctx, w.netuid))
	d, _ := m.ByUID(2)
	if d.Hotkey != hD.SS58() || d.Coldkey != cD.SS58() || d.Stake != 0 || d.Emission != 0 || d.Incentive != 0 || d.RegisteredAt != m.Block {
		t.Fatalf("replaced neuron = %+v", d)
	}
	if _, ok := m.ByHotkey(hC.SS58()); ok {
		t.Fatal("pruned hotkey still in the metagraph")
	}
	if got := must[subnet.Balance](t)(w.c.Balance(ctx, cC.SS58())); got != balC+stakeC {
		t.Fatalf("pruned coldkey balance = %s, want %s + its stake %s", got, balC, stakeC)
	}
	checkIssuance(t, w.n)

	// D is immune now; among A and B (same emission order is not
	// guaranteed) the pruned one is the lower emission.
	advance(t, w.n, 1)
	cE, hE := key(t, "//E"), key(t, "//E/h")
	must[subnet.Balance](t)(w.c.Faucet(ctx, cE.SS58(), subnet.TAO(10)))
	uid = must[subnet.UID](t)(w.c.BurnedRegister(ctx, cE, w.netuid, hE.SS58()))
	a, _ := m.ByUID(0)
	b, _ := m.ByUID(1)
	want := subnet.UID(0)
	if b.Emission < a.Emission {
		want = 1
	}
	if uid != want {
		t.Fatalf("E took uid %d, want %d (A %s, B %s)", uid, want, a.Emission, b.Emission)
	}
}

func TestPrunableOrder(t *testing.T) {
	mk := func(uid subnet.UID, em subnet.Balance, inc float64, reg uint64) neuronState {
		return neuronState{Neuron: subnet.Neuron{UID: uid, Emission: em, Incentive: inc, RegisteredAt: reg}}
	}
	for _, tc := range []struct {
		name    string
		neurons []neuronState
		want    subnet.UID
		ok      bool
	}{
		{"lowest emission", []neuronState{mk(0, 5, 0, 0), mk(1, 3, 0.9, 0), mk(2, 4, 0, 0)}, 1, true},
		{"tie: lowest incentive", []neuronState{mk(0, 3, 0.5, 0), mk(1, 3, 0.2, 5), mk(2, 4, 0, 0)}, 1, true},
		{"tie: oldest", []neuronState{mk(0, 3, 0.2, 7), mk(1, 3, 0.2, 5), mk(2, 3, 0.2, 6)}, 1, true},
		{"tie: lowest uid", []neuronState{mk(0, 3, 0.2, 5), mk(1, 3, 0.2, 5)}, 0, true},
		{"immune skipped", []neuronState{mk(0, 0, 0, 95), mk(1, 9, 0.9, 10)}, 1, true},
		{"all immune", []neuronState{mk(0, 0, 0, 95), mk(1, 0, 0, 91)}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := prunable(tc.neurons, 100, 10)
			if ok != tc.ok || (ok && got.UID != tc.want) {
				t.Fatalf("prunable = %d, %v; want %d, %v", got.UID, ok, tc.want, tc.ok)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// grantPermits runs one epoch of w's subnet now (tempo 1 for one block,
// then tempo back), so the staked uids get their validator permits.
func (w *world) grantPermits(tb testing.TB) {
	tb.Helper()
	ctx := context.Background()
	hp := must[subnet.Hyperparameters](tb)(w.c.Hyperparameters(ctx, w.netuid))
	if err := w.c.SetHyperparameters(ctx, w.owner, w.netuid, HyperparameterUpdate{Tempo: ptr[uint16](1)}); err != nil {
		tb.Fatal(err)
	}
	advance(tb, w.n, 1)
	if err := w.c.SetHyperparameters(ctx, w.owner, w.netuid, HyperparameterUpdate{Tempo: ptr(hp.Tempo)}); err != nil {
		tb.Fatal(err)
	}
}

func TestAddStake(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, nil)
	fee := DefaultGenesis().Fee
	cold, hot, stranger := key(t, "//Bob"), key(t, "//Bob/h"), key(t, "//Eve")
	w.register(t, cold, hot, 20)
	bal := must[subnet.Balance](t)(w.c.Balance(ctx, cold.SS58()))
	if err := w.c.AddStake(ctx, cold, w.netuid, hot.SS58(), subnet.TAO(5)); err != nil {
		t.Fatal(err)
	}
	if got := must[subnet.Balance](t)(w.c.Balance(ctx, cold.SS58())); got != bal-subnet.TAO(5)-fee {
		t.Fatalf("balance = %s, want %s − 5 τ − fee", got, bal)
	}
	nr := must[subnet.Neuron](t)(w.c.Neuron(ctx, w.netuid, hot.SS58()))
	if nr.Stake != subnet.TAO(5) {
		t.Fatalf("stake = %s", nr.Stake)
	}
	// Delegation: another coldkey stakes to the same hotkey.
	must[subnet.Balance](t)(w.c.Faucet(ctx, stranger.SS58(), subnet.TAO(3)))
	if err := w.c.AddStake(ctx, stranger, w.netuid, hot.SS58(), subnet.TAO(2)); err != nil {
		t.Fatal(err)
	}
	if nr := must[subnet.Neuron](t)(w.c.Neuron(ctx, w.netuid, hot.SS58())); nr.Stake != subnet.TAO(7) {
		t.Fatalf("stake = %s, want 7 τ", nr.Stake)
	}
	checkIssuance(t, w.n)
	all := []*keys.Keypair{cold, stranger}
	for _, tc := range []struct {
		name   string
		netuid subnet.NetUID
		hotkey string
		amount subnet.Balance
		code   string
	}{
		{"insufficient", w.netuid, hot.SS58(), subnet.TAO(1000), subnet.EINSUFFICIENTBALANCE},
		{"unregistered hotkey", w.netuid, stranger.SS58(), subnet.TAO(1), subnet.ENOTREGISTERED},
		{"no subnet", 77, hot.SS58(), subnet.TAO(1), subnet.ENOSUBNET},
		{"zero", w.netuid, hot.SS58(), 0, subnet.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := w.snapshot(t, all...)
			wantCode(t, w.c.AddStake(ctx, cold, tc.netuid, tc.hotkey, tc.amount), tc.code)
			w.unchanged(t, before, all...)
		})
	}
}

func TestServeAxon(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, nil)
	cold, hot := key(t, "//Bob"), key(t, "//Bob/h")
	w.register(t, cold, hot, 10)
	ax := subnet.AxonInfo{IP: "127.0.0.1", Port: 8091, Version: 10002000, Protocol: 4}
	if err := w.c.ServeAxon(ctx, hot, w.netuid, ax); err != nil {
		t.Fatal(err)
	}
	nr := must[subnet.Neuron](t)(w.c.Neuron(ctx, w.netuid, hot.SS58()))
	block := must[uint64](t)(w.c.CurrentBlock(ctx))
	want := subnet.AxonInfo{Block: block, Version: 10002000, IP: "127.0.0.1", Port: 8091, IPType: 4, Protocol: 4}
	if nr.Axon != want || !nr.Axon.Served() {
		t.Fatalf("axon = %+v, want %+v", nr.Axon, want)
	}
	// The same axon again is a no-op, not a rate-limit refusal.
	if err := w.c.ServeAxon(ctx, hot, w.netuid, ax); err != nil {
		t.Fatalf("re-serving the same axon: %v", err)
	}
	changed := ax
	changed.Port = 9000
	for _, tc := range []struct {
		name   string
		hotkey *keys.Keypair
		netuid subnet.NetUID
		axon   subnet.AxonInfo
		code   string
	}{
		{"rate limited", hot, w.netuid, changed, subnet.ERATELIMITED},
		{"unregistered", cold, w.netuid, ax, subnet.ENOTREGISTERED},
		{"no subnet", hot, 99, ax, subnet.ENOSUBNET},
		{"bad ip", hot, w.netuid, subnet.AxonInfo{IP: "300.1.1.1", Port: 1}, subnet.EINVALID},
		{"unspecified ip", hot, w.netuid, subnet.AxonInfo{IP: "0.0.0.0", Port: 1}, subnet.EINVALID},
		{"ip type mismatch", hot, w.netuid, subnet.AxonInfo{IP: "::1", Port: 1, IPType: 4}, subnet.EINVALID},
		{"port zero", hot, w.netuid, subnet.AxonInfo{IP: "10.0.0.1"}, subnet.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.code != subnet.ERATELIMITED {
				advance(t, w.n, DefaultGenesis().ServingRateLimit)
			}
			before := w.snapshot(t)
			wantCode(t, w.c.ServeAxon(ctx, tc.hotkey, tc.netuid, tc.axon), tc.code)
			w.unchanged(t, before)
		})
	}
	advance(t, w.n, DefaultGenesis().ServingRateLimit)
	if err := w.c.ServeAxon(ctx, hot, w.netuid, subnet.AxonInfo{IP: "::1", Port: 9000, Version: 1}); err != nil {
		t.Fatal(err)
	}
	if nr := must[subnet.Neuron](t)(w.c.Neuron(ctx, w.netuid, hot.SS58())); nr.Axon.IP != "::1" || nr.Axon.IPType != 6 || nr.Axon.Addr() != "[::1]:9000" {
		t.Fatalf("axon = %+v", nr.Axon)
	}
}

func TestSetWeights(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, func(g *Genesis) { g.MinAllowedWeights = 2 })
	cold, v, m1, m2 := key(t, "//Bob"), key(t, "//Bob/v"), key(t, "//Bob/m1"), key(t, "//Bob/m2")
	w.register(t, cold, v, 10)
	w.register(t, cold, m1, 0)
	w.register(t, cold, m2, 0)
	if err := w.c.SetHyperparameters(ctx, w.owner, w.netuid, HyperparameterUpdate{WeightsVersion: ptr[uint64](5)}); err != nil {
		t.Fatal(err)
	}
	// Before its first epoch the subnet has granted no validator permit:
	// a hotkey may set only its self-weight.
	wantCode(t, w.c.SetWeights(ctx, v, w.netuid, []subnet.UID{1, 2}, []uint16{65535, 100}, 5), subnet.EINVALIDWEIGHTS)
	if err := w.c.AddStake(ctx, cold, w.netuid, v.SS58(), subnet.TAO(1)); err != nil {
		t.Fatal(err)
	}
	w.grantPermits(t)
	if nr := must[subnet.Neuron](t)(w.c.Neuron(ctx, w.netuid, v.SS58())); !nr.ValidatorPermit {
		t.Fatal("the staked hotkey got no permit at the epoch")
	}
	uids, weights, err := subnet.MaxUpscale([]subnet.UID{1, 2}, []float64{0.7, 0.3})
	if err != nil {
		t.Fatal(err)
	}
	type call struct {
		hotkey  *keys.Keypair
		netuid  subnet.NetUID
		uids    []subnet.UID
		weights []uint16
		version uint64
	}
	ok := call{v, w.netuid, uids, weights, 5}
	with := func(f func(*call)) call { c := ok; f(&c); return c }
	refusals := []struct {
		name string
		call call
		code string
	}{
		{"unregistered", with(func(c *call) { c.hotkey = cold }), subnet.ENOTREGISTERED},
		{"no subnet", with(func(c *call) { c.netuid = 50 }), subnet.ENOSUBNET},
		{"length mismatch", with(func(c *call) { c.weights = []uint16{1} }), subnet.EINVALIDWEIGHTS},
		{"old version key", with(func(c *call) { c.version = 4 }), subnet.EINVALIDWEIGHTS},
		{"unknown uid", with(func(c *call) { c.uids = []subnet.UID{1, 3} }), subnet.EINVALIDWEIGHTS},
		{"duplicate uid", with(func(c *call) { c.uids = []subnet.UID{1, 1} }), subnet.EINVALIDWEIGHTS},
		{"too few weights", with(func(c *call) { c.uids, c.weights = []subnet.UID{1}, []uint16{9} }), subnet.EINVALIDWEIGHTS},
		{"no validator permit", with(func(c *call) { c.hotkey, c.uids = m1, []subnet.UID{0, 2} }), subnet.EINVALIDWEIGHTS},
	}
	run := func(t *testing.T, c call) error {
		return w.c.SetWeights(ctx, c.hotkey, c.netuid, c.uids, c.weights, c.version)
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			before := w.snapshot(t)
			wantCode(t, run(t, tc.call), tc.code)
			w.unchanged(t, before)
		})
	}
	// The first set is allowed at once.
	if err := run(t, ok); err != nil {
		t.Fatal(err)
	}
	block := must[uint64](t)(w.c.CurrentBlock(ctx))
	if nr := must[subnet.Neuron](t)(w.c.Neuron(ctx, w.netuid, v.SS58())); nr.LastUpdate != block {
		t.Fatalf("last_update = %d, want %d", nr.LastUpdate, block)
	}
	t.Run("rate limited", func(t *testing.T) {
		advance(t, w.n, 99)
		before := w.snapshot(t)
		wantCode(t, run(t, ok), subnet.ERATELIMITED)
		w.unchanged(t, before)
	})
	advance(t, w.n, 1)
	if err := run(t, ok); err != nil {
		t.Fatalf("after the rate limit: %v", err)
	}
	// A row holding only the setter's own uid passes the minimum, and needs
	// no permit.
	advance(t, w.n, 100)
	if err := w.c.SetWeights(ctx, v, w.netuid, []subnet.UID{0}, []uint16{65535}, 5); err != nil {
		t.Fatalf("self weight: %v", err)
	}
	if err := w.c.SetWeights(ctx, m1, w.netuid, []subnet.UID{1}, []uint16{65535}, 5); err != nil {
		t.Fatalf("self weight without a permit: %v", err)
	}
}

// The faucet mints at most the genesis faucet cap over the chain's life,
// across restarts; beyond it it refuses with a clear error and mints
// nothing.
func TestFaucetCap(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	capped := func(g *Genesis) { g.FaucetLimit, g.FaucetCap = subnet.TAO(10), subnet.TAO(25) }
	n := openNode(t, dir, 0, capped)
	c := dialNode(t, n)
	a, b := key(t, "//Alice"), key(t, "//Bob")
	must[subnet.Balance](t)(c.Faucet(ctx, a.SS58(), subnet.TAO(10)))
	must[subnet.Balance](t)(c.Faucet(ctx, b.SS58(), subnet.TAO(10)))
	_, err := c.Faucet(ctx, a.SS58(), subnet.TAO(10))
	wantCode(t, err, subnet.EINSUFFICIENTBALANCE)
	if !strings.Contains(err.Error(), "faucet is exhausted") || !strings.Contains(err.Error(), "5 τ left") {
		t.Errorf("refusal %q does not say the faucet is exhausted and what is left", err)
	}
	if got := checkIssuance(t, n); got != subnet.TAO(20) {
		t.Fatalf("issuance %s after a refused faucet call, want 20 τ", got)
	}
	must[subnet.Balance](t)(c.Faucet(ctx, a.SS58(), subnet.TAO(5))) // exactly to the cap
	c.Close()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	n = openNode(t, dir, 0, capped)
	c = dialNode(t, n)
	_, err = c.Faucet(ctx, b.SS58(), 1)
	wantCode(t, err, subnet.EINSUFFICIENTBALANCE)
	if got := checkIssuance(t, n); got != subnet.TAO(25) {
		t.Fatalf("issuance %s, want the cap 25 τ", got)
	}

	// The default cap keeps the faucet's total far inside the range of an
	// amount, leaving room for emission.
	if g := DefaultGenesis(); g.FaucetCap == 0 || g.FaucetCap > maxAmount/8 || g.faucetCap() != g.FaucetCap {
		t.Errorf("default faucet cap %s, want a positive cap below %s", g.FaucetCap, subnet.Balance(maxAmount/8))
	}
	if g := (Genesis{}); g.faucetCap() != DefaultFaucetCap {
		t.Errorf("a genesis without a cap (an older chain file) gets %s, want the default", g.faucetCap())
	}
}
