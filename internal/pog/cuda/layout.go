package cuda

import (
	"fmt"

	"github.com/nicompute/nicompute/internal/pog"
)

// plan is the device memory layout of one computation at n, in bytes from
// the start of one allocation:
//
//	[0, 2n²)     A, fp16, row-major (row i holds A[i][·])
//	[2n², 4n²)   B, fp16, row-major (row j holds B[j][·]); C = A·Bᵀ
//	[4n², 8n²)   C, fp32, row-major
//
// Once C is computed A and B are dead, and the Merkle tree reuses their
// space from offset 0: level 0 (the leaf hashes) first, each next level
// right after the previous one. All levels together take under twice the
// leaves, n²/4 bytes, far below 4n².
type plan struct {
	n      int
	a, b   uint64 // offsets of A and B
	c      uint64 // offset of C
	total  uint64 // bytes to allocate
	levels []level
}

// level is one tree level: its byte offset and its number of hashes.
type level struct {
	off   uint64
	count uint64
}

func newPlan(n int) (*plan, error) {
	if n < pog.MinN || n > pog.MaxN || n%pog.ChunkValues != 0 {
		return nil, fmt.Errorf("n = %d: want a multiple of %d in [%d, %d]", n, pog.ChunkValues, pog.MinN, pog.MaxN)
	}
	nn := uint64(n) * uint64(n)
	p := &plan{n: n, a: 0, b: 2 * nn, c: 4 * nn, total: 8 * nn}
	off, count := uint64(0), uint64(pog.Leaves(n))
	for {
		p.levels = append(p.levels, level{off: off, count: count})
		if count == 1 {
			break
		}
		off += 32 * count
		count = (count + 1) / 2
	}
	if end := off + 32; end > p.c {
		return nil, fmt.Errorf("n = %d: tree of %d bytes overruns A and B", n, end)
	}
	return p, nil
}

// root is the offset of the root hash.
func (p *plan) root() uint64 { return p.levels[len(p.levels)-1].off }

// chunk is the offset of the chunk holding C[i][j].
func (p *plan) chunk(i, j int) uint64 {
	return p.c + uint64(pog.ChunkIndex(p.n, i, j))*pog.ChunkBytes
}

// siblings returns the offsets of the Merkle path of leaf idx, leaf level
// up, skipping levels where the node is carried up (merkle.go's rule).
func (p *plan) siblings(idx uint64) []uint64 {
	var out []uint64
	for _, l := range p.levels[:len(p.levels)-1] {
		if s := idx ^ 1; s < l.count {
			out = append(out, l.off+32*s)
		}
		idx >>= 1
	}
	return out
}

// gemm holds cublasGemmEx's arguments for C = A·Bᵀ. cuBLAS is
// column-major: row-major A and B read as column-major are Aᵀ and Bᵀ, and
// row-major C is column-major Cᵀ = B·Aᵀ. So the call computes
// Cᵀ = op(X)·op(Y) with X = B's memory transposed (op T: (Bᵀ)ᵀ = B) and
// Y = A's memory as is (op N: Aᵀ), m = n = k = n, every leading dimension n.
type gemm struct {
	transa, transb int32
	m, n, k        int32
	x, y           uint64 // offsets of the first and second operand
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
	cublasCompute32F  = 68
	cublasGemmDefault = -1
)

func (p *plan) gemm() gemm {
	n := int32(p.n)
	return gemm{transa: cublasOpT, transb: cublasOpN, m: n, n: n, k: n, x: p.b, y: p.a, lda: n, ldb: n, ldc: n}
}

// grid returns the launch size for work items with threads per block: one
// thread per item up to maxBlocks blocks, the kernels striding beyond.
func grid(items uint64, threads uint32) uint32 {
	const maxBlocks = 1 << 20
	blocks := (items + uint64(threads) - 1) / uint64(threads)
	return uint32(min(max(blocks, 1), maxBlocks))
}
