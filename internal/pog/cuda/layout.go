package cuda

import (
	"fmt"

	"github.com/nicompute/nicompute/internal/pog"
)

// plan is the device memory layout of one computation at n, in bytes from
// the start of one allocation:
//
//	[0, 2n²)          B, fp16, row-major (row j holds B[j][·]); C = A·Bᵀ
//	[2n², 6n²)        C, fp32, row-major
//	[4n², 6n²)        A, fp16, row-major, inside C's second half
//	[6n², +2n·tail)   scratch for the last tail rows of A
//
// C is computed in row blocks from the top (gemmBlocks): rows [r0, r1) of
// C end at byte 4n·r1 of C, below A's rows from r0 on (at 2n² + 2n·r0),
// so each block overwrites only rows of A already used. Blocks halve the
// rows left; the last tail rows of A are copied to the scratch first. So
// the working set is 6n² (pog.WorkingSetBytes) plus the scratch, and C
// alone fills two thirds of it, which the residency round proves.
//
// Once C is computed B is dead: the Merkle tree takes its space from
// offset 0, level 0 (the leaf hashes) first, each next level right after
// the previous one (all under n²/4 bytes); then the residency round's
// weights (4 KiB), its sums buffer (16 bytes per chunk, n²/16) and its
// ResidencyPasses output trees.
type plan struct {
	n       int
	a, b    uint64 // offsets of A and B
	c       uint64 // offset of C
	scratch uint64 // offset of the tail scratch
	total   uint64 // bytes to allocate
	levels  []level
	// Residency round: weights, sums and each pass's output tree levels.
	weights, sums uint64
	outLevels     [][]level
}

// level is one tree level: its byte offset and its number of hashes.
type level struct {
	off   uint64
	count uint64
}

// tailRows is the most rows of A computed from the scratch.
const tailRows = 1024

func newPlan(n int) (*plan, error) {
	if n < pog.MinN || n > pog.MaxN || n%pog.ChunkValues != 0 {
		return nil, fmt.Errorf("n = %d: want a multiple of %d in [%d, %d]", n, pog.ChunkValues, pog.MinN, pog.MaxN)
	}
	nn := uint64(n) * uint64(n)
	p := &plan{n: n, b: 0, c: 2 * nn, a: 4 * nn, scratch: 6 * nn}
	p.total = p.scratch + 2*uint64(n)*uint64(min(n, tailRows))
	var off uint64
	p.levels, off = treeLevels(0, uint64(pog.Leaves(n)))
	p.weights = align(off)
	p.sums = p.weights + pog.ResidencySums*pog.ChunkBytes
	off = p.sums + 4*pog.ResidencySums*uint64(pog.Leaves(n))
	for range pog.ResidencyPasses {
		var lv []level
		lv, off = treeLevels(align(off), uint64(pog.OutputLeaves(n)))
		p.outLevels = append(p.outLevels, lv)
	}
	if off > p.c {
		return nil, fmt.Errorf("n = %d: trees of %d bytes overrun B", n, off)
	}
	return p, nil
}

// treeLevels lays out the levels of a tree over count leaves from off and
// returns them with the offset after the root.
func treeLevels(off, count uint64) ([]level, uint64) {
	var out []level
	for {
		out = append(out, level{off: off, count: count})
		off += 32 * count
		if count == 1 {
			return out, off
		}
		count = (count + 1) / 2
	}
}

func align(off uint64) uint64 { return (off + 255) &^ 255 }

// root is the offset of the root hash.
func (p *plan) root() uint64 { return p.levels[len(p.levels)-1].off }

// chunk is the offset of the chunk holding C[i][j].
func (p *plan) chunk(i, j int) uint64 {
	return p.c + uint64(pog.ChunkIndex(p.n, i, j))*pog.ChunkBytes
}

// chunkAt is the offset of chunk k of C.
func (p *plan) chunkAt(k int) uint64 { return p.c + uint64(k)*pog.ChunkBytes }

// siblings returns the offsets of the Merkle path of leaf idx, leaf level
// up, skipping levels where the node is carried up (merkle.go's rule).
func (p *plan) siblings(idx uint64) []uint64 { return siblings(p.levels, idx) }

