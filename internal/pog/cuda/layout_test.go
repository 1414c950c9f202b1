package cuda

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/nicompute/nicompute/internal/pog"
)

func TestPlanLayout(t *testing.T) {
	for _, n := range []int{256, 512, 1024, 92160, pog.MaxN} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			p, err := newPlan(n)
			if err != nil {
				t.Fatal(err)
			}
			nn := uint64(n) * uint64(n)
			if p.b != 0 || p.c != 2*nn || p.a != 4*nn || p.scratch != pog.WorkingSetBytes(n) || p.total != p.scratch+2*uint64(n)*uint64(min(n, tailRows)) {
				t.Fatalf("layout a=%d b=%d c=%d scratch=%d total=%d", p.a, p.b, p.c, p.scratch, p.total)
			}
			last := p.outLevels[len(p.outLevels)-1]
			if end := last[len(last)-1].off + 32; end > p.c || p.sums < p.root()+32 || p.weights < p.root()+32 {
				t.Fatalf("residency buffers end at %d, C starts at %d", end, p.c)
			}
			if got := p.levels[0].count; got != uint64(pog.Leaves(n)) {
				t.Fatalf("%d leaves, want %d", got, pog.Leaves(n))
			}
			top := p.levels[len(p.levels)-1]
			if top.count != 1 || top.off+32 > p.c {
				t.Fatalf("top level %+v overruns C at %d", top, p.c)
			}
			for i := 1; i < len(p.levels); i++ {
				prev, cur := p.levels[i-1], p.levels[i]
				if cur.off != prev.off+32*prev.count || cur.count != (prev.count+1)/2 {
					t.Fatalf("level %d %+v after %+v", i, cur, prev)
				}
			}
			if got, want := p.chunk(n-1, n-1), p.c+4*nn-pog.ChunkBytes; got != want {
				t.Errorf("last chunk at %d, want %d", got, want)
			}
		})
	}
	if _, err := newPlan(300); err == nil {
		t.Error("n = 300 accepted")
	}
}

// The device tree, laid out by plan and built by the level rule, yields the
// same paths as pog.TreePath.
func TestPlanSiblingsMatchMerkle(t *testing.T) {
	const n = 768 // 2,304 leaves: odd counts on the way up
	p, err := newPlan(n)
	if err != nil {
		t.Fatal(err)
	}
	leaves := make([]pog.Hash, pog.Leaves(n))
	for i := range leaves {
		leaves[i] = sha256.Sum256([]byte(fmt.Sprint(i)))
	}
	levels := pog.BuildTree(leaves)
	if len(levels) != len(p.levels) {
		t.Fatalf("%d levels, pog has %d", len(p.levels), len(levels))
	}
	mem := make([]byte, p.c)
	for l, lv := range p.levels {
		for i, h := range levels[l] {
			copy(mem[lv.off+32*uint64(i):], h[:])
		}
	}
	if root := levels[len(levels)-1][0]; string(mem[p.root():p.root()+32]) != string(root[:]) {
		t.Fatal("root offset does not hold the root")
	}
	for _, idx := range []int{0, 1, 2, 1000, len(leaves) - 2, len(leaves) - 1} {
		want := pog.TreePath(levels, idx)
		offs := p.siblings(uint64(idx))
		if len(offs) != len(want) {
			t.Fatalf("leaf %d: %d siblings, want %d", idx, len(offs), len(want))
		}
		for k, off := range offs {
			if string(mem[off:off+32]) != string(want[k][:]) {
				t.Fatalf("leaf %d sibling %d differs", idx, k)
			}
		}
	}
}

// blasGemm computes C = op(X)·op(Y) exactly as BLAS defines it on
// column-major memory.
func blasGemm(g gemm, x, y []float64) []float64 {
	m, n, k := int(g.m), int(g.n), int(g.k)
	c := make([]float64, int(g.ldc)*n)
	opX := func(i, l int) float64 {
		if g.transa == cublasOpN {
			return x[i+l*int(g.lda)]
		}
		return x[l+i*int(g.lda)]
	}
	opY := func(l, j int) float64 {
		if g.transb == cublasOpN {
			return y[l+j*int(g.ldb)]
		}
		return y[j+l*int(g.ldb)]
	}
	for i := range m {
		for j := range n {
			var s float64
			for l := range k {
				s += opX(i, l) * opY(l, j)
			}
			c[i+j*int(g.ldc)] = s
		}
	}
	return c
}

// The GEMM arguments make cuBLAS compute row-major C = A·Bᵀ from row-major
// A and B.
func TestGemmArguments(t *testing.T) {
	const n = 256
	p, err := newPlan(n)
	if err != nil {
		t.Fatal(err)
	}
	blocks := gemmBlocks(n)
	if len(blocks) != 1 || !blocks[0].scratch {
		t.Fatalf("blocks %+v, want one from the scratch", blocks)
	}
	g := p.gemm(blocks[0])
	if g.x != p.b || g.y != p.scratch || g.out != p.c {
		t.Fatalf("operands at %d, %d → %d; want B (%d) then the scratch (%d) → C (%d)", g.x, g.y, g.out, p.b, p.scratch, p.c)
	}
	r := rand.New(rand.NewPCG(1, 2))
	a := make([]float64, n*n)
	b := make([]float64, n*n)
	for i := range a {
		a[i], b[i] = float64(r.IntN(4096)-2048), float64(r.IntN(4096)-2048)
	}
	c := blasGemm(g, b, a)
	for _, cell := range [][2]int{{0, 0}, {0, 1}, {1, 0}, {17, 200}, {255, 3}} {
		i, j := cell[0], cell[1]
		var want float64
		for k := range n {
			want += a[i*n+k] * b[j*n+k]
		}
		if got := c[i*n+j]; got != want {
			t.Errorf("row-major C[%d][%d] = %v, want Σ A[i][k]·B[j][k] = %v", i, j, got, want)
		}
	}
}

