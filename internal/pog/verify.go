package pog

import (
	"errors"
	"fmt"
	"math"

	"github.com/nicompute/nicompute/internal/market"
)

// ProofError is a proof that failed, with the code that classifies it:
// market.PoGBadProof (a path or count wrong) or market.PoGNumerics (a
// value wrong, or the errors' distribution not that of fp32
// accumulation).
type ProofError struct {
	Code market.PoGCode
	Msg  string
}

func (e *ProofError) Error() string { return e.Msg }

func badProof(format string, args ...any) error {
	return &ProofError{Code: market.PoGBadProof, Msg: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of a ProofError in err's chain, or fallback.
func ErrorCode(err error, fallback market.PoGCode) market.PoGCode {
	var pe *ProofError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return fallback
}

// VerifyProof checks one proof against a GPU's commitment: the proof is for
// cell, the chunk's leaf and path lead to root, and the proven C[i][j] is
// within tol (normally Tolerance(n)) of the exact value recomputed from seed
// in O(n). It returns the error proven − exact.
func VerifyProof(seed Seed, n int, root Hash, cell Cell, p Proof, tol float64) (float64, error) {
	if !validN(n) {
		return 0, badProof("n = %d is not a legal size", n)
	}
	if cell.I < 0 || cell.I >= n || cell.J < 0 || cell.J >= n {
		return 0, badProof("cell (%d, %d) outside %d×%d", cell.I, cell.J, n, n)
	}
	if p.I != cell.I || p.J != cell.J {
		return 0, badProof("proof for (%d, %d), challenged (%d, %d)", p.I, p.J, cell.I, cell.J)
	}
	got, err := RootFromPath(LeafHash(p.Chunk[:]), Leaves(n), ChunkIndex(n, cell.I, cell.J), p.Path)
	if err != nil {
		return 0, badProof("cell (%d, %d): %v", cell.I, cell.J, err)
	}
	if got != root {
		return 0, badProof("cell (%d, %d): merkle path does not lead to the committed root", cell.I, cell.J)
	}
	v := float64(ChunkValue(p.Chunk[:], cell.J%ChunkValues))
	want := Expected(seed, n, cell.I, cell.J)
	d := v - want
	if !(math.Abs(d) <= tol) { // NaN fails too
		return d, &ProofError{Code: market.PoGNumerics,
			Msg: fmt.Sprintf("cell (%d, %d): proven %v, exact %v (error %.3g > tolerance %.3g)", cell.I, cell.J, v, want, math.Abs(d), tol)}
	}
	return d, nil
}

// VerifyGPU checks one GPU's proofs for its cells and returns the first
// failure, or nil when every proof holds. Besides each element's
// tolerance, the errors together must look like fp32 accumulation: their
// rms at most NumericsFactor × HonestErrorRMS(n) × numerics (numerics ≤ 0
// means 1). Shortcuts that keep each element within the tolerance
// (fp16 accumulation, Strassen) err several times more than that.
func VerifyGPU(seed Seed, n int, root Hash, cells []Cell, proofs []Proof, tol, numerics float64) error {
	if len(cells) == 0 {
		return badProof("no cells challenged")
	}
	if len(proofs) != len(cells) {
		return badProof("%d proofs for %d cells", len(proofs), len(cells))
	}
	var sumSq float64
	for k, c := range cells {
		d, err := VerifyProof(seed, n, root, c, proofs[k], tol)
		if err != nil {
			return err
		}
		sumSq += d * d
	}
	if numerics <= 0 {
		numerics = 1
	}
	rms := math.Sqrt(sumSq / float64(len(cells)))
	if limit := numerics * NumericsFactor * HonestErrorRMS(n); rms > limit {
		return &ProofError{Code: market.PoGNumerics,
			Msg: fmt.Sprintf("the %d errors have an rms of %.3g, above the %.3g fp32 accumulation allows at n = %d: not an fp32-accumulated product", len(cells), rms, limit, n)}
	}
	return nil
}
