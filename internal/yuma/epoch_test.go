package yuma

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// minority is 1 − κ at the default κ = 32767/65535: 32768/65535 ≈ 0.500008.
// Cumulative stake has to exceed it for a score to be the consensus.

// network returns an input of len(stake) uids at block 100, the previous
// epoch at block 90, every uid registered at block 0 and last updated at
// block 99 (all active, nothing outdated), no weights and no owner.
func network(stake ...float64) *Input {
	n := len(stake)
	in := &Input{
		Block:          100,
		LastEpochBlock: 90,
		Stake:          stake,
		LastUpdate:     make([]uint64, n),
		RegisteredAt:   make([]uint64, n),
		Weights:        make([][]Weight, n),
		OwnerUID:       -1,
	}
	for i := range in.LastUpdate {
		in.LastUpdate[i] = 99
	}
	return in
}

// row builds a weights row from uid, value pairs.
func row(pairs ...int) []Weight {
	var w []Weight
	for k := 0; k+1 < len(pairs); k += 2 {
		w = append(w, Weight{UID: pairs[k], Value: uint16(pairs[k+1])})
	}
	return w
}

// want lists the expected outputs; nil fields are not checked.
type want struct {
	active, permit                                   []bool
	stake, consensus, vtrust, trust, incentive, divs []float64
	server, validator, emission                      []float64
	bonds                                            [][]float64
}

const tol = 1e-12

func checkVec(tb testing.TB, name string, got, want []float64, tol float64) {
	tb.Helper()
	if want == nil {
		return
	}
	if len(got) != len(want) {
		tb.Errorf("%s: got %d values %v, want %d %v", name, len(got), got, len(want), want)
		return
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > tol {
			tb.Errorf("%s[%d] = %.12g, want %.12g (all: %v)", name, i, got[i], want[i], got)
		}
	}
}

func checkBools(tb testing.TB, name string, got, want []bool) {
	tb.Helper()
	if want != nil && !slices.Equal(got, want) {
		tb.Errorf("%s = %v, want %v", name, got, want)
	}
}

func checkWant(tb testing.TB, out *Output, w want, tol float64) {
	tb.Helper()
	checkBools(tb, "Active", out.Active, w.active)
	checkBools(tb, "ValidatorPermit", out.ValidatorPermit, w.permit)
	checkVec(tb, "StakeWeight", out.StakeWeight, w.stake, tol)
	checkVec(tb, "Consensus", out.Consensus, w.consensus, tol)
	checkVec(tb, "ValidatorTrust", out.ValidatorTrust, w.vtrust, tol)
	checkVec(tb, "Trust", out.Trust, w.trust, tol)
	checkVec(tb, "Incentive", out.Incentive, w.incentive, tol)
	checkVec(tb, "Rank", out.Rank, w.incentive, tol)
	checkVec(tb, "Dividends", out.Dividends, w.divs, tol)
	checkVec(tb, "ServerEmission", out.ServerEmission, w.server, tol)
	checkVec(tb, "ValidatorEmission", out.ValidatorEmission, w.validator, tol)
	checkVec(tb, "Emission", out.Emission, w.emission, tol)
	if w.bonds != nil {
		if len(out.Bonds) != len(w.bonds) {
			tb.Fatalf("Bonds has %d rows, want %d", len(out.Bonds), len(w.bonds))
		}
		for i := range w.bonds {
			if (out.Bonds[i] == nil) != (w.bonds[i] == nil) {
				tb.Errorf("Bonds[%d] = %v, want %v", i, out.Bonds[i], w.bonds[i])
				continue
			}
			checkVec(tb, fmt.Sprintf("Bonds[%d]", i), out.Bonds[i], w.bonds[i], tol)
		}
	}
}

