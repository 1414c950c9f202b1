package pog

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"testing"

	"github.com/nicompute/nicompute/internal/market"
)

// BenchmarkVerifyGPU is the validator's CPU time for one GPU of a session
// at the n it picks for the model: decoding the GPU's proofs line, the 64
// elements (per element two rows of n values from Philox, an exact dot
// product, a leaf hash and a ⌈log2 Leaves(n)⌉-sibling path), the errors'
// rms, and the 64 residency openings (two paths and the sums of a chunk
// each). The proofs open made-up chunks holding the exact values in a
// made-up tree whose root they lead to (sparseTree), so every check
// passes and does all its work. cpu-ms/GPU is the process's CPU time per
// GPU (the work is single-threaded, so on a busy machine it is the figure
// to read, not ns/op); cpu-s/sweep extrapolates it to a sweep of 256
// miners with 8 such GPUs each.
func BenchmarkVerifyGPU(b *testing.B) {
	for _, name := range []string{"NVIDIA H200", "NVIDIA A100-SXM4-80GB", "NVIDIA RTX A6000"} {
		m, ok := market.DefaultGPUTable().Lookup(name)
		if !ok {
			b.Fatalf("no model %q", name)
		}
		n := ChooseN(&m, 0)
		b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
			f := newVerifyFixture(b, n)
			b.ReportAllocs()
			cpu0, ok := processCPU()
			for b.Loop() {
				f.verify(b)
			}
			cpu1, _ := processCPU()
			if ok {
				perGPU := (cpu1 - cpu0).Seconds() / float64(b.N)
				b.ReportMetric(perGPU*1e3, "cpu-ms/GPU")
				b.ReportMetric(perGPU*256*MaxGPUs, "cpu-s/sweep")
			}
		})
	}
}

// verifyFixture is one GPU's commitment, challenge and honest answer.
type verifyFixture struct {
	n     int
	seed  Seed
	nonce Seed
	root  Hash
	roots []Hash
	ch    ChallengeRequest
	line  []byte
	ns    []int
}

func newVerifyFixture(tb testing.TB, n int) *verifyFixture {
	tb.Helper()
	rnd := mrand.New(mrand.NewPCG(uint64(n), 7))
	f := &verifyFixture{n: n, seed: Seed{42}, nonce: Seed{43}, ns: []int{n}}
	cells, err := ChooseCells(detRand(1), n, DefaultChallenges)
	if err != nil {
		tb.Fatal(err)
	}
	ops, err := ChooseOpenings(detRand(2), n)
	if err != nil {
		tb.Fatal(err)
	}
	f.ch = ChallengeRequest{Type: TypeChallenge, GPUs: [][]Cell{cells}, Openings: [][]Opening{ops}}

	// C's tree over the challenged chunks (each holding its exact value)
	// and the opened ones (random bytes).
	chunks := map[int]*Chunk{}
	for _, c := range cells {
		var vals [ChunkValues]float32
		vals[c.J%ChunkValues] = float32(Expected(f.seed, n, c.I, c.J))
		var ck Chunk
		encodeChunk(&ck, vals[:])
		chunks[ChunkIndex(n, c.I, c.J)] = &ck
	}
	for _, op := range ops {
		if chunks[op.Chunk] == nil {
			var ck Chunk
			for i := range ck {
				ck[i] = byte(rnd.UintN(256))
			}
			chunks[op.Chunk] = &ck
		}
	}
	leaves := map[int]Hash{}
	for k, ck := range chunks {
		leaves[k] = LeafHash(ck[:])
	}
	tree := newSparseTree(Leaves(n), leaves, 0)
	f.root = tree.root()

	gp := GPUProofs{}
	for _, c := range cells {
		k := ChunkIndex(n, c.I, c.J)
		gp.Proofs = append(gp.Proofs, Proof{I: c.I, J: c.J, Chunk: *chunks[k], Path: tree.path(k)})
	}
	// Each pass's output tree over the leaves holding the opened chunks'
	// sums, under weights that follow from the previous pass's root.
	prev := f.root
	for pass := range ResidencyPasses {
		w := NewResidencyWeights(f.nonce, pass, prev)
		outs := map[int]*Chunk{}
		for _, op := range ops {
			if op.Pass != pass {
				continue
			}
			l := op.Chunk / ChunksPerOutputLeaf
			if outs[l] == nil {
				outs[l] = new(Chunk)
			}
			putSums(outs[l][:], op.Chunk%ChunksPerOutputLeaf, w.Sums(chunks[op.Chunk][:]))
		}
		hashes := map[int]Hash{}
		for l, out := range outs {
			hashes[l] = LeafHash(out[:])
		}
		ot := newSparseTree(OutputLeaves(n), hashes, pass+1)
		for _, op := range ops {
			if op.Pass != pass {
				continue
			}
			l := op.Chunk / ChunksPerOutputLeaf
			gp.Openings = append(gp.Openings, OpeningProof{Pass: pass, Chunk: op.Chunk, Data: *chunks[op.Chunk],
				Path: tree.path(op.Chunk), Out: *outs[l], OutPath: ot.path(l)})
		}
		prev = ot.root()
		f.roots = append(f.roots, prev)
	}
	line, err := encodeLine(ProofsResponse{Type: TypeProofs, GPUs: []GPUProofs{gp}})
	if err != nil {
		tb.Fatal(err)
	}
	f.line = line[:len(line)-1]
	f.verify(tb)
	return f
}

