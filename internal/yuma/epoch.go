package yuma

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Epoch runs one Yuma epoch over in with hyperparameters p. It follows
// subtensor's epoch_mechanism step by step:
//
//  1. Activity: uid i is inactive when LastUpdate_i + ActivityCutoff <
//     Block. Weight W_ij is outdated when LastUpdate_i ≤ RegisteredAt_j.
//  2. Stake S: stake below StakeThreshold (except the owner's) counts as
//     zero; normalised. New permits: top MaxAllowedValidators by S among
//     non-zero stakes (ties go to the higher uid) plus the owner. Active
//     stake: S of active uids holding the previous permit, normalised.
//  3. Weights: rows of uids without the previous permit dropped, self-weight
//     dropped except the owner's, outdated entries dropped, rows normalised.
//  4. Consensus C_j: the stake-weighted median of column j over uids with
//     active stake, at majority Kappa (the smallest weight w for which the
//     active stake of weights ≤ w exceeds 1 − Kappa).
//  5. Clipped weights W̄_ij = min(W_ij, C_j); ValidatorTrust_i = Σ_j W̄_ij.
//  6. Ranks R_j = Σ_i activeS_i·W̄_ij; Incentive = Rank = R normalised;
//     Trust_j = R_j / Σ_i activeS_i·W_ij.
//  7. Bonds: ΔB_ij = activeS_i·(W + BondsPenalty·(W̄ − W))_ij, column
//     normalised; old bonds with columns of recently registered uids
//     dropped, column normalised; B = α·ΔB + (1 − α)·old with α = 1 −
//     BondsMovingAverage, column normalised. Dividends D_i = Σ_j B_ij·I_j,
//     normalised.
//  8. Emission: ServerEmission = I/(ΣI + ΣD), ValidatorEmission =
//     D/(ΣI + ΣD); when both sums are zero ValidatorEmission is the active
//     stake, or S when no stake is active.
//
// Epoch returns an error only for malformed input: slices whose lengths
// disagree, a negative, NaN or infinite stake, a bond outside [0, 1], or a
// parameter out of range. N = 0 yields an empty Output.
func Epoch(p Params, in *Input) (*Output, error) {
	if in == nil {
		return nil, errors.New("yuma epoch: nil input")
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("yuma epoch: %w", err)
	}
	if err := in.validate(); err != nil {
		return nil, fmt.Errorf("yuma epoch: %w", err)
	}
	e := newEpoch(p, in)
	e.activity()
	e.stake()
	e.weights()
	e.consensus()
	e.ranks()
	e.bonds()
	e.emission()
	return e.out, nil
}

func (p Params) validate() error {
	switch {
	case !isUnit(p.Kappa):
		return fmt.Errorf("kappa %v outside [0, 1]", p.Kappa)
	case !isUnit(p.BondsMovingAverage):
		return fmt.Errorf("bonds moving average %v outside [0, 1]", p.BondsMovingAverage)
	case !isUnit(p.BondsPenalty):
		return fmt.Errorf("bonds penalty %v outside [0, 1]", p.BondsPenalty)
	case p.MaxAllowedValidators < 0:
		return fmt.Errorf("max allowed validators %d is negative", p.MaxAllowedValidators)
	case !(p.StakeThreshold >= 0) || math.IsInf(p.StakeThreshold, 1):
		return fmt.Errorf("stake threshold %v is not a finite non-negative number", p.StakeThreshold)
	}
	return nil
}

func (in *Input) validate() error {
	n := len(in.Stake)
	switch {
	case len(in.LastUpdate) != n:
		return fmt.Errorf("%d last updates for %d uids", len(in.LastUpdate), n)
	case len(in.RegisteredAt) != n:
		return fmt.Errorf("%d registration blocks for %d uids", len(in.RegisteredAt), n)
	case in.ValidatorPermit != nil && len(in.ValidatorPermit) != n:
		return fmt.Errorf("%d validator permits for %d uids", len(in.ValidatorPermit), n)
	case len(in.Weights) > n:
		return fmt.Errorf("%d weights rows for %d uids", len(in.Weights), n)
	case len(in.Bonds) > n:
		return fmt.Errorf("%d bonds rows for %d uids", len(in.Bonds), n)
	}
	for i, s := range in.Stake {
		if !(s >= 0) || math.IsInf(s, 1) {
			return fmt.Errorf("stake of uid %d is %v", i, s)
		}
	}
	for i, row := range in.Bonds {
		if len(row) > n {
			return fmt.Errorf("bonds row of uid %d has %d entries for %d uids", i, len(row), n)
		}
		for j, b := range row {
			if !isUnit(b) {
				return fmt.Errorf("bond of uid %d to uid %d is %v, outside [0, 1]", i, j, b)
			}
		}
	}
	return nil
}

