package pog

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// ReasonSimulatedRefused is the reason for a simulated worker when the
// validator was not started by devnet.
const ReasonSimulatedRefused = "simulated GPU refused outside devnet"

// Policy is the validator's rule for crediting what a session measured.
type Policy struct {
	// MinRateFraction: a GPU is credited as a model only when the
	// throughput the validator measured (2n³ over the GPU's own compute
	// time) reaches this fraction of the model's table rate.
	MinRateFraction float64
	// MinResidentFraction: a GPU is credited as a model only when the C it
	// proved resident (ResidentBytes(n)) fits the model's memory and fills
	// at least this fraction of it. 0.57 is above 80 GB / 141 GB, so no
	// 80 GB card passes for an H200.
	MinResidentFraction float64
	// ResidencyEfficiency is the share of a model's datasheet memory
	// bandwidth the residency bound assumes; ResidencySlack is added to
	// the bound for the GPU's kernel launches and the worker's own
	// latency.
	ResidencyEfficiency float64
	ResidencySlack      time.Duration
	// HostLinkBandwidth is the fastest host link, in bytes per second
	// (PCIe 5.0 ×16: 64e9). For a model without a memory bandwidth, the
	// residency bound assumes twice this rate, so a C streamed over the
	// host link cannot meet it.
	HostLinkBandwidth float64
	// MaxRTT caps the round trip a session subtracts from its compute
	// times and adds to its residency bound: a worker that delays its
	// pongs gains at most this much.
	MaxRTT time.Duration
	// ComputeSlack is added to the longest time the validator waits for
	// commitments (the slowest credited rate's time at n).
	ComputeSlack time.Duration
	// AllowSimulated accepts simulated workers (devnet only).
	AllowSimulated bool
}

// Policy defaults.
const (
	DefaultMinRateFraction     = 0.83
	DefaultMinResidentFraction = 0.57
	DefaultResidencyEfficiency = 0.5
	DefaultHostLinkBandwidth   = 64e9
)

// DefaultPolicy returns the production policy: credit above 83% of a
// model's rate, residency bound at 50% of its memory bandwidth plus
// 100 ms, round trips capped at 250 ms, simulated workers refused.
func DefaultPolicy() Policy {
	return Policy{
		MinRateFraction:     DefaultMinRateFraction,
		MinResidentFraction: DefaultMinResidentFraction,
		ResidencyEfficiency: DefaultResidencyEfficiency,
		ResidencySlack:      100 * time.Millisecond,
		HostLinkBandwidth:   DefaultHostLinkBandwidth,
		MaxRTT:              250 * time.Millisecond,
		ComputeSlack:        10 * time.Second,
	}
}

// ExpectedTime is the time model m needs for the multiplication at n at
// its table rate.
func ExpectedTime(m market.GPUModel, n int) time.Duration {
	return seconds(Flops(n) / (m.FP16TFLOPS * 1e12))
}

// ResidencyTime is the time model m needs for the residency round at n at
// the share eff of its memory bandwidth (2 × hostLink when the table has
// none).
func ResidencyTime(m market.GPUModel, n int, eff, hostLink float64) time.Duration {
	bw := m.MemoryBandwidth * eff
	if bw <= 0 {
		bw = 2 * hostLink
	}
	return seconds(float64(ResidencyPasses) * float64(ResidentBytes(n)) / bw)
}

// ResidencyBound is the longest the residency round may take model m at n
// (time scaled by scale, 1 for real GPUs), rtt being the session's
// round trip (capped at MaxRTT).
func (p Policy) ResidencyBound(m market.GPUModel, n int, scale float64, rtt time.Duration) time.Duration {
	t := ResidencyTime(m, n, p.ResidencyEfficiency, p.HostLinkBandwidth)
	return seconds(t.Seconds()*scale) + p.ResidencySlack + min(rtt, p.MaxRTT)
}

// fits reports whether model m's memory suits a C proven resident at n:
// it holds it and it fills at least MinResidentFraction of it.
func (p Policy) fits(m market.GPUModel, n int) bool {
	c := float64(ResidentBytes(n))
	mem := float64(m.MemoryBytes)
	return c <= mem && c >= p.MinResidentFraction*mem
}

func seconds(s float64) time.Duration {
	if s > float64(math.MaxInt64)/1e9 || math.IsNaN(s) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(s * 1e9)
}