func TestKernelWordsMatchGenerator(t *testing.T) {
	seed := pog.Seed{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	k0, k1, c2, c3 := pog.KernelWords(seed, pog.MatrixB)
	if k0 != 0x04030201 || k1 != 0x08070605 || c2 != 0x0c0b0a09^1 || c3 != 0x100f0e0d {
		t.Errorf("KernelWords = %08x %08x %08x %08x", k0, k1, c2, c3)
	}
}

func TestGrid(t *testing.T) {
	for _, tt := range []struct {
		items   uint64
		threads uint32
		want    uint32
	}{{0, 256, 1}, {1, 256, 1}, {256, 256, 1}, {257, 256, 2}, {1 << 40, 128, 1 << 20}} {
		if got := grid(tt.items, tt.threads); got != tt.want {
			t.Errorf("grid(%d, %d) = %d, want %d", tt.items, tt.threads, got, tt.want)
		}
	}
}

// The row blocks cover C once, top to bottom, and none writes over a row
// of A it has not used: block [r0, r1) writes C's bytes [4n·r0, 4n·r1),
// below A's unused rows at [2n² + 2n·r0, 4n²) (offsets from C), except the
// tail, whose rows were copied to the scratch first.
func TestGemmBlocksInPlace(t *testing.T) {
	for _, n := range []int{256, 1024, 1280, 4096, 92160, 151552, pog.MaxN} {
		p, err := newPlan(n)
		if err != nil {
			t.Fatal(err)
		}
		blocks := gemmBlocks(n)
		next := 0
		for i, bl := range blocks {
			if bl.r0 != next || bl.r1 <= bl.r0 {
				t.Fatalf("n = %d: block %d %+v after row %d", n, i, bl, next)
			}
			next = bl.r1
			g := p.gemm(bl)
			nn := uint64(n)
			wEnd := g.out + 4*nn*uint64(bl.r1-bl.r0)
			if g.out != p.c+4*nn*uint64(bl.r0) || wEnd > p.c+4*nn*nn {
				t.Fatalf("n = %d: block %d writes [%d, %d)", n, i, g.out, wEnd)
			}
			unused := p.a + 2*nn*uint64(bl.r0)
			if bl.scratch {
				if i != len(blocks)-1 || bl.r1-bl.r0 > tailRows || g.y != p.scratch {
					t.Fatalf("n = %d: scratch block %d %+v", n, i, bl)
				}
				continue
			}
			if wEnd > unused {
				t.Fatalf("n = %d: block %d writes up to %d, over A's unused rows from %d", n, i, wEnd, unused)
			}
			if g.y != unused || g.n != int32(bl.r1-bl.r0) {
				t.Fatalf("n = %d: block %d reads A at %d (%d rows)", n, i, g.y, g.n)
			}
		}
		if next != n || len(blocks) > 40 {
			t.Fatalf("n = %d: blocks end at %d (%d blocks)", n, next, len(blocks))
		}
	}
}

// The residency GEMM is Wᵀ·X with W the weights as pog lays them out
// ([q][b] at q·1024 + b) and X one chunk per column; its output is each
// chunk's sums in the order of pog's output leaves.
func TestResidencyGemmArguments(t *testing.T) {
	const n = 256
	p, err := newPlan(n)
	if err != nil {
		t.Fatal(err)
	}
	g := p.residencyGemm()
	chunks := pog.Leaves(n)
	if g.m != pog.ResidencySums || int(g.n) != chunks || g.k != pog.ChunkBytes || g.ldc != pog.ResidencySums || g.y != p.c || g.out != p.sums {
		t.Fatalf("residency gemm %+v", g)
	}
	r := rand.New(rand.NewPCG(3, 4))
	w := pog.NewResidencyWeights(pog.Seed{9}, 0, pog.Hash{7})
	x := make([]float64, pog.ChunkBytes*chunks)
	data := make([]byte, len(x))
	for i := range x {
		data[i] = byte(r.IntN(256))
		x[i] = float64(int8(data[i]))
	}
	wf := make([]float64, pog.ResidencySums*pog.ChunkBytes)
	for q := range w.Rows {
		for b, v := range w.Rows[q] {
			wf[q*pog.ChunkBytes+b] = float64(v)
		}
	}
	out := blasGemm(g, wf, x)
	for _, c := range []int{0, 1, 63, 64, chunks - 1} {
		want := w.Sums(data[c*pog.ChunkBytes : (c+1)*pog.ChunkBytes])
		for q := range want {
			if got := out[c*pog.ResidencySums+q]; got != float64(want[q]) {
				t.Fatalf("chunk %d sum %d = %v, want %d", c, q, got, want[q])
			}
		}
	}
}