// isUnit reports whether x is in [0, 1] (false for NaN).
func isUnit(x float64) bool { return x >= 0 && x <= 1 }

// epoch holds one run's inputs, the output being filled and scratch space.
// Matrices are dense, row-major, n columns wide, and hold only the rows
// that can be non-zero: vrows (uids with the previous permit) for weights,
// brows (those, new permit holders and uids with old bonds) for bonds.
type epoch struct {
	p     Params
	in    *Input
	n     int
	owner int // -1 when none
	out   *Output

	prevPermit  []bool    // permits this epoch's weights count under
	activeStake []float64 // normalised stake of active permit holders
	rank        []float64 // R before normalisation
	colA, colB  []float64 // per-column scratch

	vrows   []int     // uids whose weights rows count
	w       []float64 // len(vrows) × n normalised weights W
	medRows []int     // indices into vrows of uids with active stake
	med     []scored  // consensus scratch
	idx     []int     // top-k scratch
	brows   []int     // uids with a bonds row
	bRow    []int     // uid → index in brows, −1 if none
	b       []float64 // len(brows) × n bonds
}

func newEpoch(p Params, in *Input) *epoch {
	n := len(in.Stake)
	owner := in.OwnerUID
	if owner < 0 || owner >= n {
		owner = -1
	}
	// One allocation per element type; every vector is a window on it.
	fl := make([]float64, 14*n)
	next := func() []float64 {
		v := fl[:n:n]
		fl = fl[n:]
		return v
	}
	bl := make([]bool, 3*n)
	ints := make([]int, 5*n)
	out := &Output{
		Active:            bl[0*n : 1*n : 1*n],
		ValidatorPermit:   bl[1*n : 2*n : 2*n],
		StakeWeight:       next(),
		Consensus:         next(),
		Rank:              next(),
		Trust:             next(),
		Incentive:         next(),
		Dividends:         next(),
		ValidatorTrust:    next(),
		ServerEmission:    next(),
		ValidatorEmission: next(),
		Emission:          next(),
		Bonds:             make([][]float64, n),
	}
	return &epoch{
		p: p, in: in, n: n, owner: owner, out: out,
		prevPermit:  bl[2*n : 3*n : 3*n],
		activeStake: next(),
		rank:        next(),
		colA:        next(),
		colB:        next(),
		vrows:       ints[0*n : 0 : 1*n],
		idx:         ints[1*n : 2*n : 2*n],
		brows:       ints[2*n : 2*n : 3*n],
		bRow:        ints[3*n : 4*n : 4*n],
		medRows:     ints[4*n : 4*n : 5*n],
	}
}

// activity marks uids that set weights within the activity cutoff.
func (e *epoch) activity() {
	for i, lu := range e.in.LastUpdate {
		until := lu + e.p.ActivityCutoff
		if until < lu { // saturate like subtensor
			until = math.MaxUint64
		}
		e.out.Active[i] = until >= e.in.Block
	}
}

// stake normalises stake, assigns permits and computes active stake.
func (e *epoch) stake() {
	s := e.out.StakeWeight
	peak := 0.0
	for i, v := range e.in.Stake {
		if v < e.p.StakeThreshold && i != e.owner {
			v = 0
		}
		s[i] = v
		peak = max(peak, v)
	}
	if peak > 0 {
		// Scale to at most 1 first so that the sum cannot overflow.
		for i := range s {
			s[i] /= peak
		}
		normalize(s)
	}

	topKNonzero(e.out.ValidatorPermit, s, e.p.MaxAllowedValidators, e.idx)
	if e.in.ValidatorPermit != nil {
		copy(e.prevPermit, e.in.ValidatorPermit)
	} else {
		copy(e.prevPermit, e.out.ValidatorPermit)
	}
	if e.owner >= 0 {
		e.out.ValidatorPermit[e.owner] = true
		e.prevPermit[e.owner] = true
	}

	for i := range s {
		if e.out.Active[i] && e.prevPermit[i] {
			e.activeStake[i] = s[i]
		}
	}
	normalize(e.activeStake)
}

