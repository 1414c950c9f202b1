package pog

import (
	"math"
	"testing"
)

// Accumulation models of an fp32 dot product of fp16-exact values, and of
// the shortcuts a dishonest worker could take, for measuring errors against
// the exact value. The GPU's tensor cores add a block of products (4 on
// Volta, 8 on Ampere, 16 on Hopper) to the fp32 accumulator, and have been
// measured to truncate rather than round (Fasi, Higham, Mikaitis, Pranesh,
// "Numerical behavior of NVIDIA tensor cores", PeerJ CS 2021); the models
// bracket that.

type accModel struct {
	name  string
	block int  // products summed exactly before each accumulation
	rz    bool // accumulate with round toward zero instead of to nearest
}

var honestModels = []accModel{
	{"sequential RN", 1, false},
	{"block16 RN", 16, false},
	{"block4 RZ", 4, true},
	{"block8 RZ", 8, true},
	{"block16 RZ", 16, true},
	{"sequential RZ", 1, true},
}

// toF32 rounds x to float32, to nearest or toward zero.
func toF32(x float64, rz bool) float32 {
	f := float32(x)
	if rz && math.Abs(float64(f)) > math.Abs(x) {
		f = math.Nextafter32(f, 0)
	}
	return f
}

// accumulate returns the model's fp32 result for Σ a[k]·b[k]/2²².
func (m accModel) accumulate(a, b []int16) float64 {
	var acc float32
	for k := 0; k < len(a); k += m.block {
		var blk int64
		for q := k; q < k+m.block && q < len(a); q++ {
			blk += int64(a[q]) * int64(b[q])
		}
		// acc and the block sum are exact in float64 (multiples of 2⁻²²
		// far below 2⁵³·2⁻²²).
		acc = toF32(float64(acc)+float64(blk)/(ValueScale*ValueScale), m.rz)
	}
	return float64(acc)
}

// roundBits rounds k/2048 to a float with bits significant bits (bf16: 8,
// fp8 e4m3: 4), to nearest even.
func roundBits(x float64, bits int) float64 {
	if x == 0 {
		return 0
	}
	e := math.Floor(math.Log2(math.Abs(x)))
	q := math.Ldexp(1, int(e)-bits+1)
	return math.RoundToEven(x/q) * q
}

type errStats struct {
	name       string
	max, sumSq float64
	within     int // errors within the tolerance
	count      int
}

func (s *errStats) add(e, tol float64) {
	e = math.Abs(e)
	s.max = max(s.max, e)
	s.sumSq += e * e
	s.count++
	if e <= tol {
		s.within++
	}
}

func (s *errStats) rms() float64 { return math.Sqrt(s.sumSq / float64(s.count)) }

func (s *errStats) fractionWithin() float64 { return float64(s.within) / float64(s.count) }

// shortcut is a dishonest way to produce C[i][j].
type shortcut struct {
	name string
	f    func(a, b []int16, exact float64) float64
}

var shortcuts = []shortcut{
	{"bf16 inputs", func(a, b []int16, _ float64) float64 { return roundedInputs(a, b, 8) }},
	{"fp8 e4m3 inputs", func(a, b []int16, _ float64) float64 { return roundedInputs(a, b, 4) }},
	{"int8 inputs", func(a, b []int16, _ float64) float64 {
		var s int64
		for k := range a {
			s += int64(math.Round(float64(a[k])/16)) * int64(math.Round(float64(b[k])/16)) * 256
		}
		return float64(s) / (ValueScale * ValueScale)
	}},
	{"C in bf16", func(_, _ []int16, exact float64) float64 { return roundBits(exact, 8) }},
	{"fp16 acc, flush 32", func(a, b []int16, _ float64) float64 {
		var total float32
		for k0 := 0; k0 < len(a); k0 += 32 {
			var acc float32
			for k := k0; k < k0+32; k++ {
				acc = float32(roundBits(float64(acc)+float64(a[k])*float64(b[k])/(ValueScale*ValueScale), 11))
			}
			total += acc
		}
		return float64(total)
	}},
	{"C in fp16", func(_, _ []int16, exact float64) float64 { return roundBits(exact, 11) }},
}

