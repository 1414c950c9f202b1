package pog

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkVerify65536x64 is the validator's CPU time to verify one GPU's
// 64 proofs at n = 65,536: per element, two rows of 65,536 values from
// Philox, an exact dot product, a leaf hash and a 24-sibling path. Each
// proof opens a made-up chunk holding the exact value, with a made-up path
// whose fold is the root it is checked against, so every check passes.
func BenchmarkVerify65536x64(b *testing.B) {
	const n, k = 65536, DefaultChallenges
	seed := Seed{42}
	cells, err := ChooseCells(detRand(1), n, k)
	if err != nil {
		b.Fatal(err)
	}
	proofs := make([]Proof, k)
	roots := make([]Hash, k)
	for q, c := range cells {
		p := Proof{I: c.I, J: c.J}
		// A chunk holding the exact value, and a random path whose fold
		// is the root this proof is checked against.
		v := float32(Expected(seed, n, c.I, c.J))
		var vals [ChunkValues]float32
		vals[c.J%ChunkValues] = v
		encodeChunk(&p.Chunk, vals[:])
		p.Path = make([]Hash, PathLen(Leaves(n), ChunkIndex(n, c.I, c.J)))
		for s := range p.Path {
			p.Path[s] = Hash{byte(s), byte(q)}
		}
		r, err := RootFromPath(LeafHash(p.Chunk[:]), Leaves(n), ChunkIndex(n, c.I, c.J), p.Path)
		if err != nil {
			b.Fatal(err)
		}
		proofs[q], roots[q] = p, r
	}
	b.ReportAllocs()
	for b.Loop() {
		for q, c := range cells {
			if _, err := VerifyProof(seed, n, roots[q], c, proofs[q], Tolerance(n)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkCPUWorker reports the cpu backend's phase times at a few n.
func BenchmarkCPUWorker(b *testing.B) {
	for _, n := range []int{256, 512, 1024} {
		b.Run(fmt.Sprint("n=", n), func(b *testing.B) {
			var t Timings
			for b.Loop() {
				r, err := cpuCompute(context.Background(), n, Seed{1}, 0, cpuOptions{})
				if err != nil {
					b.Fatal(err)
				}
				t = r.timings
			}
			b.ReportMetric(t.GenerateMS, "generate-ms")
			b.ReportMetric(t.MultiplyMS, "multiply-ms")
			b.ReportMetric(t.HashMS, "hash-ms")
			b.ReportMetric(t.TreeMS, "tree-ms")
			b.ReportMetric(Flops(n)/(t.MultiplyMS/1e3)/1e9, "GFLOPS")
		})
	}
}