// topKNonzero sets permit[i] for the k largest non-zero values of s;
// among equal values the higher index wins, as with subtensor's stable
// ascending sort. idx is scratch of len(s).
func topKNonzero(permit []bool, s []float64, k int, idx []int) {
	n := len(s)
	for i, v := range s {
		permit[i] = v != 0
	}
	if n <= k {
		return
	}
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(s[a], s[b]) })
	for _, i := range idx[:n-k] {
		permit[i] = false
	}
}

// weights builds the masked, row-normalised weights of permit holders.
func (e *epoch) weights() {
	n := e.n
	for i, ok := range e.prevPermit {
		if ok {
			e.vrows = append(e.vrows, i)
		}
	}
	e.w = make([]float64, len(e.vrows)*n)
	for r, i := range e.vrows {
		row := e.w[r*n : (r+1)*n]
		if i < len(e.in.Weights) {
			for _, wt := range e.in.Weights[i] {
				if wt.UID >= 0 && wt.UID < n {
					row[wt.UID] = float64(wt.Value)
				}
			}
		}
		if i != e.owner {
			row[i] = 0
		}
		updated := e.in.LastUpdate[i]
		sum := 0.0
		for j, v := range row {
			if v == 0 {
				continue
			}
			if updated <= e.in.RegisteredAt[j] {
				row[j] = 0
				continue
			}
			sum += v
		}
		if sum > 0 {
			for j := range row {
				row[j] /= sum
			}
		}
	}
}

// scored is one validator's weight on a column and its active stake.
type scored struct{ score, stake float64 }

// consensus sets C_j to the stake-weighted median of each column.
func (e *epoch) consensus() {
	n := e.n
	for r, i := range e.vrows {
		if e.activeStake[i] > 0 {
			e.medRows = append(e.medRows, r)
		}
	}
	rows := e.medRows
	e.med = make([]scored, len(rows))
	for j := range n {
		nonzero := false
		for k, r := range rows {
			v := e.w[r*n+j]
			e.med[k] = scored{v, e.activeStake[e.vrows[r]]}
			nonzero = nonzero || v != 0
		}
		if nonzero { // otherwise every score, and so the median, is 0
			e.out.Consensus[j] = weightedMedian(e.med, e.p.Kappa)
		}
	}
}

// weightedMedian returns the smallest score x such that the stake of
// scores ≤ x exceeds the minority total − kappa; the largest score when
// none does (kappa 0), 0 for no scores. Stakes are positive. Like
// subtensor's weighted_median (math.rs) it narrows a window around the mid
// element by three-way partitions, in expected linear time; it reorders v.
func weightedMedian(v []scored, kappa float64) float64 {
	if len(v) == 0 {
		return 0
	}
	total := 0.0
	for _, x := range v {
		total += x.stake
	}
	minority := total - kappa
	below := 0.0 // stake of the scores left of the window
	for len(v) > 1 {
		pivot := v[len(v)/2].score
		// Partition into [< pivot | = pivot | > pivot].
		lt, i, gt := 0, 0, len(v)
		less, equal := 0.0, 0.0
		for i < gt {
			switch x := v[i]; {
			case x.score < pivot:
				v[lt], v[i] = x, v[lt]
				less += x.stake
				lt++
				i++
			case x.score > pivot:
				gt--
				v[i], v[gt] = v[gt], x
			default:
				equal += x.stake
				i++
			}
		}
		switch {
		case lt > 0 && minority < below+less:
			v = v[:lt]
		case gt < len(v) && below+less+equal <= minority:
			below += less + equal
			v = v[gt:]
		default:
			return pivot
		}
	}
	return v[0].score
}

// ranks clips weights at consensus and derives validator trust, ranks,
// trust and incentive.
func (e *epoch) ranks() {
	n := e.n
	pre := e.colA
	for r, i := range e.vrows {
		row := e.w[r*n : (r+1)*n]
		a := e.activeStake[i]
		vt := 0.0
		for j, v := range row {
			if v == 0 {
				continue
			}
			c := min(v, e.out.Consensus[j])
			vt += c
			e.rank[j] += a * c
			pre[j] += a * v
		}
		e.out.ValidatorTrust[i] = min(vt, 1)
	}
	for j, r := range e.rank {
		if pre[j] > 0 {
			e.out.Trust[j] = min(r/pre[j], 1)
		}
	}
	copy(e.out.Incentive, e.rank)
	normalize(e.out.Incentive)
	copy(e.out.Rank, e.out.Incentive)
	clear(pre)
}