func TestEpoch(t *testing.T) {
	tests := []struct {
		name string
		p    func(*Params)
		in   func() *Input
		want want
	}{
		{
			// S = [.75 .25 0 0]; permits to the two staked uids; both rows
			// normalise to [_ _ .25 .75], so C = [0 0 .25 .75] and nothing
			// is clipped: VT = 1, R = .75·W + .25·W = [.25 .75], T = 1.
			// ΔB = [.75·W; .25·W] → columns normalise to [.75; .25] in both
			// miner columns; no old bonds, so B = ΔB normalised.
			// D = [.75·.25 + .75·.75, .25·.25 + .25·.75] = [.75 .25].
			// ΣI + ΣD = 2: E = [.375 .125 .125 .375].
			name: "two validators agree",
			in: func() *Input {
				in := network(3, 1, 0, 0)
				in.Weights[0] = row(2, 1, 3, 3)
				in.Weights[1] = row(2, 1, 3, 3)
				return in
			},
			want: want{
				active:    []bool{true, true, true, true},
				permit:    []bool{true, true, false, false},
				stake:     []float64{.75, .25, 0, 0},
				consensus: []float64{0, 0, .25, .75},
				vtrust:    []float64{1, 1, 0, 0},
				trust:     []float64{0, 0, 1, 1},
				incentive: []float64{0, 0, .25, .75},
				divs:      []float64{.75, .25, 0, 0},
				server:    []float64{0, 0, .125, .375},
				validator: []float64{.375, .125, 0, 0},
				emission:  []float64{.375, .125, .125, .375},
				bonds:     [][]float64{{0, 0, .75, .75}, {0, 0, .25, .25}, nil, nil},
			},
		},
		{
			// S = [.4 .35 .25 0 0]. v0 and v1 put .5/.5 on miners 3 and 4;
			// v2 puts everything (1) on miner 3.
			// C3: sorted (.5,.4) (.5,.35) (1,.25): cum .4 ≤ .500008 < .75 → .5.
			// C4: sorted (0,.25) (.5,.4) (.5,.35): cum .25, then .65 → .5.
			// v2's 1 on miner 3 is clipped to .5: VT = [1 1 .5].
			// R3 = (.4+.35+.25)·.5 = .5, R4 = (.4+.35)·.5 = .375;
			// I = [.5 .375]/.875 = [4/7 3/7].
			// Preranks P3 = .2 + .175 + .25 = .625, P4 = .375:
			// T = [.5/.625 .375/.375] = [.8 1].
			// ΔB (clipped) = [.2 .2; .175 .175; .125 0]; columns /.5 and
			// /.375: B = [.4 8/15; .35 7/15; .25 0].
			// D0 = .4·4/7 + 8/15·3/7 = 3.2/7, D1 = .35·4/7 + 7/15·3/7 =
			// 2.8/7, D2 = .25·4/7 = 1/7 (below its .25 stake share).
			// E = (I + D)/2.
			name: "dissenting validator clipped",
			in: func() *Input {
				in := network(40, 35, 25, 0, 0)
				in.Weights[0] = row(3, 1, 4, 1)
				in.Weights[1] = row(3, 1, 4, 1)
				in.Weights[2] = row(3, 1)
				return in
			},
			want: want{
				consensus: []float64{0, 0, 0, .5, .5},
				vtrust:    []float64{1, 1, .5, 0, 0},
				trust:     []float64{0, 0, 0, .8, 1},
				incentive: []float64{0, 0, 0, 4.0 / 7, 3.0 / 7},
				divs:      []float64{3.2 / 7, 2.8 / 7, 1.0 / 7, 0, 0},
				emission:  []float64{1.6 / 7, 1.4 / 7, .5 / 7, 2.0 / 7, 1.5 / 7},
				bonds: [][]float64{
					{0, 0, 0, .4, 8.0 / 15}, {0, 0, 0, .35, 7.0 / 15}, {0, 0, 0, .25, 0}, nil, nil,
				},
			},
		},
		{
			// k = 2 of three staked validators: v2 (S = .2) has no permit,
			// so its row (all on miner 4) is dropped and its stake is not
			// active: activeS = [.5 .3]/.8 = [.625 .375].
			// C = [_ _ _ 1 0], I = [0 0 0 1 0], ΔB column 3 = [.625 .375].
			// D = [.625 .375 0]; E = [.3125 .1875 0 .5 0].
			name: "validator without permit ignored",
			p:    func(p *Params) { p.MaxAllowedValidators = 2 },
			in: func() *Input {
				in := network(50, 30, 20, 0, 0)
				in.Weights[0] = row(3, 1)
				in.Weights[1] = row(3, 1)
				in.Weights[2] = row(4, 1)
				return in
			},
			want: want{
				permit:    []bool{true, true, false, false, false},
				consensus: []float64{0, 0, 0, 1, 0},
				vtrust:    []float64{1, 1, 0, 0, 0},
				incentive: []float64{0, 0, 0, 1, 0},
				divs:      []float64{.625, .375, 0, 0, 0},
				emission:  []float64{.3125, .1875, 0, .5, 0},
				bonds:     [][]float64{{0, 0, 0, .625, 0}, {0, 0, 0, .375, 0}, nil, nil, nil},
			},
		},
		{
			// Same stakes, but the previous epoch's permits were v1 and v2:
			// this epoch counts v1 and v2 (activeS = [0 .6 .4]) and hands
			// out the new top-2 permits v0 and v1.
			// C3: sorted (0,.4) (1,.6): cum .4 ≤ .500008, then 1 → 1.
			// C4: sorted (0,.6) …: .6 > .500008 → 0; v2's 1 clips to 0.
			// I = [0 0 0 1 0]; ΔB column 3 = [_ .6 0] → B = [_ 1 _];
			// D = [0 1 0]; E = [0 .5 0 .5 0]. v0's new bonds row is empty,
			// v2's is cleared.
			name: "previous permits count this epoch",
			p:    func(p *Params) { p.MaxAllowedValidators = 2 },
			in: func() *Input {
				in := network(50, 30, 20, 0, 0)
				in.ValidatorPermit = []bool{false, true, true, false, false}
				in.Weights[0] = row(4, 1)
				in.Weights[1] = row(3, 1)
				in.Weights[2] = row(4, 1)
				return in
			},
			want: want{
				permit:    []bool{true, true, false, false, false},
				consensus: []float64{0, 0, 0, 1, 0},
				vtrust:    []float64{0, 1, 0, 0, 0},
				incentive: []float64{0, 0, 0, 1, 0},
				divs:      []float64{0, 1, 0, 0, 0},
				emission:  []float64{0, .5, 0, .5, 0},
				bonds:     [][]float64{{0, 0, 0, 0, 0}, {0, 0, 0, 1, 0}, nil, nil, nil},
			},
		},
		{
			// Block 10000, cutoff 5000: v1 updated at 5000 (5000 + 5000 is
			// not < 10000: still active), v2 at 4999 (inactive). v2 keeps
			// its permit, but has no active stake: activeS = [.625 .375 0],
			// it takes no part in the median, and its weight on miner 4 is
			// clipped to C4 = 0 (VT2 = 0). I = [0 0 0 1 0],
			// D = [.625 .375 0], E = [.3125 .1875 0 .5 0].
			name: "inactive validator ignored",
			in: func() *Input {
				in := network(50, 30, 20, 0, 0)
				in.Block = 10000
				in.LastUpdate = []uint64{9990, 5000, 4999, 9990, 9990}
				in.Weights[0] = row(3, 1)
				in.Weights[1] = row(3, 1)
				in.Weights[2] = row(4, 1)
				return in
			},
			want: want{
				active:    []bool{true, true, false, true, true},
				permit:    []bool{true, true, true, false, false},
				consensus: []float64{0, 0, 0, 1, 0},
				vtrust:    []float64{1, 1, 0, 0, 0},
				incentive: []float64{0, 0, 0, 1, 0},
				divs:      []float64{.625, .375, 0, 0, 0},
				emission:  []float64{.3125, .1875, 0, .5, 0},
				bonds:     [][]float64{{0, 0, 0, .625, 0}, {0, 0, 0, .375, 0}, {0, 0, 0, 0, 0}, nil, nil},
			},
		},
		{
			// v0 gives itself half, v1 itself three quarters: both
			// self-weights are dropped, leaving [_ _ 1] in both rows.
			// I = [0 0 1]; D = S = [.6 .4]; E = [.3 .2 .5].
			name: "self-weight masked",
			in: func() *Input {
				in := network(60, 40, 0)
				in.Weights[0] = row(0, 1, 2, 1)
				in.Weights[1] = row(1, 3, 2, 1)
				return in
			},
			want: want{
				consensus: []float64{0, 0, 1},
				vtrust:    []float64{1, 1, 0},
				incentive: []float64{0, 0, 1},
				divs:      []float64{.6, .4, 0},
				emission:  []float64{.3, .2, .5},
			},
		},
		{
			// As above with v0 the subnet owner: its self-weight stays,
			// W0 = [.5 0 .5], W1 = [0 0 1].
			// C0: sorted (0,.4) (.5,.6): .4 ≤ .500008 → .5.
			// C2: sorted (.5,.6) (1,.4): .6 > .500008 → .5; W1 clips to .5.
			// VT = [1 .5]; R = [.6·.5, _, .6·.5 + .4·.5] = [.3 0 .5];
			// I = [.375 0 .625]; P2 = .3 + .4 = .7: T = [1 0 5/7].
			// ΔB = [.3 0 .3; 0 0 .2] → B = [1 _ .6; 0 _ .4].
			// D0 = .375 + .6·.625 = .75, D1 = .4·.625 = .25.
			// E = [(.375+.75)/2, .25/2, .625/2].
			name: "owner keeps self-weight",
			in: func() *Input {
				in := network(60, 40, 0)
				in.OwnerUID = 0
				in.Weights[0] = row(0, 1, 2, 1)
				in.Weights[1] = row(1, 3, 2, 1)
				return in
			},
			want: want{
				consensus: []float64{.5, 0, .5},
				vtrust:    []float64{1, .5, 0},
				trust:     []float64{1, 0, 5.0 / 7},
				incentive: []float64{.375, 0, .625},
				divs:      []float64{.75, .25, 0},
				server:    []float64{.1875, 0, .3125},
				validator: []float64{.375, .125, 0},
				emission:  []float64{.5625, .125, .3125},
			},
		},
		{
			// Threshold 50 drops v1's 40 but not the owner's 5:
			// S = [60 0 5]/65 = [12/13 0 1/13]; the owner has a permit.
			// W0 = [0 1 0], owner W2 = [0 0 1] (its self-weight is kept).
			// C1: sorted (0,1/13) (1,12/13) → 1. C2: (0,12/13) first → 0.
			// I = [0 1 0], D = [1 0 0], E = [.5 .5 0].
			name: "stake threshold spares the owner",
			p:    func(p *Params) { p.StakeThreshold = 50 },
			in: func() *Input {
				in := network(60, 40, 5)
				in.OwnerUID = 2
				in.Weights[0] = row(1, 1)
				in.Weights[1] = row(2, 1)
				in.Weights[2] = row(2, 1)
				return in
			},
			want: want{
				permit:    []bool{true, false, true},
				stake:     []float64{12.0 / 13, 0, 1.0 / 13},
				consensus: []float64{0, 1, 0},
				vtrust:    []float64{1, 0, 0},
				incentive: []float64{0, 1, 0},
				divs:      []float64{1, 0, 0},
				emission:  []float64{.5, .5, 0},
			},
		},
		{
			// Miner 3 re-registered at block 90. v0 last set weights at 90
			// (≤ 90: outdated, its weight to 3 is dropped, W0 = [_ _ 1 0]);
			// v1 at 91 keeps W1 = [_ _ .5 .5].
			// C2: sorted (.5,.4) (1,.6): .4 ≤ .500008 → 1.
			// C3: sorted (0,.6) …: → 0, so v1's .5 on miner 3 clips to 0.
			// VT = [1 .5]; R2 = .6 + .4·.5 = .8 → I = [0 0 1 0];
			// P3 = .4·.5 = .2, T3 = 0. ΔB column 2 = [.6 .2] → [.75 .25].
			// D = [.75 .25]; E = [.375 .125 .5 0].
			name: "outdated weights masked",
			in: func() *Input {
				in := network(60, 40, 0, 0)
				in.RegisteredAt[3] = 90
				in.LastUpdate = []uint64{90, 91, 99, 99}
				in.Weights[0] = row(2, 1, 3, 1)
				in.Weights[1] = row(2, 1, 3, 1)
				return in
			},
			want: want{
				consensus: []float64{0, 0, 1, 0},
				vtrust:    []float64{1, .5, 0, 0},
				trust:     []float64{0, 0, 1, 0},
				incentive: []float64{0, 0, 1, 0},
				divs:      []float64{.75, .25, 0, 0},
				emission:  []float64{.375, .125, .5, 0},
			},
		},
		{
			// No weights: I = D = 0, so the validator share follows active
			// stake [2 1 1]/4.
			name: "all-zero weights follow active stake",
			in:   func() *Input { return network(2, 1, 1) },
			want: want{
				consensus: []float64{0, 0, 0},
				incentive: []float64{0, 0, 0},
				divs:      []float64{0, 0, 0},
				server:    []float64{0, 0, 0},
				validator: []float64{.5, .25, .25},
				emission:  []float64{.5, .25, .25},
			},
		},
		{
			// Only self-weights (all masked), v0 inactive: active stake is
			// [0 1 1]/2.
			name: "self-weights only follow active stake",
			in: func() *Input {
				in := network(2, 1, 1)
				in.Block = 10000
				in.LastUpdate = []uint64{0, 9999, 9999}
				for i := range 3 {
					in.Weights[i] = row(i, 1)
				}
				return in
			},
			want: want{
				active:   []bool{false, true, true},
				emission: []float64{0, .5, .5},
			},
		},
		{
			// Nobody active: emission follows stake itself.
			name: "nobody active follows stake",
			in: func() *Input {
				in := network(2, 1, 1)
				in.Block = 10000
				in.LastUpdate = []uint64{0, 0, 0}
				return in
			},
			want: want{
				active:    []bool{false, false, false},
				validator: []float64{.5, .25, .25},
				emission:  []float64{.5, .25, .25},
			},
		},
		{
			name: "no stake at all",
			in: func() *Input {
				in := network(0, 0, 0)
				in.Weights[0] = row(1, 1)
				return in
			},
			want: want{
				permit:   []bool{false, false, false},
				stake:    []float64{0, 0, 0},
				emission: []float64{0, 0, 0},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultParams()
			if tt.p != nil {
				tt.p(&p)
			}
			in := tt.in()
			out, err := Epoch(p, in)
			if err != nil {
				t.Fatalf("Epoch: %v", err)
			}
			checkWant(t, out, tt.want, tol)
			checkInvariants(t, p, in, out)
		})
	}
}

