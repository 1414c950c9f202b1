package pog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// CheckConfig configures the validator side of a session.
type CheckConfig struct {
	// Table is the GPU reference table (default market.DefaultGPUTable()).
	Table *market.GPUTable
	// Policy decides identification (zero value: DefaultPolicy()).
	Policy *Policy
	// Challenges is the elements checked per GPU (default
	// DefaultChallenges, at most MaxChallenges and n).
	Challenges int
	// SimTimeScale is sent to simulated workers when the policy allows them
	// (default DefaultSimTimeScale).
	SimTimeScale float64
	// ToleranceFactor multiplies Tolerance(n) (default 1), for calibration
	// against a GPU's measured error (`pog bench --verify`).
	ToleranceFactor float64
	// ProofTimeout bounds the wait for proofs (default 60 s).
	ProofTimeout time.Duration
	// HelloTimeout, when positive, bounds the wait for the worker's
	// complete hello line; a worker that sends nothing, or part of a line
	// and then stalls, ends the session with an error wrapping ErrNoHello.
	HelloTimeout time.Duration
	// GPUs, when positive, is the most GPUs tested and credited (the count
	// the miner declared for the lease); the default and ceiling is
	// MaxGPUs. A worker listing more devices than the miner declared gains
	// nothing by it.
	GPUs int
	// Rand is the source of seeds and cells (default crypto/rand).
	Rand io.Reader
	// Now is the clock for the wall-clock measurement (default time.Now).
	Now func() time.Time
}

// Result is the outcome of one session.
type Result struct {
	// Info is what the worker claimed.
	Info Info
	// Claimed is the first tested GPU's reported name.
	Claimed string
	// N is the size requested; Elapsed the validator's wall-clock from the
	// compute request to the commitments.
	N       int
	Elapsed time.Duration
	// GPUs are the tested GPUs, the first min(len(Info.GPUs), MaxGPUs).
	GPUs []GPUResult
	// Passed of the tested GPUs proved their commitment; Required had to.
	Passed, Required int
	// Verified is Passed ≥ Required.
	Verified bool
	// Model is the identified model ("" when the session failed) and Count
	// the GPUs credited: Passed when Model is set, else 0.
	Model string
	Count int
	// Reason explains Model, for logs and the miner.
	Reason string
	// Challenged: the challenge named cells of at least one GPU and was
	// sent. From then on the worker knows which cells are checked (and,
	// holding the seeds, whether its answers would verify), so any failure
	// to return valid proofs must count as a failed proof: a worker error,
	// a protocol violation, an early end or a timeout would otherwise be a
	// free retry for a worker that computed only part of C.
	Challenged bool
}

// GPUResult is one tested GPU.
type GPUResult struct {
	Index   int
	N       int
	Root    Hash
	Timings Timings
	// Err is why the GPU failed, "" when every proof held.
	Err string
	// Challenged: cells of this GPU were sent; an Err on such a GPU is a
	// failed proof whatever it says.
	Challenged bool
}