// bondWeight is W interpolated towards clipped W̄ by the bonds penalty,
// exact at both ends as in subtensor.
func (e *epoch) bondWeight(w, c float64) float64 {
	c = min(w, c)
	switch t := e.p.BondsPenalty; t {
	case 0:
		return w
	case 1:
		return c
	default:
		return w + t*(c-w)
	}
}

// bonds computes the EMA bonds and dividends.
func (e *epoch) bonds() {
	n, in := e.n, e.in
	for i := range n {
		e.bRow[i] = -1
		has := e.prevPermit[i] || e.out.ValidatorPermit[i]
		if !has && i < len(in.Bonds) {
			has = slices.ContainsFunc(in.Bonds[i], func(v float64) bool { return v != 0 })
		}
		if has {
			e.bRow[i] = len(e.brows)
			e.brows = append(e.brows, i)
		}
	}
	e.b = make([]float64, len(e.brows)*n)

	// Old bonds, without columns of uids registered since the last epoch.
	oldSum := e.colA
	for k, i := range e.brows {
		if i >= len(in.Bonds) {
			continue
		}
		dst := e.b[k*n : (k+1)*n]
		for j, v := range in.Bonds[i] {
			if v != 0 && in.RegisteredAt[j] <= in.LastEpochBlock {
				dst[j] = v
				oldSum[j] += v
			}
		}
	}
	// Column sums of ΔB = W_b ∘ activeS.
	deltaSum := e.colB
	for r, i := range e.vrows {
		a := e.activeStake[i]
		if a == 0 {
			continue
		}
		for j, v := range e.w[r*n : (r+1)*n] {
			if v != 0 {
				deltaSum[j] += a * e.bondWeight(v, e.out.Consensus[j])
			}
		}
	}
	// B = α·colnorm(ΔB) + (1 − α)·colnorm(old). Entries are divided by their
	// column sum one by one (never multiplied by a reciprocal), so each
	// quotient stays within [0, 1] even for subnormal sums.
	alpha := 1 - e.p.BondsMovingAverage
	for k := range e.brows {
		row := e.b[k*n : (k+1)*n]
		for j, v := range row {
			if v != 0 {
				row[j] = (1 - alpha) * (v / oldSum[j])
			}
		}
	}
	for r, i := range e.vrows {
		a := e.activeStake[i]
		if a == 0 {
			continue
		}
		dst := e.b[e.bRow[i]*n : (e.bRow[i]+1)*n]
		for j, v := range e.w[r*n : (r+1)*n] {
			if x := a * e.bondWeight(v, e.out.Consensus[j]); x != 0 {
				dst[j] += alpha * (x / deltaSum[j])
			}
		}
	}

	// Column-normalise the EMA, then D_i = Σ_j B_ij·I_j.
	colSum := e.colA
	clear(colSum)
	for k := range e.brows {
		for j, v := range e.b[k*n : (k+1)*n] {
			colSum[j] += v
		}
	}
	inc := e.out.Incentive
	for k, i := range e.brows {
		row := e.b[k*n : (k+1)*n : (k+1)*n]
		d := 0.0
		for j, v := range row {
			if v != 0 {
				v /= colSum[j]
				row[j] = v
				d += v * inc[j]
			}
		}
		e.out.Dividends[i] = d
		if e.out.ValidatorPermit[i] {
			e.out.Bonds[i] = row
		}
	}
	normalize(e.out.Dividends)
}

// emission splits the epoch's emission between incentive and dividends.
func (e *epoch) emission() {
	o := e.out
	sum := 0.0
	for i := range e.n {
		sum += o.Incentive[i] + o.Dividends[i]
	}
	if sum == 0 {
		// No weights, only outdated or self weights: pay validators by stake.
		src := e.activeStake
		if !slices.ContainsFunc(src, func(v float64) bool { return v != 0 }) {
			src = o.StakeWeight
		}
		copy(o.ValidatorEmission, src)
		copy(o.Emission, src)
		return
	}
	for i := range e.n {
		o.ServerEmission[i] = o.Incentive[i] / sum
		o.ValidatorEmission[i] = o.Dividends[i] / sum
		o.Emission[i] = o.ServerEmission[i] + o.ValidatorEmission[i]
	}
}

// normalize scales x to sum to 1, leaving an all-zero x as it is.
func normalize(x []float64) {
	sum := 0.0
	for _, v := range x {
		sum += v
	}
	if sum == 0 {
		return
	}
	for i := range x {
		x[i] /= sum
	}
}
