package local

import (
	"context"
	"fmt"
	"testing"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
)

// BenchmarkEpoch256 measures one tempo of blocks ending in an epoch of a
// full subnet: 256 uids, 64 staked validators each weighting all 256.
func BenchmarkEpoch256(b *testing.B) {
	ctx := context.Background()
	const tempo = 10
	w := newWorld(b, func(g *Genesis) {
		g.Tempo = 1000
		g.MaxRegistrationsPerBlock = 256
		g.MinAllowedWeights = 1
	})
	cold := key(b, "//Bench")
	must[subnet.Balance](b)(w.c.Faucet(ctx, cold.SS58(), subnet.TAO(100_000)))
	hot := make([]*keys.Keypair, 256)
	for i := range hot {
		hot[i] = key(b, fmt.Sprintf("//Bench/%d", i))
		must[subnet.UID](b)(w.c.BurnedRegister(ctx, cold, w.netuid, hot[i].SS58()))
	}
	advance(b, w.n, 1)
	uids := make([]subnet.UID, 256)
	for i := range uids {
		uids[i] = subnet.UID(i)
	}
	for v := range 64 {
		if err := w.c.AddStake(ctx, cold, w.netuid, hot[v].SS58(), subnet.TAO(float64(100+v))); err != nil {
			b.Fatal(err)
		}
	}
	w.grantPermits(b) // only permitted validators may weight other uids
	for v := range 64 {
		weights := make([]uint16, 256)
		for j := range weights {
			weights[j] = uint16(1 + (j*7+v*13)%65535)
		}
		if err := w.c.SetWeights(ctx, hot[v], w.netuid, uids, weights, 0); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.c.SetHyperparameters(ctx, w.owner, w.netuid, HyperparameterUpdate{Tempo: ptr[uint16](tempo)}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		advance(b, w.n, tempo)
	}
}

// BenchmarkSubmit measures signed extrinsics end to end (nonce read, sign,
// HTTP, verify, one SQLite transaction): transfers of one rao.
func BenchmarkSubmit(b *testing.B) {
	ctx := context.Background()
	n := testNode(b, nil)
	c := dialNode(b, n)
	from, to := key(b, "//Alice"), key(b, "//Bob")
	must[subnet.Balance](b)(c.Faucet(ctx, from.SS58(), subnet.TAO(1_000_000)))
	for b.Loop() {
		if err := c.Transfer(ctx, from, to.SS58(), 1); err != nil {
			b.Fatal(err)
		}
	}
}
