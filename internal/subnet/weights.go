package subnet

import (
	"fmt"
	"math"
)

// MaxUpscale converts float weights to the u16 form the chain stores, as
// Bittensor's convert_weights_and_uids_for_emit does: the largest weight
// becomes 65535, the others scale proportionally (rounded), and zero entries
// are dropped. All weights zero yields empty slices. Negative, NaN or
// infinite weights, duplicate uids, and a length mismatch are errors.
func MaxUpscale(uids []UID, weights []float64) ([]UID, []uint16, error) {
	if len(uids) != len(weights) {
		return nil, nil, Errorf(EINVALIDWEIGHTS, "weights length mismatch: %d uids, %d weights", len(uids), len(weights))
	}
	seen := make(map[UID]bool, len(uids))
	maxW := 0.0
	for i, w := range weights {
		if math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
			return nil, nil, Errorf(EINVALIDWEIGHTS, "weight %d (uid %d) is %v: weights must be finite and non-negative", i, uids[i], w)
		}
		if seen[uids[i]] {
			return nil, nil, Errorf(EINVALIDWEIGHTS, "duplicate uid %d", uids[i])
		}
		seen[uids[i]] = true
		maxW = math.Max(maxW, w)
	}
	if maxW == 0 {
		return []UID{}, []uint16{}, nil
	}
	outU := make([]UID, 0, len(uids))
	outW := make([]uint16, 0, len(uids))
	for i, w := range weights {
		v := math.RoundToEven(w / maxW * math.MaxUint16) // Python round(): half to even
		if v == 0 {
			continue
		}
		outU = append(outU, uids[i])
		outW = append(outW, uint16(v))
	}
	return outU, outW, nil
}

// Normalize scales u16 weights to fractions that sum to 1. A zero row stays
// zero.
func Normalize(weights []uint16) []float64 {
	out := make([]float64, len(weights))
	var sum float64
	for _, w := range weights {
		sum += float64(w)
	}
	if sum == 0 {
		return out
	}
	for i, w := range weights {
		out[i] = float64(w) / sum
	}
	return out
}

// ParseUIDWeights validates a pair of parsed uid and weight lists as typed on
// a command line.
func ParseUIDWeights(uids []int, weights []float64) ([]UID, []float64, error) {
	if len(uids) != len(weights) {
		return nil, nil, Errorf(EINVALIDWEIGHTS, "weights length mismatch: %d uids, %d weights", len(uids), len(weights))
	}
	if len(uids) == 0 {
		return nil, nil, Errorf(EINVALIDWEIGHTS, "no weights given")
	}
	out := make([]UID, len(uids))
	for i, u := range uids {
		if u < 0 || u > math.MaxUint16 {
			return nil, nil, Errorf(EINVALIDWEIGHTS, "uid %d out of range", u)
		}
		out[i] = UID(u)
	}
	return out, weights, nil
}

// VersionAsInt encodes a semantic version as Bittensor does
// (major·10⁶ + minor·10³ + patch; 10.2.0 → 10002000).
func VersionAsInt(major, minor, patch int) (uint32, error) {
	if major < 0 || minor < 0 || patch < 0 || minor > 999 || patch > 999 || major > 4000 {
		return 0, fmt.Errorf("version %d.%d.%d out of range", major, minor, patch)
	}
	return uint32(major*1_000_000 + minor*1_000 + patch), nil
}