// verify does what a validator does with one GPU's answer.
func (f *verifyFixture) verify(tb testing.TB) {
	p, err := DecodeProofs(f.line, f.ch, f.ns)
	if err != nil {
		tb.Fatal(err)
	}
	gp := p.GPUs[0]
	if err := VerifyGPU(f.seed, f.n, f.root, f.ch.GPUs[0], gp.Proofs, Tolerance(f.n), 1); err != nil {
		tb.Fatal(err)
	}
	for k, op := range f.ch.Openings[0] {
		if err := VerifyOpening(f.nonce, f.n, f.root, f.roots, op, gp.Openings[k]); err != nil {
			tb.Fatal(err)
		}
	}
}

// sparseTree is a Merkle tree (BuildTree's shape) over size leaves of
// which only some are known; every other node is a made-up hash of its
// position (salted), so the known leaves' paths and the root are
// consistent without the other leaves ever being computed.
type sparseTree struct {
	size   int
	salt   int
	levels []map[int]Hash
	widths []int
}

func newSparseTree(size int, leaves map[int]Hash, salt int) *sparseTree {
	t := &sparseTree{size: size, salt: salt}
	cur := leaves
	for m := size; ; m = (m + 1) / 2 {
		t.levels = append(t.levels, cur)
		t.widths = append(t.widths, m)
		if m == 1 {
			break
		}
		level := len(t.levels) - 1
		next := map[int]Hash{}
		for idx := range cur {
			p := idx / 2
			if _, done := next[p]; done {
				continue
			}
			if 2*p+1 < m {
				next[p] = NodeHash(t.node(level, 2*p), t.node(level, 2*p+1))
			} else {
				next[p] = t.node(level, 2*p)
			}
		}
		cur = next
	}
	return t
}

// node is the hash at index idx of level.
func (t *sparseTree) node(level, idx int) Hash {
	if h, ok := t.levels[level][idx]; ok {
		return h
	}
	var buf [24]byte
	binary.LittleEndian.PutUint64(buf[0:], uint64(t.salt))
	binary.LittleEndian.PutUint64(buf[8:], uint64(level))
	binary.LittleEndian.PutUint64(buf[16:], uint64(idx))
	return sha256.Sum256(buf[:])
}

func (t *sparseTree) root() Hash { return t.node(len(t.levels)-1, 0) }

// path returns the siblings of leaf idx, from the leaf up (TreePath's
// shape).
func (t *sparseTree) path(idx int) []Hash {
	var out []Hash
	for level, m := range t.widths[:len(t.widths)-1] {
		if idx^1 < m {
			out = append(out, t.node(level, idx^1))
		}
		idx >>= 1
	}
	return out
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