func siblings(levels []level, idx uint64) []uint64 {
	var out []uint64
	for _, l := range levels[:len(levels)-1] {
		if s := idx ^ 1; s < l.count {
			out = append(out, l.off+32*s)
		}
		idx >>= 1
	}
	return out
}

// block is rows [r0, r1) of C, computed from A's rows in place or, for the
// tail, from the scratch.
type block struct {
	r0, r1  int
	scratch bool
}

// gemmBlocks returns the row blocks that compute C over A in place: each
// takes half the rows left (so its output ends below the A rows it has not
// used: 4n·r1 ≤ 2n² + 2n·r0), until at most tailRows are left, which come
// from the scratch.
func gemmBlocks(n int) []block {
	var out []block
	r0 := 0
	for n-r0 > tailRows {
		b := (n - r0) / 2
		out = append(out, block{r0: r0, r1: r0 + b})
		r0 += b
	}
	return append(out, block{r0: r0, r1: n, scratch: true})
}

// gemm holds cublasGemmEx's arguments for C = A·Bᵀ. cuBLAS is
// column-major: row-major A and B read as column-major are Aᵀ and Bᵀ, and
// row-major C is column-major Cᵀ = B·Aᵀ. So the call computes
// Cᵀ = op(X)·op(Y) with X = B's memory transposed (op T: (Bᵀ)ᵀ = B) and
// Y = A's memory as is (op N: Aᵀ), m = n = k = n, every leading dimension n.
type gemm struct {
	transa, transb int32
	m, n, k        int32
	x, y, out      uint64 // offsets of the first and second operand and the result
	lda, ldb, ldc  int32
}

// cuBLAS and CUDA enum values (cublas_api.h, library_types.h). With the
// default math mode cuBLAS uses tensor cores whenever possible, here for
// fp16 inputs with fp32 compute (CUBLAS_COMPUTE_32F: never fp16
// accumulation, which CUBLAS_COMPUTE_32F_FAST_16F would allow).
const (
	cublasOpN         = 0
	cublasOpT         = 1
	cudaR16F          = 2
	cudaR32F          = 0
	cudaR8I           = 3
	cudaR32I          = 10
	cublasCompute32F  = 68
	cublasCompute32I  = 72
	cublasGemmDefault = -1
)

// gemm returns the call for block bl: Cᵀ's columns [r0, r1) = B·Aᵀ's,
// A's rows read in place or from the scratch, written at C's row r0.
func (p *plan) gemm(bl block) gemm {
	n := int32(p.n)
	y := p.a + 2*uint64(p.n)*uint64(bl.r0)
	if bl.scratch {
		y = p.scratch
	}
	return gemm{transa: cublasOpT, transb: cublasOpN, m: n, n: int32(bl.r1 - bl.r0), k: n,
		x: p.b, y: y, out: p.c + 4*uint64(p.n)*uint64(bl.r0), lda: n, ldb: n, ldc: n}
}

// residencyGemm returns the int8 call of one residency pass: the sums
// (column-major ResidencySums × chunks, ld ResidencySums) = Wᵀ·X, W the
// weights (column-major ChunkBytes × ResidencySums) and X C's bytes as
// signed bytes (column-major ChunkBytes × chunks, one column per chunk).
func (p *plan) residencyGemm() gemm {
	return gemm{transa: cublasOpT, transb: cublasOpN, m: pog.ResidencySums, n: int32(pog.Leaves(p.n)), k: pog.ChunkBytes,
		x: p.weights, y: p.c, out: p.sums, lda: pog.ChunkBytes, ldb: pog.ChunkBytes, ldc: pog.ResidencySums}
}

// grid returns the launch size for work items with threads per block: one
// thread per item up to maxBlocks blocks, the kernels striding beyond.
func grid(items uint64, threads uint32) uint32 {
	const maxBlocks = 1 << 20
	blocks := (items + uint64(threads) - 1) / uint64(threads)
	return uint32(min(max(blocks, 1), maxBlocks))
}
