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
			if p.a != 0 || p.b != 2*nn || p.c != 4*nn || p.total != pog.WorkingSetBytes(n) {
				t.Fatalf("layout a=%d b=%d c=%d total=%d", p.a, p.b, p.c, p.total)
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
	g := p.gemm()
	if g.x != p.b || g.y != p.a {
		t.Fatalf("operands at %d, %d; want B (%d) then A (%d)", g.x, g.y, p.b, p.a)
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