// Check runs the validator side of a session with a worker whose stdout is
// r and stdin is w (`pog compute` over one SSH exec session): it reads the
// hello, sends fresh seeds at the n chosen for the claimed model, measures
// the wall-clock until the commitments arrive, challenges every GPU and
// verifies the proofs, applies the pass rule and identifies the model.
//
// A proof that fails, a worker too slow for any model and a refused
// simulated worker give a Result with Model "" and the reason. A worker that
// breaks the protocol (garbage, oversized or truncated lines, wrong counts
// or sizes) gives an error wrapping ErrProtocol, one that sends an error
// message a *WorkerError, one whose hello is not complete within
// HelloTimeout an error wrapping ErrNoHello, and I/O failures their own
// error. When ctx ends Check returns ctx.Err(). A failure after the
// challenge was sent returns, together with the error, the Result so far
// with Challenged set (see Result.Challenged); earlier failures return a
// nil Result. After an error the caller must close r and w (end the SSH
// session) to release Check's reader goroutine.
func Check(ctx context.Context, r io.Reader, w io.Writer, cfg CheckConfig) (*Result, error) {
	table := cfg.Table
	if table == nil {
		table = market.DefaultGPUTable()
	}
	policy := DefaultPolicy()
	if cfg.Policy != nil {
		policy = *cfg.Policy
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	proofTimeout := cfg.ProofTimeout
	if proofTimeout <= 0 {
		proofTimeout = 60 * time.Second
	}
	tolFactor := cfg.ToleranceFactor
	if tolFactor <= 0 {
		tolFactor = 1
	}
	c := newLineConn(r, w)

	hctx, cancel := ctx, context.CancelFunc(func() {})
	if cfg.HelloTimeout > 0 {
		hctx, cancel = context.WithTimeout(ctx, cfg.HelloTimeout)
	}
	line, err := c.read(hctx, MaxHelloLine)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("%w within %s", ErrNoHello, cfg.HelloTimeout)
		}
		return nil, readErr("hello", err)
	}
	info, err := DecodeHello(line)
	if err != nil {
		return nil, err
	}
	res := &Result{Info: info}
	if len(info.GPUs) == 0 {
		res.Reason = "no GPUs reported"
		return res, nil
	}
	if info.Simulated && !policy.AllowSimulated {
		res.Reason = ReasonSimulatedRefused
		return res, nil
	}
	g := min(len(info.GPUs), MaxGPUs)
	if cfg.GPUs > 0 {
		g = min(g, cfg.GPUs)
	}
	res.Claimed = info.GPUs[0].Name
	minMem := info.GPUs[0].MemoryBytes
	for _, gi := range info.GPUs[:g] {
		minMem = min(minMem, gi.MemoryBytes)
	}
	var claimed *market.GPUModel
	if m, ok := table.Lookup(res.Claimed); ok {
		claimed = &m
	} else {
		// No model could be identified beyond the table's largest memory;
		// a bigger test would only keep the validator waiting.
		var largest uint64
		for _, m := range table.Models() {
			largest = max(largest, m.MemoryBytes)
		}
		minMem = min(minMem, largest)
	}
	res.N = ChooseN(claimed, minMem)

	seeds, err := NewSeeds(cfg.Rand, g)
	if err != nil {
		return nil, err
	}
	req := ComputeRequest{Type: TypeCompute, N: res.N, Seeds: seeds}
	scale := 1.0
	if info.Simulated {
		scale = cfg.SimTimeScale
		if scale <= 0 {
			scale = DefaultSimTimeScale
		}
		req.SimTimeScale = scale
	}
	limit := policy.ComputeLimit(table, res.N, scale) + time.Second
	cctx, cancel := context.WithTimeout(ctx, limit)
	start := now()
	err = c.write(cctx, req)
	if err == nil {
		line, err = c.read(cctx, MaxCommitLine)
	}
	res.Elapsed = now().Sub(start)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			res.Reason = fmt.Sprintf("no commitment within %s at n = %d: slower than any model that suits the test", round(limit), res.N)
			return res, nil
		}
		return nil, readErr("commitments", err)
	}
	commit, err := DecodeComputeResponse(line, req)
	if err != nil {
		return nil, err
	}

	ch := ChallengeRequest{Type: TypeChallenge, GPUs: make([][]Cell, g)}
	res.GPUs = make([]GPUResult, g)
	for i, cm := range commit.GPUs {
		gr := GPUResult{Index: i, N: cm.N, Root: cm.Root, Timings: cm.Timings}
		switch {
		case cm.Error != "":
			gr.Err = "worker: " + sanitize(cm.Error, maxErrorMessage)
		case cm.N != res.N && !(info.Simulated && cm.N == SimN):
			gr.Err = fmt.Sprintf("committed n = %d for requested %d", cm.N, res.N)
		}
		if gr.Err == "" {
			k := cfg.Challenges
			if k <= 0 {
				k = DefaultChallenges
			}
			cells, err := ChooseCells(cfg.Rand, cm.N, min(k, cm.N, MaxChallenges))
			if err != nil {
				return nil, err
			}
			ch.GPUs[i] = cells
			gr.Challenged = true
			res.Challenged = true
		} else {
			gr.N = 0
			ch.GPUs[i] = []Cell{}
		}
		res.GPUs[i] = gr
	}
	ns := make([]int, g)
	for i, gr := range res.GPUs {
		ns[i] = gr.N
	}
	// From here on a failure comes with res: the worker may have seen the
	// challenge (Result.Challenged).
	pctx, cancel := context.WithTimeout(ctx, proofTimeout)
	err = c.write(pctx, ch)
	if err == nil {
		line, err = c.read(pctx, ProofsLineLimit(ch, ns))
	}
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no proofs within %s: %w", proofTimeout, err)
		}
		return res, readErr("proofs", err)
	}
	proofs, err := DecodeProofs(line, ch, ns)
	if err != nil {
		return res, err
	}
	for i := range res.GPUs {
		gr := &res.GPUs[i]
		if gr.Err != "" {
			continue
		}
		if e := proofs.GPUs[i].Error; e != "" {
			gr.Err = "worker: " + sanitize(e, maxErrorMessage)
			continue
		}
		if err := VerifyGPU(seeds[i], gr.N, gr.Root, ch.GPUs[i], proofs.GPUs[i].Proofs, tolFactor*Tolerance(gr.N)); err != nil {
			gr.Err = err.Error()
			continue
		}
		res.Passed++
	}
	res.Required = Required(g)
	res.Verified = res.Passed >= res.Required
	if !res.Verified {
		res.Reason = fmt.Sprintf("%d of %d GPUs proved their computation, %d required", res.Passed, g, res.Required)
		for _, gr := range res.GPUs {
			if gr.Err != "" {
				res.Reason += fmt.Sprintf("; GPU %d: %s", gr.Index, gr.Err)
				break
			}
		}
		return res, nil
	}
	res.Model, res.Reason = Identify(table, res.Claimed, Measurement{
		N: res.N, Elapsed: res.Elapsed, Simulated: info.Simulated, SimTimeScale: scale,
	}, policy)
	if res.Model != "" {
		res.Count = res.Passed
	}
	return res, nil
}

// readErr wraps a read failure; a stream that ends early is a protocol
// violation.
func readErr(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: read %s: stream ended early", ErrProtocol, what)
	}
	return fmt.Errorf("read %s: %w", what, err)
}
