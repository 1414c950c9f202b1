package pog

import (
	"fmt"
	"math"
)

// VerifyProof checks one proof against a GPU's commitment: the proof is for
// cell, the chunk's leaf and path lead to root, and the proven C[i][j] is
// within tol (normally Tolerance(n)) of the exact value recomputed from seed
// in O(n).
func VerifyProof(seed Seed, n int, root Hash, cell Cell, p Proof, tol float64) error {
	if !validN(n) {
		return fmt.Errorf("n = %d is not a legal size", n)
	}
	if cell.I < 0 || cell.I >= n || cell.J < 0 || cell.J >= n {
		return fmt.Errorf("cell (%d, %d) outside %d×%d", cell.I, cell.J, n, n)
	}
	if p.I != cell.I || p.J != cell.J {
		return fmt.Errorf("proof for (%d, %d), challenged (%d, %d)", p.I, p.J, cell.I, cell.J)
	}
	got, err := RootFromPath(LeafHash(p.Chunk[:]), Leaves(n), ChunkIndex(n, cell.I, cell.J), p.Path)
	if err != nil {
		return fmt.Errorf("cell (%d, %d): %w", cell.I, cell.J, err)
	}
	if got != root {
		return fmt.Errorf("cell (%d, %d): merkle path does not lead to the committed root", cell.I, cell.J)
	}
	v := float64(ChunkValue(p.Chunk[:], cell.J%ChunkValues))
	want := Expected(seed, n, cell.I, cell.J)
	if d := math.Abs(v - want); !(d <= tol) { // NaN fails too
		return fmt.Errorf("cell (%d, %d): proven %v, exact %v (error %.3g > tolerance %.3g)", cell.I, cell.J, v, want, d, tol)
	}
	return nil
}

// VerifyGPU checks one GPU's proofs for its cells and returns the first
// failure, or nil when every proof holds.
func VerifyGPU(seed Seed, n int, root Hash, cells []Cell, proofs []Proof, tol float64) error {
	if len(cells) == 0 {
		return fmt.Errorf("no cells challenged")
	}
	if len(proofs) != len(cells) {
		return fmt.Errorf("%d proofs for %d cells", len(proofs), len(cells))
	}
	for k, c := range cells {
		if err := VerifyProof(seed, n, root, c, proofs[k], tol); err != nil {
			return err
		}
	}
	return nil
}
