package yuma

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// checkInvariants asserts what holds for every epoch: lengths, values in
// [0, 1], vectors that sum to 1 or 0, bonds rows exactly for permit holders.
func checkInvariants(tb testing.TB, p Params, in *Input, out *Output) {
	tb.Helper()
	n := len(in.Stake)
	const eps = 1e-9
	vecs := []struct {
		name string
		v    []float64
		sums bool // sums to 1 or 0
	}{
		{"StakeWeight", out.StakeWeight, true},
		{"Consensus", out.Consensus, false},
		{"Rank", out.Rank, true},
		{"Trust", out.Trust, false},
		{"Incentive", out.Incentive, true},
		{"Dividends", out.Dividends, true},
		{"ValidatorTrust", out.ValidatorTrust, false},
		{"ServerEmission", out.ServerEmission, false},
		{"ValidatorEmission", out.ValidatorEmission, false},
		{"Emission", out.Emission, true},
	}
	for _, vec := range vecs {
		if len(vec.v) != n {
			tb.Fatalf("%s has %d values for %d uids", vec.name, len(vec.v), n)
		}
		sum := 0.0
		for i, x := range vec.v {
			if !(x >= 0 && x <= 1+eps) {
				tb.Errorf("%s[%d] = %v, outside [0, 1]", vec.name, i, x)
			}
			sum += x
		}
		if vec.sums && sum != 0 && math.Abs(sum-1) > eps {
			tb.Errorf("%s sums to %v, want 1 or 0", vec.name, sum)
		}
	}
	if len(out.Active) != n || len(out.ValidatorPermit) != n || len(out.Bonds) != n {
		tb.Fatalf("Active/ValidatorPermit/Bonds lengths %d/%d/%d for %d uids",
			len(out.Active), len(out.ValidatorPermit), len(out.Bonds), n)
	}
	stakeSum := 0.0
	for _, s := range out.StakeWeight {
		stakeSum += s
	}
	if emSum := sum(out.Emission); stakeSum != 0 && math.Abs(emSum-1) > eps {
		tb.Errorf("Emission sums to %v with stake present, want 1", emSum)
	}
	permits := 0
	colSum := make([]float64, n)
	for i, r := range out.Bonds {
		if out.ValidatorPermit[i] {
			permits++
		}
		if (r != nil) != out.ValidatorPermit[i] {
			tb.Errorf("Bonds[%d] = %v with permit %v", i, r, out.ValidatorPermit[i])
		}
		if r != nil && len(r) != n {
			tb.Errorf("Bonds[%d] has %d entries for %d uids", i, len(r), n)
		}
		for j, b := range r {
			if !(b >= 0 && b <= 1+eps) {
				tb.Errorf("Bonds[%d][%d] = %v, outside [0, 1]", i, j, b)
			}
			colSum[j] += b
		}
	}
	for j, s := range colSum {
		if s > 1+eps {
			tb.Errorf("bonds column %d sums to %v", j, s)
		}
	}
	if limit := p.MaxAllowedValidators + 1; permits > limit {
		tb.Errorf("%d permits, at most %d expected", permits, limit)
	}
}

func sum(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s
}

// source yields the values a random input is made of; the property test
// draws them from a PRNG, the fuzzer from its byte string.
type source interface {
	Uint64() uint64
}

// bytesSource reads little-endian words from fuzz data, then zeros.
type bytesSource struct{ b []byte }

func (s *bytesSource) Uint64() uint64 {
	var buf [8]byte
	k := copy(buf[:], s.b)
	s.b = s.b[k:]
	return binary.LittleEndian.Uint64(buf[:])
}

// unit returns a value in [0, 1] that is often exactly 0 or 1.
func unit(src source) float64 {
	switch v := src.Uint64(); v % 4 {
	case 0:
		return 0
	case 1:
		return 1
	default:
		return float64(v>>11) / (1 << 53)
	}
}

// randomStake returns awkward stakes too: zeros, subnormals, huge values.
func randomStake(src source) float64 {
	switch v := src.Uint64(); v % 8 {
	case 0, 1:
		return 0
	case 2:
		return 5e-324
	case 3:
		return math.MaxFloat64 / float64(1+v%3)
	case 4:
		return float64(v % 7)
	default:
		return float64(v>>11) / (1 << 40)
	}
}

