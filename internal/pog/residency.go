package pog

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
)

// The residency round proves that each GPU holds its C in its own memory
// after the commitment, and that the GPUs of a lease hold theirs at the
// same time. The validator sends every GPU a fresh nonce at once; each
// GPU then runs ResidencyPasses chained passes over all of C. Pass t reads
// C's bytes as 1,024 signed bytes per chunk and computes, per chunk,
// ResidencySums exact int32 sums Σ_b int8(chunk[b])·w_q[b] with ±1 weights
// derived from the nonce, t and the previous pass's root (C's root for the
// first pass); the sums of ChunksPerOutputLeaf chunks form one 1 KiB leaf
// of the pass's output tree. The GPU answers the passes' roots, and the
// validator times that answer. Afterwards it opens ResidencyOpenings
// random chunks of every pass: the chunk with its path to C's root, and
// the output leaf holding its sums with its path to the pass's root; the
// validator recomputes the sums from the chunk.
//
// Why it works: the sums of a chunk depend on the exact bits of its
// values, not linearly on A and B, so only C itself answers them. A worker
// that kept only the tree's leaves must recompute C (a full GEMM per pass,
// seconds); one that keeps C in host memory moves it over the host bus each
// pass (≥ 4n²/64 GB/s on PCIe 5.0 ×16); one device standing in for g GPUs
// needs g Cs at once. Each pass needs the previous root, so the passes
// cannot overlap. A worker that guesses a fraction f of a pass's leaves
// passes the openings with probability (1 − f)^ResidencyOpenings per pass.
// An honest GPU reads C once per pass at memory speed (int8 GEMM of C with
// a 1024 × 4 matrix): Policy.ResidencyBound is the time bound.

// OutputLeaves is the number of leaves of a residency pass's output tree
// at n.
func OutputLeaves(n int) int { return Leaves(n) / ChunksPerOutputLeaf }

// ResidencyWeights are one pass's ±1 weights: ResidencySums rows of
// ChunkBytes, with the masks Sums computes with.
type ResidencyWeights struct {
	// Rows are the weights.
	Rows [ResidencySums][ChunkBytes]int8
	// plus has 0xff in each byte whose weight is +1, count the number of
	// such weights per row.
	plus  [ResidencySums][ChunkBytes / 8]uint64
	count [ResidencySums]int32
}

// residencyTag separates the weights' hash stream from other uses of
// SHA-256.
var residencyTag = []byte("npg-residency\x00")

// NewResidencyWeights derives pass's weights from the validator's nonce
// and prev, the root the pass follows (C's root for pass 0, else the root
// of pass − 1): bit k of SHA-256(tag ‖ nonce ‖ pass ‖ prev ‖ block) gives
// weight k of block's 256, +1 for a set bit, −1 otherwise; blocks run over
// the rows in order.
func NewResidencyWeights(nonce Seed, pass int, prev Hash) *ResidencyWeights {
	w := new(ResidencyWeights)
	var buf []byte
	buf = append(buf, residencyTag...)
	buf = append(buf, nonce[:]...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(pass))
	buf = append(buf, prev[:]...)
	head := len(buf)
	const perBlock = 8 * sha256.Size
	for blk := 0; blk < ResidencySums*ChunkBytes/perBlock; blk++ {
		buf = binary.LittleEndian.AppendUint32(buf[:head], uint32(blk))
		h := sha256.Sum256(buf)
		for k := range perBlock {
			idx := blk*perBlock + k
			q, b := idx/ChunkBytes, idx%ChunkBytes
			v := int8(-1)
			if h[k/8]>>(k%8)&1 == 1 {
				v = 1
				w.plus[q][b/8] |= 0xff << (8 * (b % 8))
				w.count[q]++
			}
			w.Rows[q][b] = v
		}
	}
	return w
}

// Sums returns the chunk's ResidencySums sums under w: Σ_b int8(chunk[b])
// · w_q[b], exactly. With u = x + 128 (the byte with its sign bit
// flipped) and P the +1 weights, the sum is 2·Σ_P x − Σ x
// = 2·(Σ_P u − 128·|P|) − (Σ u − 128·ChunkBytes); the sums of u run eight
// bytes at a time in 16-bit lanes (at most 128 words × 2 × 255 < 2¹⁶).
func (w *ResidencyWeights) Sums(chunk []byte) [ResidencySums]int32 {
	const flip, lanes = 0x8080808080808080, 0x00ff00ff00ff00ff
	var u [ChunkBytes / 8]uint64
	var all uint64
	for i := range u {
		v := binary.LittleEndian.Uint64(chunk[8*i:]) ^ flip
		u[i] = v
		all += v&lanes + v>>8&lanes
	}
	total := laneSum(all) - 128*ChunkBytes
	var out [ResidencySums]int32
	for q := range out {
		var acc uint64
		plus := &w.plus[q]
		for i, v := range u {
			v &= plus[i]
			acc += v&lanes + v>>8&lanes
		}
		out[q] = 2*(laneSum(acc)-128*w.count[q]) - total
	}
	return out
}

// laneSum adds the four 16-bit lanes of x.
func laneSum(x uint64) int32 {
	return int32(x&0xffff + x>>16&0xffff + x>>32&0xffff + x>>48)
}

// putSums writes the sums of chunk k of an output leaf into leaf.
func putSums(leaf []byte, k int, s [ResidencySums]int32) {
	for q, v := range s {
		binary.LittleEndian.PutUint32(leaf[4*(ResidencySums*k+q):], uint32(v))
	}
}