// roundedInputs is one fp32 GEMM element on inputs rounded to bits
// significant bits.
func roundedInputs(a, b []int16, bits int) float64 {
	var s float32
	for k := range a {
		s += float32(roundBits(float64(a[k])/ValueScale, bits) * roundBits(float64(b[k])/ValueScale, bits))
	}
	return float64(s)
}

// measureErrors draws elements of C at size n and returns the error
// statistics of each honest accumulation model and each shortcut, and the
// rms of C.
func measureErrors(tb testing.TB, n, elements int) (honest, cheats []errStats, spread float64) {
	tb.Helper()
	seed := Seed{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	g := newGenerator(seed)
	a := make([]int16, n)
	b := make([]int16, n)
	honest = make([]errStats, len(honestModels))
	for i, m := range honestModels {
		honest[i].name = m.name
	}
	cheats = make([]errStats, len(shortcuts))
	for i, c := range shortcuts {
		cheats[i].name = c.name
	}
	tol := Tolerance(n)
	var sumSq float64
	for e := 0; e < elements; e++ {
		g.fillRow(a, MatrixA, e)
		g.fillRow(b, MatrixB, (e*7919+13)%n)
		exact := float64(exactDot(a, b)) / (ValueScale * ValueScale)
		sumSq += exact * exact
		for i, m := range honestModels {
			honest[i].add(m.accumulate(a, b)-exact, tol)
		}
		for i, c := range shortcuts {
			cheats[i].add(c.f(a, b, exact)-exact, tol)
		}
	}
	return honest, cheats, math.Sqrt(sumSq / float64(elements))
}

// TestHonestErrorModels measures honest and dishonest errors at
// n = 65,536 against Tolerance: the honest block models stay far inside it,
// the shortcuts that could save time fall outside it often enough that 64
// elements catch them. Run with -v for the figures.
func TestHonestErrorModels(t *testing.T) {
	if testing.Short() {
		t.Skip("measures 64 elements at n = 65,536")
	}
	const n, elements = 65536, 64
	honest, cheats, spread := measureErrors(t, n, elements)
	tol := Tolerance(n)
	t.Logf("n = %d: rms of C %.1f (√n/3 = %.1f), tolerance %.4f", n, spread, math.Sqrt(n)/3, tol)
	for _, s := range append(honest, cheats...) {
		t.Logf("  %-16s rms %.2e  max %.2e  within %d/%d", s.name, s.rms(), s.max, s.within, s.count)
	}
	if spread < 70 || spread > 100 {
		t.Errorf("rms of C = %.1f, want ≈ √n/3 = 85", spread)
	}
	for _, s := range honest {
		limit := tol / 3
		if s.name == "sequential RZ" || s.name == "block4 RZ" {
			continue // no tensor core in the table accumulates like this
		}
		if s.max > limit {
			t.Errorf("%s: honest error %.3g exceeds a third of the tolerance (%.3g)", s.name, s.max, limit)
		}
	}
	// The distribution test: honest models' rms stays under
	// HonestErrorRMS, fp16 accumulation lands above NumericsFactor times
	// it even where each element keeps within the tolerance.
	limit := NumericsFactor * HonestErrorRMS(n)
	for _, s := range honest {
		if s.name != "sequential RZ" && s.name != "block4 RZ" && s.rms() > HonestErrorRMS(n) {
			t.Errorf("%s: honest rms %.3g above HonestErrorRMS %.3g", s.name, s.rms(), HonestErrorRMS(n))
		}
	}
	for _, s := range cheats {
		if s.name == "fp16 acc, flush 32" && s.rms() <= limit {
			t.Errorf("%s: rms %.3g passes the distribution test (limit %.3g)", s.name, s.rms(), limit)
		}
	}
	for _, s := range cheats {
		if s.name == "C in fp16" || s.name == "fp16 acc, flush 32" {
			continue
		}
		// Passing 64 of 64 needs p^64; p ≤ 0.85 makes that ≤ 3e-5.
		if p := s.fractionWithin(); p > 0.85 {
			t.Errorf("%s: %.0f%% of elements within the tolerance, want ≤ 85%%", s.name, 100*p)
		}
	}
}