// TestEpochBondsEMA runs two epochs; the second starts from the first's
// bonds and permits.
func TestEpochBondsEMA(t *testing.T) {
	p := DefaultParams()
	first := network(3, 1, 0, 0)
	first.Weights[0] = row(2, 1, 3, 3)
	first.Weights[1] = row(2, 1, 3, 3)
	prev, err := Epoch(p, first)
	if err != nil {
		t.Fatal(err)
	}
	// Epoch 1 is "two validators agree": B = [.75 .75; .25 .25] on miners
	// 2 and 3.
	second := func() *Input {
		in := network(3, 1, 0, 0)
		in.Block, in.LastEpochBlock = 110, 100
		for i := range in.LastUpdate {
			in.LastUpdate[i] = 106
		}
		in.Bonds = prev.Bonds
		in.ValidatorPermit = prev.ValidatorPermit
		in.Weights[0] = row(2, 1, 3, 3)
		in.Weights[1] = row(3, 1)
		return in
	}

	t.Run("ema", func(t *testing.T) {
		// v1 moves everything to miner 3: W0 = [.25 .75], W1 = [0 1].
		// C2: sorted (0,.25) (.25,.75) → .25. C3: (.75,.75) first → .75,
		// v1's 1 clips to .75 (VT1 = .75).
		// R = [.75·.25, .75·.75 + .25·.75] = [.1875 .75] → I = [.2 .8].
		// ΔB = [.1875 .5625; 0 .1875] → columns [1 0] and [.75 .25].
		// B = .1·ΔB + .9·old = [.1 + .675, .075 + .675; .225, .025 + .225]
		//   = [.775 .75; .225 .25] (columns already sum to 1).
		// D = [.775·.2 + .75·.8, .225·.2 + .25·.8] = [.755 .245].
		// E = [.3775 .1225 .1 .4].
		out, err := Epoch(p, second())
		if err != nil {
			t.Fatal(err)
		}
		checkWant(t, out, want{
			consensus: []float64{0, 0, .25, .75},
			vtrust:    []float64{1, .75, 0, 0},
			incentive: []float64{0, 0, .2, .8},
			divs:      []float64{.755, .245, 0, 0},
			emission:  []float64{.3775, .1225, .1, .4},
			bonds:     [][]float64{{0, 0, .775, .75}, {0, 0, .225, .25}, nil, nil},
		}, tol)
	})

	t.Run("recently registered column reset", func(t *testing.T) {
		// Miner 2 re-registered at block 105, after the last epoch (100):
		// old bonds to it are dropped, so column 2 is .1·[1 0] → [1 0].
		// D = [1·.2 + .75·.8, 0 + .25·.8] = [.8 .2]; E = [.4 .1 .1 .4].
		in := second()
		in.RegisteredAt[2] = 105
		out, err := Epoch(p, in)
		if err != nil {
			t.Fatal(err)
		}
		checkWant(t, out, want{
			incentive: []float64{0, 0, .2, .8},
			divs:      []float64{.8, .2, 0, 0},
			emission:  []float64{.4, .1, .1, .4},
			bonds:     [][]float64{{0, 0, 1, .75}, {0, 0, 0, .25}, nil, nil},
		}, tol)
	})

	t.Run("registered at the last epoch block keeps bonds", func(t *testing.T) {
		// Recently registered means after the epoch block (subtensor
		// compares with LastMechansimStepBlock + 1), so this is "ema".
		in := second()
		in.RegisteredAt[2] = 100
		out, err := Epoch(p, in)
		if err != nil {
			t.Fatal(err)
		}
		checkVec(t, "Dividends", out.Dividends, []float64{.755, .245, 0, 0}, tol)
	})
}

