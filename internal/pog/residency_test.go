package pog

import (
	mrand "math/rand/v2"
	"testing"
)

// Sums must equal the plain Σ int8(x)·w for every byte value, the
// extremes included.
func TestResidencySumsExact(t *testing.T) {
	t.Parallel()
	r := mrand.New(mrand.NewPCG(1, 2))
	for trial := range 200 {
		w := NewResidencyWeights(Seed{byte(trial)}, trial%ResidencyPasses, Hash{byte(trial >> 3)})
		chunk := make([]byte, ChunkBytes)
		switch trial {
		case 0:
			for i := range chunk {
				chunk[i] = 0x80 // −128 everywhere
			}
		case 1:
			for i := range chunk {
				chunk[i] = 0x7f
			}
		default:
			for i := range chunk {
				chunk[i] = byte(r.IntN(256))
			}
		}
		got := w.Sums(chunk)
		for q := range got {
			var want int32
			for b, x := range chunk {
				want += int32(int8(x)) * int32(w.Rows[q][b])
			}
			if got[q] != want {
				t.Fatalf("trial %d sum %d = %d, want %d", trial, q, got[q], want)
			}
		}
	}
}
