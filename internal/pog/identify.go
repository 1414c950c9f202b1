package pog

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// ReasonSimulatedRefused is Identify's reason for a simulated worker when
// the validator was not started by devnet.
const ReasonSimulatedRefused = "simulated GPU refused outside devnet"

// Policy is the validator's rule for deciding which GPU models a
// measurement is consistent with.
type Policy struct {
	// TimeSlack and Overhead make a model's wall-clock bound at n:
	// 2n³/rate × (1 + TimeSlack) + Overhead, rate its fp16 TFLOPS. Overhead
	// covers the round trip, allocation, generation and hashing.
	TimeSlack float64
	Overhead  time.Duration
	// MinFill: a model is consistent with a test only if the working set
	// 8n² fits its memory and fills at least this fraction of it, so a
	// small test cannot pass for a big GPU.
	MinFill float64
	// AllowSimulated accepts simulated workers (devnet only).
	AllowSimulated bool
}

// DefaultPolicy returns the production policy: TimeSlack 0.25, Overhead
// 1.5 s, MinFill 0.5, simulated workers refused.
func DefaultPolicy() Policy {
	return Policy{TimeSlack: 0.25, Overhead: 1500 * time.Millisecond, MinFill: 0.5}
}

// Measurement is what the validator measured itself.
type Measurement struct {
	// N is the size the validator requested (the nominal size for a
	// simulated worker).
	N int
	// Elapsed is the validator's wall-clock from sending the compute
	// request to receiving the last commitment.
	Elapsed time.Duration
	// Simulated is the worker's own flag; SimTimeScale is the speed factor
	// the validator asked a simulated worker to apply.
	Simulated    bool
	SimTimeScale float64
}

// ExpectedTime is the time model m needs for the multiplication at n.
func ExpectedTime(m market.GPUModel, n int) time.Duration {
	return seconds(Flops(n) / (m.FP16TFLOPS * 1e12))
}

// Bound returns the longest wall-clock model m may take at n, with time
// scaled by scale (1 for real GPUs).
func (p Policy) Bound(m market.GPUModel, n int, scale float64) time.Duration {
	t := ExpectedTime(m, n).Seconds()*(1+p.TimeSlack) + p.Overhead.Seconds()
	return seconds(t * scale)
}

// fits reports whether a test at n suits model m's memory.
func (p Policy) fits(m market.GPUModel, n int) bool {
	ws := float64(WorkingSetBytes(n))
	mem := float64(m.MemoryBytes)
	return ws <= mem && ws >= p.MinFill*mem
}

func seconds(s float64) time.Duration {
	if s > float64(math.MaxInt64)/1e9 || math.IsNaN(s) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(s * 1e9)
}

// ComputeLimit returns how long a validator should wait for commitments at
// n: the largest bound among the models whose memory the test suits (or
// among all models when none does). A worker slower than that cannot be
// identified as anything.
func (p Policy) ComputeLimit(t *market.GPUTable, n int, scale float64) time.Duration {
	var limit, any time.Duration
	for _, m := range t.Models() {
		b := p.Bound(m, n, scale)
		any = max(any, b)
		if p.fits(m, n) {
			limit = max(limit, b)
		}
	}
	if limit == 0 {
		limit = any
	}
	return limit
}

// Identify decides which model a verified measurement proves. It accepts
// the claimed model when the measurement is consistent with it: the test's
// working set suits the model's memory and the wall-clock is within the
// model's bound. Otherwise it returns the best-scoring model that is
// consistent (or "" when none is), and when that model's tolerance pair is
// the claimed model and the claim scores no higher, the claimed name. The
// reason says why, for logs and miners. A simulated measurement is refused
// unless p.AllowSimulated; its time is judged at its scale.
func Identify(t *market.GPUTable, claimed string, m Measurement, p Policy) (model, reason string) {
	scale := 1.0
	if m.Simulated {
		if !p.AllowSimulated {
			return "", ReasonSimulatedRefused
		}
		if !(m.SimTimeScale > 0 && m.SimTimeScale <= 1) {
			return "", "simulated GPU without a time scale in (0, 1]"
		}
		scale = m.SimTimeScale
	}
	if !validN(m.N) {
		return "", fmt.Sprintf("test size n = %d is not a legal size", m.N)
	}
	consistent := func(g market.GPUModel) (bool, string) {
		ws := WorkingSetBytes(m.N)
		if !p.fits(g, m.N) {
			return false, fmt.Sprintf("a %.1f GB working set (n = %d) does not suit its %.1f GB (must fit and fill ≥ %.0f%%)",
				float64(ws)/1e9, m.N, float64(g.MemoryBytes)/1e9, 100*p.MinFill)
		}
		if b := p.Bound(g, m.N, scale); m.Elapsed > b {
			return false, fmt.Sprintf("took %s, its bound is %s", round(m.Elapsed), round(b))
		}
		return true, ""
	}

	claim, known := t.Lookup(claimed)
	var why string
	if known {
		ok, w := consistent(claim)
		if ok {
			return claim.Name, fmt.Sprintf("claimed %s confirmed: took %s at n = %d, bound %s",
				claim.Name, round(m.Elapsed), m.N, round(p.Bound(claim, m.N, scale)))
		}
		why = fmt.Sprintf("claimed %s not confirmed: %s", claim.Name, w)
	} else {
		why = fmt.Sprintf("claimed %q is not in the GPU table", sanitize(claimed, maxNameLen))
	}

	var cands []market.GPUModel
	for _, g := range t.Models() {
		if ok, _ := consistent(g); ok {
			cands = append(cands, g)
		}
	}
	if len(cands) == 0 {
		return "", fmt.Sprintf("%s; no model in the table is consistent with %s at n = %d", why, round(m.Elapsed), m.N)
	}
	sort.Slice(cands, func(a, b int) bool {
		ca, cb := cands[a], cands[b]
		if ca.BaseScore != cb.BaseScore {
			return ca.BaseScore > cb.BaseScore
		}
		if ca.FP16TFLOPS != cb.FP16TFLOPS {
			return ca.FP16TFLOPS > cb.FP16TFLOPS
		}
		return ca.Name < cb.Name
	})
	best := cands[0]
	if known && best.TolerancePair == claim.Name && claim.BaseScore <= best.BaseScore {
		return claim.Name, fmt.Sprintf("%s; measured as %s, its tolerance pair", why, best.Name)
	}
	return best.Name, fmt.Sprintf("%s; identified as %s", why, best.Name)
}

func round(d time.Duration) time.Duration {
	if d > time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Microsecond)
}
