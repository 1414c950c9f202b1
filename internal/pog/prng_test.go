package pog

import (
	"testing"
)

// Known-answer vectors of Random123 (kat_vectors, philox4x32 with 10 rounds).
func TestPhiloxKnownAnswers(t *testing.T) {
	tests := []struct {
		name string
		ctr  [4]uint32
		key  [2]uint32
		want [4]uint32
	}{
		{"zero", [4]uint32{0, 0, 0, 0}, [2]uint32{0, 0}, [4]uint32{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
		{"ones", [4]uint32{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, [2]uint32{0xffffffff, 0xffffffff}, [4]uint32{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
		{"pi", [4]uint32{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, [2]uint32{0xa4093822, 0x299f31d0}, [4]uint32{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := philox4x32(tt.ctr, tt.key); got != tt.want {
				t.Errorf("philox4x32(%08x, %08x) = %08x, want %08x", tt.ctr, tt.key, got, tt.want)
			}
		})
	}
}

// The generated values are uniform over [−2048, 2047] with no structure
// linking neighbours: in particular no Hankel pattern A[i][j] = A[i+1][j−1]
// (the original's flaw) and no relation between A and B or between rows.
func TestGeneratorValues(t *testing.T) {
	const n = 1024
	seed := Seed{7, 7, 7}
	rows := make([][]int16, 64)
	for i := range rows {
		rows[i] = make([]int16, n)
		FillRow(rows[i], seed, MatrixA, i)
	}
	var sum, sumSq float64
	lo, hi := int16(0), int16(0)
	var count [4096]int
	for _, r := range rows {
		for _, v := range r {
			sum += float64(v)
			sumSq += float64(v) * float64(v)
			lo, hi = min(lo, v), max(hi, v)
			count[int(v)+2048]++
		}
	}
	total := float64(len(rows) * n)
	mean, variance := sum/total, sumSq/total-(sum/total)*(sum/total)
	if lo != -2048 || hi != 2047 {
		t.Errorf("range [%d, %d], want [−2048, 2047]", lo, hi)
	}
	// Uniform: mean −0.5, variance 4096²/12 ≈ 1.398e6; σ of the mean ≈ 4.6.
	if mean < -25 || mean > 25 || variance < 1.35e6 || variance > 1.45e6 {
		t.Errorf("mean %.1f variance %.3g, want ≈ −0.5 and 1.398e6", mean, variance)
	}
	corr := func(a, b []int16) float64 {
		var s float64
		for k := range a {
			s += float64(a[k]) * float64(b[k])
		}
		return s / float64(len(a)) / 1.398e6
	}
	// Anti-diagonal neighbours, row neighbours and A against B: |r| ≈ 1/√n.
	anti := make([]int16, n-1)
	for k := range anti {
		anti[k] = rows[1][k]
	}
	bRow := make([]int16, n)
	FillRow(bRow, seed, MatrixB, 0)
	other := make([]int16, n)
	FillRow(other, Seed{7, 7, 8}, MatrixA, 0)
	for name, r := range map[string]float64{
		"Hankel A[i][j+1] vs A[i+1][j]": corr(rows[0][1:], anti),
		"rows 0 and 1":                  corr(rows[0], rows[1]),
		"A and B":                       corr(rows[0], bRow),
		"seeds one bit apart":           corr(rows[0], other),
	} {
		if r > 0.15 || r < -0.15 {
			t.Errorf("%s: correlation %.3f", name, r)
		}
	}
	equal := 0
	for k := 0; k+1 < n; k++ {
		if rows[0][k+1] == rows[1][k] {
			equal++
		}
	}
	if equal > 10 {
		t.Errorf("%d of %d anti-diagonal neighbours equal: Hankel structure", equal, n-1)
	}
}

// Expected, which generates and multiplies block by block, equals the
// dot product of the rows FillRow writes.
func TestExpectedMatchesRows(t *testing.T) {
	t.Parallel()
	const n = 1024
	a, b := make([]int16, n), make([]int16, n)
	for k := range 20 {
		seed := Seed{byte(k), 0x5a, byte(3 * k)}
		i, j := (k*37)%n, (k*101+7)%n
		FillRow(a, seed, MatrixA, i)
		FillRow(b, seed, MatrixB, j)
		want := float64(exactDot(a, b)) / (ValueScale * ValueScale)
		if got := Expected(seed, n, i, j); got != want {
			t.Fatalf("Expected(%v, %d, %d, %d) = %v, want %v", seed, n, i, j, got, want)
		}
	}
}
