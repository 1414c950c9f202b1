package pog

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Seed is the validator's fresh 128-bit secret for one GPU's matrices.
type Seed [16]byte

// String returns the seed in lower-case hex.
func (s Seed) String() string { return hex.EncodeToString(s[:]) }

// ParseSeed parses 32 hex digits.
func ParseSeed(s string) (Seed, error) {
	var out Seed
	if err := decodeHexFixed(out[:], s); err != nil {
		return Seed{}, fmt.Errorf("seed: %w", err)
	}
	return out, nil
}

// Matrix names one of the two generated matrices.
type Matrix uint32

// The two generated matrices. Both are generated as rows along the shared
// dimension: C[i][j] = Σ_k A[i][k]·B[j][k], that is C = A·Bᵀ.
const (
	MatrixA Matrix = 0
	MatrixB Matrix = 1
)

// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
// 3", SC 2011): a counter-based generator, a few multiplies per 128 bits on a
// CPU and on a GPU, with no structure a multiplication could exploit.
const (
	philoxM0 = 0xD2511F53
	philoxM1 = 0xCD9E8D57
	philoxW0 = 0x9E3779B9
	philoxW1 = 0xBB67AE85
)

// philox4x32 returns Philox-4x32-10 of counter c under key k.
func philox4x32(c [4]uint32, k [2]uint32) [4]uint32 {
	c0, c1, c2, c3 := philox(c[0], c[1], c[2], c[3], k[0], k[1])
	return [4]uint32{c0, c1, c2, c3}
}

// philox is Philox-4x32-10 on scalars, which the compiler keeps in
// registers: counter (c0, c1, c2, c3), key (k0, k1).
func philox(c0, c1, c2, c3, k0, k1 uint32) (uint32, uint32, uint32, uint32) {
	for range 10 {
		p0 := uint64(philoxM0) * uint64(c0)
		p1 := uint64(philoxM1) * uint64(c2)
		c0, c1, c2, c3 = uint32(p1>>32)^c1^k0, uint32(p1), uint32(p0>>32)^c3^k1, uint32(p0)
		k0 += philoxW0
		k1 += philoxW1
	}
	return c0, c1, c2, c3
}

// ValuesPerBlock is the number of matrix values one Philox call yields:
// two 12-bit values from each 32-bit word (bits 31..20 and 15..4).
const ValuesPerBlock = 8

// generator yields the values of one seed.
type generator struct {
	key    [2]uint32
	s2, s3 uint32
}

func newGenerator(seed Seed) generator {
	return generator{
		key: [2]uint32{binary.LittleEndian.Uint32(seed[0:]), binary.LittleEndian.Uint32(seed[4:])},
		s2:  binary.LittleEndian.Uint32(seed[8:]),
		s3:  binary.LittleEndian.Uint32(seed[12:]),
	}
}

// block returns the 8 values k ∈ [−2048, 2047] at positions 8b … 8b+7 of row
// row of matrix m: counter (b, row, s2 ⊕ m, s3), key (s0, s1), where s0…s3
// are the seed's little-endian 32-bit words. Word w gives values 2w
// (bits 31..20) and 2w+1 (bits 15..4).
func (g generator) block(m Matrix, row, b uint32) [ValuesPerBlock]int16 {
	w0, w1, w2, w3 := philox(b, row, g.s2^uint32(m), g.s3, g.key[0], g.key[1])
	var out [ValuesPerBlock]int16
	for i, x := range [4]uint32{w0, w1, w2, w3} {
		out[2*i] = int16(x>>20) - 2048
		out[2*i+1] = int16((x>>4)&0xFFF) - 2048
	}
	return out
}

// FillRow writes row row of matrix m for seed into dst as integers k; the
// matrix value is k/2048. len(dst) is n, a multiple of ValuesPerBlock.
func FillRow(dst []int16, seed Seed, m Matrix, row int) {
	g := newGenerator(seed)
	g.fillRow(dst, m, row)
}

func (g generator) fillRow(dst []int16, m Matrix, row int) {
	for b := 0; b+ValuesPerBlock <= len(dst); b += ValuesPerBlock {
		v := g.block(m, uint32(row), uint32(b/ValuesPerBlock))
		copy(dst[b:b+ValuesPerBlock], v[:])
	}
}

// ValueScale is the denominator of matrix values: x = k/2048, exact in fp16
// with all 11 significant bits used; products k_a·k_b/2²² are exact in fp32.
const ValueScale = 2048

// fillRowF32 writes row row of matrix m as float32 values k/2048.
func (g generator) fillRowF32(dst []float32, m Matrix, row int) {
	for b := 0; b+ValuesPerBlock <= len(dst); b += ValuesPerBlock {
		v := g.block(m, uint32(row), uint32(b/ValuesPerBlock))
		for i, k := range v {
			dst[b+i] = float32(k) * (1.0 / ValueScale)
		}
	}
}

// exactDot returns Σ a[k]·b[k] exactly.
func exactDot(a, b []int16) int64 {
	var s0, s1, s2, s3 int64
	b = b[:len(a)]
	k := 0
	for ; k+4 <= len(a); k += 4 {
		s0 += int64(int32(a[k]) * int32(b[k]))
		s1 += int64(int32(a[k+1]) * int32(b[k+1]))
		s2 += int64(int32(a[k+2]) * int32(b[k+2]))
		s3 += int64(int32(a[k+3]) * int32(b[k+3]))
	}
	for ; k < len(a); k++ {
		s0 += int64(int32(a[k]) * int32(b[k]))
	}
	return s0 + s1 + s2 + s3
}

// Expected returns C[i][j] for seed and size n exactly: Σ_k k_a·k_b / 2²²,
// computed in int64 from row i of A and row j of B in O(n). The rows are
// generated block by block and multiplied as they come, without being
// stored: this is the validator's main cost (2n/8 Philox calls per
// element).
func Expected(seed Seed, n, i, j int) float64 {
	g := newGenerator(seed)
	ka, kb := g.s2^uint32(MatrixA), g.s2^uint32(MatrixB)
	var s int64
	for b := range uint32(n / ValuesPerBlock) {
		a0, a1, a2, a3 := philox(b, uint32(i), ka, g.s3, g.key[0], g.key[1])
		b0, b1, b2, b3 := philox(b, uint32(j), kb, g.s3, g.key[0], g.key[1])
		// Eight products of 12-bit values fit an int32 (8 · 2²² = 2²⁵).
		s += int64(wordDot(a0, b0) + wordDot(a1, b1) + wordDot(a2, b2) + wordDot(a3, b3))
	}
	return float64(s) / (ValueScale * ValueScale)
}

// wordDot multiplies the two values of word x by those of word y (see
// block) and adds the products.
func wordDot(x, y uint32) int32 {
	return (int32(x>>20)-2048)*(int32(y>>20)-2048) + (int32(x>>4&0xFFF)-2048)*(int32(y>>4&0xFFF)-2048)
}

// KernelWords returns the words a GPU kernel needs to generate matrix m for
// seed: the Philox key (k0, k1) and the counter's constant words c2, c3; the
// counter of row r, block b is (b, r, c2, c3).
func KernelWords(seed Seed, m Matrix) (k0, k1, c2, c3 uint32) {
	g := newGenerator(seed)
	return g.key[0], g.key[1], g.s2 ^ uint32(m), g.s3
}