// randomInput builds a well-formed, small, arbitrary epoch input.
func randomInput(src source) (Params, *Input) {
	p := Params{
		Kappa:                unit(src),
		BondsMovingAverage:   unit(src),
		BondsPenalty:         unit(src),
		MaxAllowedValidators: int(src.Uint64() % 10),
		ActivityCutoff:       src.Uint64() % 30,
	}
	if src.Uint64()%4 == 0 {
		p.StakeThreshold = float64(src.Uint64() % 4)
	}
	if src.Uint64()%4 == 0 {
		p.ActivityCutoff = math.MaxUint64
	}
	n := int(src.Uint64() % 13)
	in := &Input{
		Block:          20 + src.Uint64()%20,
		LastEpochBlock: src.Uint64() % 40,
		Stake:          make([]float64, n),
		LastUpdate:     make([]uint64, n),
		RegisteredAt:   make([]uint64, n),
		Weights:        make([][]Weight, n-int(src.Uint64()%uint64(n+1))),
		OwnerUID:       int(src.Uint64()%uint64(n+2)) - 1,
	}
	for i := range n {
		in.Stake[i] = randomStake(src)
		in.LastUpdate[i] = src.Uint64() % 40
		in.RegisteredAt[i] = src.Uint64() % 40
	}
	for i := range in.Weights {
		for range src.Uint64() % uint64(n+3) {
			in.Weights[i] = append(in.Weights[i], Weight{
				UID:   int(src.Uint64()%uint64(n+2)) - 1,
				Value: uint16(src.Uint64()),
			})
		}
	}
	if src.Uint64()%2 == 0 {
		in.ValidatorPermit = make([]bool, n)
		for i := range in.ValidatorPermit {
			in.ValidatorPermit[i] = src.Uint64()%2 == 0
		}
	}
	if src.Uint64()%2 == 0 {
		in.Bonds = make([][]float64, n-int(src.Uint64()%uint64(n+1)))
		for i := range in.Bonds {
			in.Bonds[i] = make([]float64, src.Uint64()%uint64(n+1))
			for j := range in.Bonds[i] {
				switch src.Uint64() % 4 {
				case 0:
					in.Bonds[i][j] = 5e-324
				case 1:
					in.Bonds[i][j] = unit(src)
				}
			}
		}
	}
	return p, in
}

// checkRandom runs one epoch on a random input, then a second one from the
// first's bonds and permits, and checks the invariants of both.
func checkRandom(tb testing.TB, src source) {
	tb.Helper()
	p, in := randomInput(src)
	out, err := Epoch(p, in)
	if err != nil {
		tb.Fatalf("Epoch(%+v, %+v): %v", p, in, err)
	}
	checkInvariants(tb, p, in, out)
	in.Block += 10
	in.LastEpochBlock = in.Block - 10
	in.Bonds, in.ValidatorPermit = out.Bonds, out.ValidatorPermit
	out, err = Epoch(p, in)
	if err != nil {
		tb.Fatalf("second Epoch(%+v, %+v): %v", p, in, err)
	}
	checkInvariants(tb, p, in, out)
}

func TestEpochProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		checkRandom(t, r)
		if t.Failed() {
			return
		}
	}
}

func FuzzEpoch(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("two validators, two miners, and some bonds........"))
	seed := make([]byte, 8*200)
	r := rand.New(rand.NewPCG(3, 4))
	for range 4 {
		for i := range seed {
			seed[i] = byte(r.Uint32())
		}
		f.Add(append([]byte(nil), seed...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRandom(t, &bytesSource{data})
	})
}

// BenchmarkEpoch256x64 runs an epoch of a full 256-uid subnet: 64
// validators each weighting all 192 miners, with bonds from a previous
// epoch.
func BenchmarkEpoch256x64(b *testing.B) {
	const n, validators = 256, 64
	r := rand.New(rand.NewPCG(27, 64))
	in := &Input{
		Block:          10_000,
		LastEpochBlock: 9_640,
		Stake:          make([]float64, n),
		LastUpdate:     make([]uint64, n),
		RegisteredAt:   make([]uint64, n),
		Weights:        make([][]Weight, n),
		OwnerUID:       0,
	}
	for i := range n {
		in.LastUpdate[i] = 9_900
		in.RegisteredAt[i] = uint64(r.IntN(9_000))
		if i < validators {
			in.Stake[i] = 1000 + r.Float64()*100_000
			for j := validators; j < n; j++ {
				in.Weights[i] = append(in.Weights[i], Weight{UID: j, Value: uint16(r.UintN(65536))})
			}
		} else {
			in.Stake[i] = r.Float64()
		}
	}
	p := DefaultParams()
	prev, err := Epoch(p, in)
	if err != nil {
		b.Fatal(err)
	}
	in.Bonds, in.ValidatorPermit = prev.Bonds, prev.ValidatorPermit
	in.Block, in.LastEpochBlock = in.Block+360, in.Block
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Epoch(p, in); err != nil {
			b.Fatal(err)
		}
	}
}
