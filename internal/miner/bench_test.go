package miner

import (
	"context"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
)

// BenchmarkAxonStatus measures signed Allocate status requests served by
// the miner's axon (signature, nonce and body checks, policy, lease lookup,
// container inspect on the fake runtime, signed answer), from parallel
// dendrite callers over loopback. Compare with BenchmarkVerify in the same
// run: the axon verifies two sr25519 signatures per request and signs two.
//
//	go test ./internal/miner -run '^$' -bench 'AxonStatus|Verify' -benchtime 3s
func BenchmarkAxonStatus(b *testing.B) {
	w := newWorld(b)
	tm := startTestMiner(b, w, nil)
	r := newRenter(b)
	if out, st := tm.call(b, nil, allocReq(r, "", market.Requirement{})); st != 200 {
		b.Fatalf("allocate: %d %+v", st, out)
	}
	req := statusReq(r)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var resp protocol.Allocate
			if _, err := tm.d.Call(context.Background(), tm.target(), protocol.AllocateName, req, &resp, 10*time.Second); err != nil || !resp.Output.Status {
				b.Errorf("status: %v %+v", err, resp.Output)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkVerify is raw sr25519 verification (keys.Verify), one core.
func BenchmarkVerify(b *testing.B) {
	k := mustKey(b, "//Bench")
	msg := []byte("1718000000000000000.5Dendrite.5Axon.6e696331-uuid.a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a")
	sig, err := k.Sign(msg)
	if err != nil {
		b.Fatal(err)
	}
	addr := k.SS58()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if ok, err := keys.Verify(addr, msg, sig); !ok || err != nil {
			b.Fatal("signature does not verify")
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "verify/s")
}