// TestEpochSubtensorBondsTrace replays subtensor's test_bonds
// (pallets/subtensor/src/tests/epoch.rs): four validators with stake 1–4
// weight four servers 1:2:3:4, then one by one switch to self-weight, and
// validator 3 finally puts everything on server 7. The expected values are
// the dividends and emission shares logged in that test's trace; subtensor
// works in I32F32 and stores bonds as u16, hence the tolerance.
func TestEpochSubtensorBondsTrace(t *testing.T) {
	p := DefaultParams()
	p.MaxAllowedValidators = 8
	in := &Input{
		Stake:        []float64{1, 2, 3, 4, 0, 0, 0, 0},
		LastUpdate:   make([]uint64, 8),
		RegisteredAt: make([]uint64, 8),
		Weights:      make([][]Weight, 8),
		OwnerUID:     -1,
	}
	servers := row(4, 16383, 5, 32767, 6, 49149, 7, 65535)
	for i := range 4 {
		in.Weights[i] = servers
	}
	steps := []struct {
		set       func()
		divs, inc []float64
		emission  []float64
	}{
		{
			set:      func() {},
			divs:     []float64{.1, .2, .3, .4, 0, 0, 0, 0},
			inc:      []float64{0, 0, 0, 0, 0.0999975582, 0.2000012207, 0.2999926752, 0.4000085455},
			emission: []float64{0.0499999989, 0.0999999992, 0.1500000006, 0.2000000011, 0.049998779, 0.1000006103, 0.1499963375, 0.2000042726},
		},
		{
			set:      func() { in.Weights[0] = row(0, 65535) },
			divs:     []float64{0.0899967032, 0.2022211233, 0.303334432, 0.404447741, 0, 0, 0, 0},
			emission: []float64{0.0449983515, 0.1011105615, 0.1516672159, 0.2022238704, 0.049998779, 0.1000006103, 0.1499963377, 0.2000042726},
		},
		{
			set:  func() { in.Weights[1] = row(1, 65535) },
			divs: []float64{0.0809936118, 0.1819995677, 0.3158592721, 0.421147548, 0, 0, 0, 0},
		},
		{
			// Only validator 3 weights servers: it is a minority, C = 0.
			set:      func() { in.Weights[2] = row(2, 65535) },
			divs:     make([]float64, 8),
			inc:      make([]float64, 8),
			emission: []float64{.1, .2, .3, .4, 0, 0, 0, 0},
		},
		{
			set:      func() { in.Weights[2] = row(7, 65535) },
			divs:     []float64{0.0728874663, 0.1637972582, 0.3271309866, 0.4361842885, 0, 0, 0, 0},
			inc:      []float64{0, 0, 0, 0, 0, 0, 0, 1},
			emission: []float64{0.0364437331, 0.081898629, 0.1635654932, 0.2180921442, 0, 0, 0, 0.5},
		},
		{set: func() {}, divs: []float64{0.0655988548, 0.1474132247, 0.3372762585, 0.4497116616, 0, 0, 0, 0}},
		{set: func() {}, divs: []float64{0.0590361361, 0.1326722752, 0.3464062694, 0.4618853189, 0, 0, 0, 0}},
		{set: func() {}, divs: []float64{0.053130352, 0.1194037423, 0.3546237142, 0.472842191, 0, 0, 0, 0}},
	}
	for k, step := range steps {
		block := uint64(k + 1)
		in.Block, in.LastEpochBlock = block, block-1
		step.set()
		for i := range 4 {
			in.LastUpdate[i] = block
		}
		out, err := Epoch(p, in)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(fmt.Sprintf("epoch %d", k+1), func(t *testing.T) {
			checkWant(t, out, want{divs: step.divs, incentive: step.inc, emission: step.emission}, 5e-5)
		})
		in.Bonds, in.ValidatorPermit = out.Bonds, out.ValidatorPermit
	}
}

