package pog

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// Sim is the devnet backend: each device claims to be Model, computes
// honestly on the CPU at n = SimN, and takes the time Timing (Model when
// unset) would need at the requested n, scaled by the devnet speed factor.
// Its hello says it is simulated, and validators refuse it outside devnet.
type Sim struct {
	Model market.GPUModel
	Count int
	// Timing is the model whose speed the devices imitate; zero means
	// Model. Tests set it to build a worker that claims more than it has.
	Timing market.GPUModel
	// TimeScale applies when a request carries none (default
	// DefaultSimTimeScale).
	TimeScale float64
	// Workers is the goroutines per CPU multiplication.
	Workers int
}

var simSpec = regexp.MustCompile(`^\s*([0-9]+)\s*[xX×]\s*(\S.*)$`)

// ParseSimulate parses a --simulate value, "MODEL" or "COUNTxMODEL"
// ("2xNVIDIA H100"), against the table.
func ParseSimulate(t *market.GPUTable, spec string) (market.GPUModel, int, error) {
	count, name := 1, strings.TrimSpace(spec)
	if m := simSpec.FindStringSubmatch(spec); m != nil {
		c, err := strconv.Atoi(m[1])
		if err != nil || c < 1 || c > MaxReportedGPUs {
			return market.GPUModel{}, 0, fmt.Errorf("simulate %q: count must be 1 to %d", spec, MaxReportedGPUs)
		}
		count, name = c, strings.TrimSpace(m[2])
	}
	model, ok := t.Lookup(name)
	if !ok {
		return market.GPUModel{}, 0, fmt.Errorf("simulate %q: %q is not in the GPU table", spec, name)
	}
	return model, count, nil
}

// Name returns "sim".
func (Sim) Name() string { return "sim" }

// Simulated returns true.
func (Sim) Simulated() bool { return true }

// Open returns Count simulated devices.
func (s Sim) Open(context.Context) ([]Device, error) {
	if s.Model.Name == "" || s.Model.FP16TFLOPS <= 0 {
		return nil, fmt.Errorf("sim backend: no model to simulate")
	}
	count := max(s.Count, 1)
	if count > MaxReportedGPUs {
		return nil, fmt.Errorf("sim backend: %d devices, at most %d", count, MaxReportedGPUs)
	}
	timing := s.Timing
	if timing.FP16TFLOPS <= 0 {
		timing = s.Model
	}
	scale := s.TimeScale
	if scale <= 0 {
		scale = DefaultSimTimeScale
	}
	devs := make([]Device, count)
	for i := range devs {
		devs[i] = &simDevice{
			info: GPUInfo{
				Index:       i,
				Name:        s.Model.Name,
				MemoryBytes: s.Model.MemoryBytes,
				UUID:        fmt.Sprintf("SIM-%08d", i),
			},
			timing:  timing,
			scale:   scale,
			workers: s.Workers,
		}
	}
	return devs, nil
}

type simDevice struct {
	info    GPUInfo
	timing  market.GPUModel
	scale   float64
	workers int
	last    *cpuResult
	// n and lastScale are the last request's nominal size and scale.
	n         int
	lastScale float64
}

// simResidencyEfficiency is the share of its memory bandwidth a simulated
// GPU reaches in the residency round: an honest card's, above the
// validator's bound (Policy.ResidencyEfficiency).
const simResidencyEfficiency = 0.8

func (d *simDevice) Info() GPUInfo { return d.info }

func (d *simDevice) Compute(ctx context.Context, req DeviceRequest) (Commitment, error) {
	start := time.Now()
	d.last = nil
	if !validN(req.N) {
		return Commitment{}, fmt.Errorf("sim backend: n = %d is not a legal size", req.N)
	}
	scale := req.SimTimeScale
	if scale <= 0 {
		scale = d.scale
	}
	res, err := cpuCompute(ctx, SimN, req.Seed, d.workers, cpuOptions{})
	if err != nil {
		return Commitment{}, err
	}
	target := time.Duration(float64(ExpectedTime(d.timing, req.N)) * scale)
	wait, err := sleepUntil(ctx, start, target)
	if err != nil {
		return Commitment{}, err
	}
	res.timings.MultiplyMS += ms(wait)
	d.last, d.n, d.lastScale = res, req.N, scale
	return res.commitment(), nil
}

// sleepUntil waits until target has passed since start, or ctx ends; it
// returns how long it waited.
func sleepUntil(ctx context.Context, start time.Time, target time.Duration) (time.Duration, error) {
	wait := target - time.Since(start)
	if wait <= 0 {
		return 0, nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return wait, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Residency runs the round for real at SimN and takes the time the
// imitated model's memory would need at the nominal n, scaled.
func (d *simDevice) Residency(ctx context.Context, nonce Seed) ([]Hash, error) {
	start := time.Now()
	if d.last == nil {
		return nil, fmt.Errorf("sim backend: nothing computed")
	}
	roots := d.last.residency(nonce)
	target := time.Duration(float64(ResidencyTime(d.timing, d.n, simResidencyEfficiency, DefaultHostLinkBandwidth)) * d.lastScale)
	if _, err := sleepUntil(ctx, start, target); err != nil {
		return nil, err
	}
	return roots, nil
}

func (d *simDevice) Open(_ context.Context, ops []Opening) ([]OpeningProof, error) {
	if d.last == nil || d.last.trees == nil {
		return nil, fmt.Errorf("sim backend: no residency round")
	}
	return d.last.open(ops)
}

func (d *simDevice) Prove(_ context.Context, cells []Cell) ([]Proof, error) {
	if d.last == nil {
		return nil, fmt.Errorf("sim backend: nothing computed")
	}
	return d.last.prove(cells)
}

func (d *simDevice) Close() error { d.last = nil; return nil }