// ComputeLimit returns how long a validator waits for commitments at n:
// the time of the slowest model whose memory suits the test (or of all
// models when none does) at MinRateFraction of its rate, scaled, plus
// ComputeSlack. A GPU slower than that cannot be credited as anything.
func (p Policy) ComputeLimit(t *market.GPUTable, n int, scale float64) time.Duration {
	var limit, any time.Duration
	for _, m := range t.Models() {
		b := seconds(ExpectedTime(m, n).Seconds() / max(p.MinRateFraction, 0.01) * scale)
		any = max(any, b)
		if p.fits(m, n) {
			limit = max(limit, b)
		}
	}
	if limit == 0 {
		limit = any
	}
	return limit + p.ComputeSlack
}

// Measured is what the validator measured of one GPU.
type Measured struct {
	// N is the test's size (the nominal size for a simulated worker).
	N int
	// Compute is the GPU's compute time: from the compute request to its
	// commitment, less the session's round trip.
	Compute time.Duration
	// Residency is the time from the residency request to the GPU's roots
	// and RTT the session's round trip; a zero Residency skips the
	// residency check (Identify-only uses).
	Residency, RTT time.Duration
	// Scale is the devnet speed factor of a simulated worker, 1 otherwise.
	Scale float64
}

// TFLOPS is the measured throughput, 2n³ over the compute time (at the
// simulated speed for a simulated worker).
func (m Measured) TFLOPS() float64 {
	s := m.Compute.Seconds() / m.Scale
	if s <= 0 {
		s = 1e-9
	}
	return Flops(m.N) / s / 1e12
}

// Credit decides the model one GPU is credited as, from what the
// validator measured: the claimed model when the throughput reaches
// MinRateFraction of its rate, its memory suits the resident C and the
// residency round met the model's bound; otherwise the best-scoring model
// no better than the claim (any model for an unknown claim) that meets all
// three, with code PoGDowngraded; or none, with PoGNotResident when only
// the residency bound failed the claim, else PoGTooSlow. The reason says
// it with the figures.
func Credit(t *market.GPUTable, claimed string, m Measured, p Policy) (model string, code market.PoGCode, reason string) {
	if !validN(m.N) {
		return "", market.PoGTooSlow, fmt.Sprintf("test size n = %d is not a legal size", m.N)
	}
	if !(m.Scale > 0 && m.Scale <= 1) {
		return "", market.PoGTooSlow, "measurement without a time scale in (0, 1]"
	}
	tf := m.TFLOPS()
	resident := func(g market.GPUModel) bool {
		return m.Residency == 0 || m.Residency <= p.ResidencyBound(g, m.N, m.Scale, m.RTT)
	}
	ok := func(g market.GPUModel) bool {
		return p.fits(g, m.N) && tf >= p.MinRateFraction*g.FP16TFLOPS && resident(g)
	}
	claim, known := t.Lookup(claimed)
	if known && ok(claim) {
		return claim.Name, market.PoGOK, fmt.Sprintf("%s confirmed: %.4g TFLOPS measured at n = %d, %.0f%% of its %.4g",
			claim.Name, tf, m.N, 100*tf/claim.FP16TFLOPS, claim.FP16TFLOPS)
	}
	var why string
	fail := market.PoGTooSlow
	switch {
	case !known:
		why = fmt.Sprintf("claimed %q is not in the GPU table", sanitize(claimed, maxNameLen))
	case !p.fits(claim, m.N):
		why = fmt.Sprintf("claimed %s: a %.1f GB resident C (n = %d) does not suit its %.1f GB (must fit and fill ≥ %.0f%%)",
			claim.Name, float64(ResidentBytes(m.N))/1e9, m.N, float64(claim.MemoryBytes)/1e9, 100*p.MinResidentFraction)
	case tf < p.MinRateFraction*claim.FP16TFLOPS:
		why = fmt.Sprintf("claimed %s needs %.4g TFLOPS (%.0f%% of %.4g), measured %.4g at n = %d",
			claim.Name, p.MinRateFraction*claim.FP16TFLOPS, 100*p.MinRateFraction, claim.FP16TFLOPS, tf, m.N)
	default:
		fail = market.PoGNotResident
		why = fmt.Sprintf("claimed %s: the residency round took %s, its bound is %s: C was not held in the GPU's memory",
			claim.Name, round(m.Residency), round(p.ResidencyBound(claim, m.N, m.Scale, m.RTT)))
	}
	var cands []market.GPUModel
	for _, g := range t.Models() {
		if (!known || g.BaseScore <= claim.BaseScore) && ok(g) {
			cands = append(cands, g)
		}
	}
	if len(cands) == 0 {
		return "", fail, why + "; no model of the table is proven"
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
		return claim.Name, market.PoGOK, fmt.Sprintf("%s; measured as %s, its tolerance pair", why, best.Name)
	}
	return best.Name, market.PoGDowngraded, fmt.Sprintf("%s; credited as %s", why, best.Name)
}

func round(d time.Duration) time.Duration {
	if d > time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Microsecond)
}