func TestWeightedMedian(t *testing.T) {
	const kappa = 32767.0 / 65535
	tests := []struct {
		name   string
		scores []scored
		kappa  float64
		want   float64
	}{
		{"empty", nil, kappa, 0},
		{"single", []scored{{.3, 1}}, kappa, .3},
		// Equal halves: .5 ≤ minority .500008, so the higher score wins.
		{"even split takes the higher", []scored{{.2, .5}, {.8, .5}}, kappa, .8},
		{"exact half takes the higher", []scored{{.2, .5}, {.8, .5}}, .5, .8},
		{"majority low", []scored{{.8, .4}, {.2, .6}}, kappa, .2},
		{"ties", []scored{{.5, .3}, {.1, .1}, {.5, .3}, {.9, .3}}, kappa, .5},
		// κ = 1: minority 0, the lowest score; κ = 0: the highest.
		{"kappa one", []scored{{.5, .3}, {.1, .1}, {.9, .6}}, 1, .1},
		{"kappa zero", []scored{{.5, .3}, {.1, .1}, {.9, .6}}, 0, .9},
		// κ = .8: minority .2; cumulative .1, .4 → .5.
		{"kappa high", []scored{{.5, .3}, {.1, .1}, {.9, .6}}, .8, .5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := weightedMedian(slices.Clone(tt.scores), tt.kappa); got != tt.want {
				t.Errorf("weightedMedian = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestWeightedMedianMatchesDefinition compares the partition search with
// the definition (sort by score, first score whose cumulative stake exceeds
// total − κ) on random columns. Stakes, scores and κ are multiples of 1/64
// so that every sum is exact and ties with the minority really occur.
func TestWeightedMedianMatchesDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		v := make([]scored, 1+r.IntN(12))
		for i := range v {
			v[i] = scored{score: float64(r.IntN(6)) / 64, stake: float64(1+r.IntN(16)) / 64}
		}
		kappa := float64(r.IntN(65)) / 64
		want := medianBySort(slices.Clone(v), kappa)
		if got := weightedMedian(slices.Clone(v), kappa); got != want {
			t.Fatalf("weightedMedian(%v, %v) = %v, want %v", v, kappa, got, want)
		}
	}
}

func medianBySort(v []scored, kappa float64) float64 {
	slices.SortFunc(v, func(a, b scored) int { return cmp.Compare(a.score, b.score) })
	total := 0.0
	for _, x := range v {
		total += x.stake
	}
	cum := 0.0
	for _, x := range v {
		cum += x.stake
		if cum > total-kappa {
			return x.score
		}
	}
	return v[len(v)-1].score
}

func TestTopKNonzero(t *testing.T) {
	tests := []struct {
		name  string
		stake []float64
		k     int
		want  []bool
	}{
		{"k covers all", []float64{.5, 0, .5}, 3, []bool{true, false, true}},
		{"k above n", []float64{.5, 0, .5}, 5, []bool{true, false, true}},
		{"top two", []float64{.1, .4, .2, .3}, 2, []bool{false, true, false, true}},
		{"ties go to the higher uid", []float64{.25, .25, .25, .25}, 2, []bool{false, false, true, true}},
		{"k zero", []float64{.5, .5}, 0, []bool{false, false}},
		{"zero stake never", []float64{0, 0, 1}, 2, []bool{false, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make([]bool, len(tt.stake))
			topKNonzero(got, tt.stake, tt.k, make([]int, len(tt.stake)))
			if !slices.Equal(got, tt.want) {
				t.Errorf("topKNonzero = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEpochEmpty(t *testing.T) {
	out, err := Epoch(DefaultParams(), &Input{})
	if err != nil {
		t.Fatalf("Epoch(empty): %v", err)
	}
	if len(out.Emission) != 0 || len(out.Bonds) != 0 || len(out.Active) != 0 {
		t.Errorf("Epoch(empty) = %+v, want empty slices", out)
	}
}

func TestEpochMalformed(t *testing.T) {
	ok := func() *Input { return network(1, 1) }
	tests := []struct {
		name string
		p    func(*Params)
		in   func(*Input) *Input
	}{
		{name: "nil input", in: func(*Input) *Input { return nil }},
		{name: "short last update", in: func(in *Input) *Input { in.LastUpdate = in.LastUpdate[:1]; return in }},
		{name: "long registered at", in: func(in *Input) *Input { in.RegisteredAt = append(in.RegisteredAt, 0); return in }},
		{name: "permits length", in: func(in *Input) *Input { in.ValidatorPermit = []bool{true}; return in }},
		{name: "too many weights rows", in: func(in *Input) *Input { in.Weights = make([][]Weight, 3); return in }},
		{name: "too many bonds rows", in: func(in *Input) *Input { in.Bonds = make([][]float64, 3); return in }},
		{name: "long bonds row", in: func(in *Input) *Input { in.Bonds = [][]float64{{0, 0, 0}}; return in }},
		{name: "bond above one", in: func(in *Input) *Input { in.Bonds = [][]float64{{0, 1.5}}; return in }},
		{name: "NaN bond", in: func(in *Input) *Input { in.Bonds = [][]float64{{math.NaN()}}; return in }},
		{name: "negative stake", in: func(in *Input) *Input { in.Stake[1] = -1; return in }},
		{name: "NaN stake", in: func(in *Input) *Input { in.Stake[0] = math.NaN(); return in }},
		{name: "infinite stake", in: func(in *Input) *Input { in.Stake[0] = math.Inf(1); return in }},
		{name: "kappa", p: func(p *Params) { p.Kappa = 1.1 }},
		{name: "NaN kappa", p: func(p *Params) { p.Kappa = math.NaN() }},
		{name: "moving average", p: func(p *Params) { p.BondsMovingAverage = -.1 }},
		{name: "penalty", p: func(p *Params) { p.BondsPenalty = 2 }},
		{name: "validators", p: func(p *Params) { p.MaxAllowedValidators = -1 }},
		{name: "threshold", p: func(p *Params) { p.StakeThreshold = math.Inf(1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultParams()
			if tt.p != nil {
				tt.p(&p)
			}
			in := ok()
			if tt.in != nil {
				in = tt.in(in)
			}
			if out, err := Epoch(p, in); err == nil {
				t.Errorf("Epoch = %+v, want an error", out)
			}
		})
	}
}

// TestEpochShortRows checks that weights and bonds written before the
// subnet grew (fewer rows, shorter rows) are accepted and count as zeros.
func TestEpochShortRows(t *testing.T) {
	p := DefaultParams()
	in := network(3, 1, 0, 0)
	in.Weights = in.Weights[:2]
	in.Weights[0] = row(2, 1, 3, 3)
	in.Weights[1] = row(2, 1, 3, 3, 9, 5, -1, 5) // uids 9 and -1 are ignored
	in.Bonds = [][]float64{{0, 0, .75}, {0, 0, .25}}
	out, err := Epoch(p, in)
	if err != nil {
		t.Fatal(err)
	}
	// Column 2 has the same shares old and new; column 3 only new ones.
	checkWant(t, out, want{
		incentive: []float64{0, 0, .25, .75},
		divs:      []float64{.75, .25, 0, 0},
		bonds:     [][]float64{{0, 0, .75, .75}, {0, 0, .25, .25}, nil, nil},
	}, tol)
}
