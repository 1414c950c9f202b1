package validator

import (
	"sort"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/weights"
)

// WeightsMode is how weights reach the chain: set directly, or committed
// (commit-reveal) to be revealed later.
const (
	WeightsModeSet    = string(weights.ModeSet)
	WeightsModeCommit = string(weights.ModeCommit)
)

// WeightsStatus is the outcome of the last weights submission.
type WeightsStatus struct {
	// Block is the head the submission was made at (0: none yet).
	Block uint64    `json:"block"`
	At    time.Time `json:"at,omitzero"`
	Mode  string    `json:"mode,omitempty"`
	// Result is "ok" or the chain's error code; Error its message.
	Result string `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
	// LastOK is the last block at which the chain accepted weights.
	LastOK uint64 `json:"last_ok,omitempty"`
	// Summary says in words what became of the last submission: set,
	// committed for reveal in round R (epoch E), revealed, not revealed.
	Summary string `json:"summary,omitempty"`
}

// Status is the validator's standing, for dashboards and health checks.
type Status struct {
	NetUID      subnet.NetUID `json:"netuid"`
	UID         subnet.UID    `json:"uid"`
	Hotkey      string        `json:"hotkey"`
	Block       uint64        `json:"block"`
	Permit      bool          `json:"validator_permit"`
	ChainOK     bool          `json:"chain_reachable"`
	LastSweep   uint64        `json:"last_sweep_block"`
	Sweeping    bool          `json:"sweeping"`
	NextWeights uint64        `json:"next_weights_block"`
	PoGInterval uint64        `json:"pog_interval"`
	Weights     WeightsStatus `json:"weights"`
}

// Status returns the validator's current standing.
func (s *Service) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{
		NetUID: s.cfg.NetUID, UID: s.uid, Hotkey: s.cfg.Hotkey.SS58(), Block: s.head, Permit: s.permit,
		ChainOK: s.chainOK, LastSweep: s.lastSwp, Sweeping: s.sweepOn, NextWeights: s.nextWts,
		PoGInterval: s.cfg.PoGInterval, Weights: s.weights,
	}
}

// Metagraph returns the last metagraph read (shared: callers must not
// modify it).
func (s *Service) Metagraph() *subnet.Metagraph {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mg
}

// Results returns every kept Proof-of-GPU result, oldest first.
func (s *Service) Results() []Result {
	s.mu.Lock()
	var out []Result
	for _, h := range s.history {
		out = append(out, h...)
	}
	s.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].At.Equal(out[j].At) {
			return out[i].At.Before(out[j].At)
		}
		return out[i].UID < out[j].UID
	})
	return out
}

// noteWeights records the outcome of a weights submission made at block.
func (s *Service) noteWeights(block uint64, mode string, err error) {
	s.metrics.submitted(mode, block, err)
	w := WeightsStatus{Block: block, At: s.cfg.Now().UTC(), Mode: mode, Result: "ok"}
	if err != nil {
		w.Result, w.Error = subnet.ErrorCode(err), clean(err.Error(), 300)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w.LastOK, w.Summary = s.weights.LastOK, s.weights.Summary
	if err == nil {
		w.LastOK = block
	}
	s.weights = w
}