// leafSums reads the sums of chunk k of an output leaf.
func leafSums(leaf []byte, k int) [ResidencySums]int32 {
	var s [ResidencySums]int32
	for q := range s {
		s[q] = int32(binary.LittleEndian.Uint32(leaf[4*(ResidencySums*k+q):]))
	}
	return s
}

// ChooseOpenings returns ResidencyOpenings uniform chunks of every pass of
// an n×n C, from crypto/rand (or r when not nil).
func ChooseOpenings(r io.Reader, n int) ([]Opening, error) {
	if !validN(n) {
		return nil, fmt.Errorf("openings of n = %d: not a legal size", n)
	}
	out := make([]Opening, 0, ResidencyPasses*ResidencyOpenings)
	for pass := range ResidencyPasses {
		for range ResidencyOpenings {
			c, err := uniform(orRand(r), Leaves(n))
			if err != nil {
				return nil, err
			}
			out = append(out, Opening{Pass: pass, Chunk: c})
		}
	}
	return out, nil
}

// VerifyOpening checks one residency opening of a GPU that committed root
// at n and answered roots: the chunk leads to root, its sums under the
// pass's weights are in the output leaf, and the output leaf leads to the
// pass's root.
func VerifyOpening(nonce Seed, n int, root Hash, roots []Hash, op Opening, p OpeningProof) error {
	if err := op.check(n); err != nil {
		return err
	}
	if len(roots) != ResidencyPasses {
		return fmt.Errorf("%d residency roots, want %d", len(roots), ResidencyPasses)
	}
	if p.Pass != op.Pass || p.Chunk != op.Chunk {
		return fmt.Errorf("opening of pass %d chunk %d, challenged pass %d chunk %d", p.Pass, p.Chunk, op.Pass, op.Chunk)
	}
	got, err := RootFromPath(LeafHash(p.Data[:]), Leaves(n), op.Chunk, p.Path)
	if err != nil {
		return fmt.Errorf("residency chunk %d: %w", op.Chunk, err)
	}
	if got != root {
		return fmt.Errorf("residency chunk %d: merkle path does not lead to the committed root", op.Chunk)
	}
	prev := root
	if op.Pass > 0 {
		prev = roots[op.Pass-1]
	}
	want := NewResidencyWeights(nonce, op.Pass, prev).Sums(p.Data[:])
	if have := leafSums(p.Out[:], op.Chunk%ChunksPerOutputLeaf); have != want {
		return fmt.Errorf("residency pass %d chunk %d: sums %v, want %v", op.Pass, op.Chunk, have, want)
	}
	got, err = RootFromPath(LeafHash(p.Out[:]), OutputLeaves(n), op.Chunk/ChunksPerOutputLeaf, p.OutPath)
	if err != nil {
		return fmt.Errorf("residency pass %d output leaf: %w", op.Pass, err)
	}
	if got != roots[op.Pass] {
		return fmt.Errorf("residency pass %d: output path does not lead to the pass's root", op.Pass)
	}
	return nil
}

// residencyPass is one pass of the residency round as the reference
// computation keeps it: the output leaves and their tree, level 0 first.
type residencyPass struct {
	leaves []Chunk
	levels [][]Hash
}

func (p residencyPass) root() Hash { return p.levels[len(p.levels)-1][0] }

// residencyTrees runs the residency round over the chunks of C (chunk(k)
// returns chunk k's bytes) and returns every pass's output leaves and
// tree: the reference computation the CPU and simulated backends use.
func residencyTrees(n int, root Hash, nonce Seed, chunk func(k int, buf *Chunk)) []residencyPass {
	passes := make([]residencyPass, ResidencyPasses)
	prev := root
	var buf Chunk
	for pass := range passes {
		w := NewResidencyWeights(nonce, pass, prev)
		leaves := make([]Chunk, OutputLeaves(n))
		hashes := make([]Hash, len(leaves))
		for l := range leaves {
			for k := range ChunksPerOutputLeaf {
				chunk(l*ChunksPerOutputLeaf+k, &buf)
				putSums(leaves[l][:], k, w.Sums(buf[:]))
			}
			hashes[l] = LeafHash(leaves[l][:])
		}
		passes[pass] = residencyPass{leaves: leaves, levels: BuildTree(hashes)}
		prev = passes[pass].root()
	}
	return passes
}

// residencyRoots returns the passes' roots.
func residencyRoots(passes []residencyPass) []Hash {
	roots := make([]Hash, len(passes))
	for i, p := range passes {
		roots[i] = p.root()
	}
	return roots
}

// openResidency opens ops against the passes of residencyTrees; levels is
// C's tree.
func openResidency(n int, passes []residencyPass, levels [][]Hash, chunk func(k int, buf *Chunk), ops []Opening) ([]OpeningProof, error) {
	out := make([]OpeningProof, len(ops))
	for i, op := range ops {
		if err := op.check(n); err != nil {
			return nil, err
		}
		p := OpeningProof{Pass: op.Pass, Chunk: op.Chunk}
		chunk(op.Chunk, &p.Data)
		p.Path = TreePath(levels, op.Chunk)
		leaf := op.Chunk / ChunksPerOutputLeaf
		p.Out = passes[op.Pass].leaves[leaf]
		p.OutPath = TreePath(passes[op.Pass].levels, leaf)
		out[i] = p
	}
	return out, nil
}

func orRand(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}
