package validator

import (
	"context"
	"math"
	"sort"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/subnet"
)

// scoreOf returns a miner's score from its results (newest first) and the
// pass it rests on (nil when the score is 0): see market.VerifiedBasis.
func scoreOf(t *market.GPUTable, hist []Result, window int) (float64, *Result) {
	b := market.VerifiedBasis(hist, window)
	if b == nil {
		return 0, nil
	}
	sc := market.Score(t, b.Model, b.Count)
	if sc <= 0 {
		return 0, nil
	}
	return sc, b
}

// minerScore is one neuron's standing, for weights and the table.
type minerScore struct {
	Neuron subnet.Neuron
	Score  float64
	// Basis is the pass the score rests on; Last the newest result.
	Basis, Last *Result
	// Skipped says why the miner was not tested in the last sweep.
	Skipped string
	Rented  bool
}

// scores returns every neuron but the validator, by uid. Neurons the
// current metagraph does not make queryable score 0.
func (s *Service) scores() []minerScore {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mg == nil {
		return nil
	}
	q, skipped := queryable(s.mg, s.rules(s.uid))
	ok := make(map[subnet.UID]bool, len(q))
	for _, n := range q {
		ok[n.UID] = true
	}
	var out []minerScore
	for _, n := range s.mg.Neurons {
		if n.UID == s.uid {
			continue
		}
		m := minerScore{Neuron: n, Skipped: skipped[n.Hotkey]}
		if st := s.status[n.Hotkey]; m.Skipped == "" && st != "" {
			m.Skipped = st
		}
		m.Rented = s.rented[n.Hotkey]
		hist := s.history[n.Hotkey]
		if len(hist) > 0 {
			m.Last = &hist[0]
		}
		if ok[n.UID] {
			m.Score, m.Basis = scoreOf(s.cfg.PoG.Table, hist, s.cfg.ScoreWindow)
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Neuron.UID < out[j].Neuron.UID })
	return out
}

// padWeights gives every uid of all a base weight of 1/65535 of the
// largest weight and adds the real weights of uids on top: once max
// upscaled, every uid has at least the smallest u16 weight, so a row with
// fewer scored miners than the subnet's min_allowed_weights is still
// accepted, while the base takes almost nothing from the scored miners
// (Bittensor's SDK pads such rows the same way).
func padWeights(all, uids []subnet.UID, weights []float64) ([]subnet.UID, []float64) {
	maxW := 0.0
	own := make(map[subnet.UID]float64, len(uids))
	for i, u := range uids {
		own[u] += weights[i]
		maxW = max(maxW, weights[i])
	}
	base := maxW / math.MaxUint16
	outU := make([]subnet.UID, len(all))
	outW := make([]float64, len(all))
	for i, u := range all {
		outU[i], outW[i] = u, base+own[u]
	}
	return outU, outW
}

// setWeights submits the current scores as weights when any is positive.
func (s *Service) setWeights(ctx context.Context, head uint64) {
	next := head + s.cfg.WeightsRetry
	defer func() {
		s.mu.Lock()
		s.nextWts = next
		s.weightOn = false
		s.mu.Unlock()
	}()
	ms := s.scores()
	var sum float64
	for _, m := range ms {
		sum += m.Score
	}
	s.mu.Lock()
	quiet := s.noScores
	s.noScores = sum <= 0
	s.mu.Unlock()
	if sum <= 0 {
		log := s.log.Info
		if quiet {
			log = s.log.Debug
		}
		log("no miner has a score yet; weights not set", "block", head)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ChainTimeout)
	hp, err := s.deps.Chain.Hyperparameters(cctx, s.cfg.NetUID)
	cancel()
	if err != nil {
		s.log.Warn("weights not set: read the subnet's hyperparameters", "err", err, "retry_in_blocks", s.cfg.WeightsRetry)
		return
	}
	uids := make([]subnet.UID, len(ms))
	weights := make([]float64, len(ms))
	for i, m := range ms {
		uids[i], weights[i] = m.Neuron.UID, m.Score/sum
	}
	upUIDs, upWeights, err := subnet.MaxUpscale(uids, weights)
	if err != nil {
		s.log.Error("weights not set: invalid scores", "err", err)
		return
	}
	s.mu.Lock()
	all := make([]subnet.UID, 0, len(s.mg.Neurons))
	for _, n := range s.mg.Neurons {
		all = append(all, n.UID)
	}
	s.mu.Unlock()
	if need := min(int(hp.MinAllowedWeights), len(all)); len(upUIDs) < need {
		scored := len(upUIDs)
		pUIDs, pWeights := padWeights(all, uids, weights)
		if upUIDs, upWeights, err = subnet.MaxUpscale(pUIDs, pWeights); err != nil {
			s.log.Error("weights not set: invalid scores", "err", err)
			return
		}
		s.log.Info("fewer scored miners than the subnet's min_allowed_weights: every uid gets the smallest weight",
			"scored", scored, "min_allowed_weights", hp.MinAllowedWeights, "uids", len(all))
	}
	cctx, cancel = context.WithTimeout(ctx, s.cfg.ChainTimeout)
	res, err := s.submitter.Submit(cctx, s.cfg.Hotkey, s.cfg.NetUID, upUIDs, upWeights, hp.WeightsVersionKey)
	cancel()
	s.noteWeights(head, weightsMode(res), err)
	if err != nil {
		s.weightsRefused(res, err)
		return
	}
	next = head + s.cfg.WeightsInterval
	entries := make([]ScoreEntry, 0, len(ms))
	w := map[subnet.UID]uint16{}
	for i, u := range upUIDs {
		w[u] = upWeights[i]
	}
	for _, m := range ms {
		entries = append(entries, ScoreEntry{UID: m.Neuron.UID, Hotkey: m.Neuron.Hotkey, Score: m.Score, Weight: w[m.Neuron.UID]})
	}
	if err := s.deps.Store.AddScores(ctx, head, s.cfg.Now().UTC(), entries); err != nil {
		s.log.Warn("record scores", "err", err)
	}
	s.weightsSubmitted(ctx, head, next, res, upUIDs, upWeights, hp.WeightsVersionKey)
}
