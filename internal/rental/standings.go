package rental

import (
	"context"
	"sort"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/subnet"
)

// Standing is one miner as the validator's results show it to the API:
// what the operator's dashboard lists.
type Standing struct {
	UID       subnet.UID
	Hotkey    string
	Incentive float64
	// Model and Count are the verified GPUs ("" and 0: none), Score what
	// they are worth by the validator's scoring rule.
	Model string
	Count int
	Score float64
	// Last is the newest Proof-of-GPU result (nil: never tested).
	Last *market.PoGResult
	// Offered: verified and serving an axon, so renters can get it.
	Offered bool
	// Rented: an allocation of this API holds a lease on it.
	Rented bool
}

// Standings returns every neuron of the metagraph but the validator, by
// uid, with its standing in the validator's results and whether an
// allocation of this API holds it.
func (s *Service) Standings(ctx context.Context) ([]Standing, error) {
	mg, err := s.mg.get(ctx)
	if err != nil {
		return nil, err
	}
	results, _, err := s.verification(ctx)
	if err != nil {
		return nil, err
	}
	rented := map[string]bool{}
	for _, a := range s.live(ctx) {
		if !a.Orphan && a.MinerHotkey != "" {
			rented[a.MinerHotkey] = true
		}
	}
	out := make([]Standing, 0, len(mg.Neurons))
	for _, n := range mg.Neurons {
		if n.Hotkey == s.cfg.Hotkey {
			continue
		}
		st := Standing{UID: n.UID, Hotkey: n.Hotkey, Incentive: n.Incentive, Rented: rented[n.Hotkey]}
		hist := results[n.Hotkey]
		if len(hist) > 0 {
			last := hist[0]
			st.Last = &last
		}
		if b := market.VerifiedBasis(hist, s.cfg.ScoreWindow); b != nil && b.Count > 0 {
			st.Model, st.Count = b.Model, b.Count
			st.Score = market.Score(s.cfg.Table, b.Model, b.Count)
			st.Offered = n.Axon.Served()
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out, nil
}

// operator is who the operator's dashboard reads as: an admin, who sees
// every tenant's allocations.
func operator() market.Token {
	return market.Token{Name: "operator", Scopes: []market.Scope{market.ScopeAdmin}}
}

// OperatorAllocations returns every tenant's allocations for the
// operator's dashboard — those not ended, then at most ended of the
// newest ended ones — as an admin sees them: never a secret.
func (s *Service) OperatorAllocations(ctx context.Context, ended int) ([]Allocation, error) {
	list, err := s.deps.Store.TenantAllocations(ctx, "", true, 500)
	if err != nil {
		return nil, err
	}
	var live, done []Allocation
	who := operator()
	for _, a := range list {
		switch v := s.view(a, who); {
		case a.State != market.AllocEnded:
			live = append(live, v)
		case len(done) < ended:
			done = append(done, v)
		}
	}
	return append(live, done...), nil
}
