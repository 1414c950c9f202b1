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
	// ToleranceFactor multiplies Tolerance(n) and the numerics bound
	// (default 1), for calibration against a GPU's measured error (`pog
	// bench --verify`).
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
	// Verifiers, when set, bounds the sessions that decode and verify
	// their proofs at once (that is the validator's CPU cost); a session
	// waits for a slot only once its timed part is over, so the wait
	// changes no measurement. Nil: no bound.
	Verifiers *Verifiers
	// Rand is the source of seeds and cells (default crypto/rand).
	Rand io.Reader
	// Now is the clock for the wall-clock measurement (default time.Now).
	Now func() time.Time

	// nonces are the residency round's, set by Check.
	nonces []Seed
}

// Result is the outcome of one session.
type Result struct {
	// Info is what the worker claimed.
	Info Info
	// Claimed is the first tested GPU's reported name.
	Claimed string
	// N is the size requested; RTT the fastest of the session's round
	// trips; Elapsed the validator's wall-clock from the compute request
	// to the last commitment.
	N       int
	RTT     time.Duration
	Elapsed time.Duration
	// GPUs are the tested GPUs, the first min(len(Info.GPUs), MaxGPUs).
	GPUs []GPUResult
	// Passed of the tested GPUs proved their commitment; Required had to.
	Passed, Required int
	// Verified is Passed ≥ Required.
	Verified bool
	// Model is the model credited ("" when the session failed): the lowest
	// of the credited GPUs' models; Count the credited GPUs. At least
	// Required GPUs must be credited, or none is.
	Model string
	Count int
	// Code classifies the outcome (market.PoGOK: every GPU credited as
	// claimed) and Reason explains it, for logs and the miner.
	Code   market.PoGCode
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
	// Elapsed is the validator's time from the compute request to this
	// GPU's commitment; TFLOPS the throughput measured from it (2n³ over
	// Elapsed less the round trip).
	Elapsed time.Duration
	TFLOPS  float64
	// Residency is the time from the residency request to this GPU's
	// roots; Roots are the roots.
	Residency time.Duration
	Roots     []Hash
	// Model is the model credited, "" when none; Code and Reason say why.
	Model  string
	Code   market.PoGCode
	Reason string
	// Err is why the GPU failed its proof or its protocol, "" when every
	// proof held.
	Err string
	// Challenged: cells of this GPU were sent; an Err on such a GPU is a
	// failed proof whatever it says.
	Challenged bool
}

// stamped is a line and when it arrived.
type stamped struct {
	line []byte
	at   time.Time
}

// session is the validator side's state while Check runs.
type session struct {
	cfg    CheckConfig
	table  *market.GPUTable
	policy Policy
	now    func() time.Time
	c      *lineConn
	res    *Result
	scale  float64
}

// Check runs the validator side of a session with a worker whose stdout is
// r and stdin is w (`pog compute` over one SSH exec session): it reads the
// hello, times PingCount round trips, sends fresh seeds at the n chosen for
// the claimed model and times each GPU's commitment, runs the residency
// round and times each GPU's answer, challenges every GPU, verifies the
// proofs and openings, and credits each GPU what it proved (Credit),
// applying the pass rule (Required) to the credited GPUs.
//
// A proof that fails, a GPU too slow or not resident, a refused simulated
// worker give a Result with Model "" and the code and reason. A worker that
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
	s := &session{cfg: cfg, table: cfg.Table, policy: DefaultPolicy(), now: cfg.Now, c: newLineConn(r, w), scale: 1}
	if s.table == nil {
		s.table = market.DefaultGPUTable()
	}
	if cfg.Policy != nil {
		s.policy = *cfg.Policy
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cfg.ProofTimeout <= 0 {
		s.cfg.ProofTimeout = 60 * time.Second
	}
	if s.cfg.ToleranceFactor <= 0 {
		s.cfg.ToleranceFactor = 1
	}
	return s.run(ctx)
}

func (s *session) run(ctx context.Context) (*Result, error) {
	info, err := s.hello(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{Info: info}
	s.res = res
	if len(info.GPUs) == 0 {
		return s.fail(market.PoGNoGPU, "no GPUs reported"), nil
	}
	if info.Simulated && !s.policy.AllowSimulated {
		return s.fail(market.PoGSimulated, ReasonSimulatedRefused), nil
	}
	g := min(len(info.GPUs), MaxGPUs)
	if s.cfg.GPUs > 0 {
		g = min(g, s.cfg.GPUs)
	}
	res.Claimed = info.GPUs[0].Name
	res.N = s.chooseN(info.GPUs[:g])
	if res.RTT, err = s.ping(ctx); err != nil {
		return nil, err
	}

	seeds, err := NewSeeds(s.cfg.Rand, g)
	if err != nil {
		return nil, err
	}
	req := ComputeRequest{Type: TypeCompute, N: res.N, Seeds: seeds}
	if info.Simulated {
		s.scale = s.cfg.SimTimeScale
		if s.scale <= 0 {
			s.scale = DefaultSimTimeScale
		}
		req.SimTimeScale = s.scale
	}
	limit := s.policy.ComputeLimit(s.table, res.N, s.scale) + min(res.RTT, s.policy.MaxRTT)
	seen := make([]bool, g)
	res.GPUs = make([]GPUResult, g)
	lines, start, err := s.exchange(ctx, req, g, limit, MaxCommitLine)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return s.fail(market.PoGTooSlow, fmt.Sprintf("not every GPU committed within %s at n = %d: slower than any model that suits the test", round(limit), res.N)), nil
	}
	if err != nil {
		return nil, readErr("commitments", err)
	}
	for _, l := range lines {
		cm, err := DecodeCommitment(l.line, req, seen)
		if err != nil {
			return nil, err
		}
		gr := GPUResult{Index: cm.GPU, N: cm.N, Root: cm.Root, Timings: cm.Timings, Elapsed: l.at.Sub(start)}
		switch {
		case cm.Error != "":
			gr.Err, gr.Code = "worker: "+sanitize(cm.Error, maxErrorMessage), market.PoGWorkerError
		case cm.N != res.N && !(info.Simulated && cm.N == SimN):
			gr.Err, gr.Code = fmt.Sprintf("committed n = %d for requested %d", cm.N, res.N), market.PoGWrongSize
		}
		if gr.Err != "" {
			gr.N = 0
		}
		res.GPUs[cm.GPU] = gr
		res.Elapsed = max(res.Elapsed, gr.Elapsed)
	}

	if err := s.residency(ctx); err != nil {
		return nil, err
	}
	if res.Code != "" { // the residency round timed out: no challenge
		return res, nil
	}
	return s.challenge(ctx, seeds)
}

// hello reads and checks the worker's hello within HelloTimeout.
func (s *session) hello(ctx context.Context) (Info, error) {
	hctx, cancel := ctx, context.CancelFunc(func() {})
	if s.cfg.HelloTimeout > 0 {
		hctx, cancel = context.WithTimeout(ctx, s.cfg.HelloTimeout)
	}
	line, err := s.c.read(hctx, MaxHelloLine)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return Info{}, fmt.Errorf("%w within %s", ErrNoHello, s.cfg.HelloTimeout)
		}
		return Info{}, readErr("hello", err)
	}
	return DecodeHello(line)
}

// chooseN picks n for the claimed model, or from the smallest reported
// memory (at most the table's largest) for an unknown one.
func (s *session) chooseN(gpus []GPUInfo) int {
	minMem := gpus[0].MemoryBytes
	for _, gi := range gpus {
		minMem = min(minMem, gi.MemoryBytes)
	}
	if m, ok := s.table.Lookup(gpus[0].Name); ok {
		return ChooseN(&m, minMem)
	}
	var largest uint64
	for _, m := range s.table.Models() {
		largest = max(largest, m.MemoryBytes)
	}
	return ChooseN(nil, min(minMem, largest))
}

// ping times PingCount round trips and returns the fastest.
func (s *session) ping(ctx context.Context) (time.Duration, error) {
	var best time.Duration
	for k := range PingCount {
		pctx, cancel := context.WithTimeout(ctx, s.pingTimeout())
		start := s.now()
		err := s.c.write(pctx, Ping{Type: TypePing, Seq: k})
		var line []byte
		if err == nil {
			line, err = s.c.read(pctx, MaxPingLine)
		}
		rtt := s.now().Sub(start)
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				return 0, fmt.Errorf("%w: no pong within %s", ErrProtocol, s.pingTimeout())
			}
			return 0, readErr("pong", err)
		}
		p, err := DecodePing(line, TypePong)
		if err != nil {
			return 0, err
		}
		if p.Seq != k {
			return 0, protoErr("pong %d for ping %d", p.Seq, k)
		}
		if k == 0 || rtt < best {
			best = rtt
		}
	}
	return best, nil
}

func (s *session) pingTimeout() time.Duration {
	if s.cfg.HelloTimeout > 0 {
		return s.cfg.HelloTimeout
	}
	return 30 * time.Second
}

// exchange sends req and reads count lines within limit, stamping each.
func (s *session) exchange(ctx context.Context, req any, count int, limit time.Duration, lineLimit int) ([]stamped, time.Time, error) {
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	start := s.now()
	if err := s.c.write(cctx, req); err != nil {
		return nil, start, err
	}
	out := make([]stamped, 0, count)
	for range count {
		line, err := s.c.read(cctx, lineLimit)
		if err != nil {
			return out, start, err
		}
		out = append(out, stamped{line, s.now()})
	}
	return out, start, nil
}

// residency runs the residency round for the GPUs that committed. A round
// not answered in time fails the session (res.Code set).
func (s *session) residency(ctx context.Context) error {
	res := s.res
	nonces, err := NewSeeds(s.cfg.Rand, len(res.GPUs))
	if err != nil {
		return err
	}
	s.cfg.nonces = nonces
	var limit time.Duration
	for _, m := range s.table.Models() {
		limit = max(limit, s.policy.ResidencyBound(m, res.N, s.scale, res.RTT))
	}
	limit = 4*limit + 5*time.Second
	lines, start, err := s.exchange(ctx, ResidencyRequest{Type: TypeResidency, Nonces: nonces}, len(res.GPUs), limit, MaxResidentLine)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		s.fail(market.PoGNotResident, fmt.Sprintf("not every GPU answered the residency round within %s: C was not held in GPU memory", round(limit)))
		return nil
	}
	if err != nil {
		return readErr("residency", err)
	}
	seen := make([]bool, len(res.GPUs))
	for _, l := range lines {
		r, err := DecodeResidency(l.line, seen)
		if err != nil {
			return err
		}
		gr := &res.GPUs[r.GPU]
		gr.Residency = l.at.Sub(start)
		if gr.Err != "" {
			continue
		}
		if r.Error != "" {
			gr.Err, gr.Code = "worker: residency: "+sanitize(r.Error, maxErrorMessage), market.PoGNotResident
			continue
		}
		gr.Roots = r.Roots
	}
	return nil
}

// challenge sends the cells and openings, verifies the answers and
// credits the GPUs.
func (s *session) challenge(ctx context.Context, seeds []Seed) (*Result, error) {
	res := s.res
	g := len(res.GPUs)
	ch := ChallengeRequest{Type: TypeChallenge, GPUs: make([][]Cell, g), Openings: make([][]Opening, g)}
	ns := make([]int, g)
	for i := range res.GPUs {
		gr := &res.GPUs[i]
		ch.GPUs[i], ch.Openings[i] = []Cell{}, []Opening{}
		if gr.N == 0 {
			continue
		}
		k := s.cfg.Challenges
		if k <= 0 {
			k = DefaultChallenges
		}
		cells, err := ChooseCells(s.cfg.Rand, gr.N, min(k, gr.N, MaxChallenges))
		if err != nil {
			return nil, err
		}
		ch.GPUs[i], ns[i] = cells, gr.N
		if gr.Roots != nil {
			if ch.Openings[i], err = ChooseOpenings(s.cfg.Rand, gr.N); err != nil {
				return nil, err
			}
		}
		gr.Challenged, res.Challenged = true, true
	}
	// From here on a failure comes with res: the worker may have seen the
	// challenge (Result.Challenged).
	pctx, cancel := context.WithTimeout(ctx, s.cfg.ProofTimeout)
	err := s.c.write(pctx, ch)
	var line []byte
	if err == nil {
		line, err = s.c.read(pctx, ProofsLineLimit(ch, ns))
	}
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no proofs within %s: %w", s.cfg.ProofTimeout, err)
		}
		return res, readErr("proofs", err)
	}
	if err := s.cfg.Verifiers.acquire(ctx); err != nil {
		return res, err
	}
	defer s.cfg.Verifiers.release()
	proofs, err := DecodeProofs(line, ch, ns)
	if err != nil {
		return res, err
	}
	for i := range res.GPUs {
		s.verify(&res.GPUs[i], seeds[i], ch.Cells(i), ch.Openings[i], proofs.GPUs[i])
	}
	s.credit()
	return res, nil
}

// Cells returns GPU g's cells.
func (ch ChallengeRequest) Cells(g int) []Cell { return ch.GPUs[g] }

// verify checks one GPU's proofs and openings.
func (s *session) verify(gr *GPUResult, seed Seed, cells []Cell, ops []Opening, gp GPUProofs) {
	if gr.Err != "" {
		return
	}
	if gp.Error != "" {
		gr.Err, gr.Code = "worker: "+sanitize(gp.Error, maxErrorMessage), market.PoGBadProof
		return
	}
	if err := VerifyGPU(seed, gr.N, gr.Root, cells, gp.Proofs, s.cfg.ToleranceFactor*Tolerance(gr.N), s.cfg.ToleranceFactor); err != nil {
		gr.Err, gr.Code = err.Error(), ErrorCode(err, market.PoGBadProof)
		return
	}
	s.res.Passed++
	if gr.Roots == nil {
		return
	}
	for k, op := range ops {
		if err := VerifyOpening(s.cfg.nonces[gr.Index], gr.N, gr.Root, gr.Roots, op, gp.Openings[k]); err != nil {
			gr.Err, gr.Code = "residency: "+err.Error(), market.PoGNotResident
			s.res.Passed--
			return
		}
	}
}

// credit decides each GPU's model and the session's outcome.
func (s *session) credit() {
	res := s.res
	g := len(res.GPUs)
	res.Required = Required(g)
	res.Verified = res.Passed >= res.Required
	rtt := min(res.RTT, s.policy.MaxRTT)
	credited := 0
	for i := range res.GPUs {
		gr := &res.GPUs[i]
		if gr.Err != "" {
			gr.Reason = fmt.Sprintf("GPU %d: %s", gr.Index, gr.Err)
			continue
		}
		m := Measured{N: res.N, Compute: max(gr.Elapsed-rtt, 0), Residency: gr.Residency, RTT: res.RTT, Scale: s.scale}
		gr.TFLOPS = m.TFLOPS()
		gr.Model, gr.Code, gr.Reason = Credit(s.table, res.Claimed, m, s.policy)
		gr.Reason = fmt.Sprintf("GPU %d: %s", gr.Index, gr.Reason)
		if gr.Model != "" {
			credited++
		}
	}
	if credited > 0 {
		// One device standing in for several: the GPUs it could not serve
		// at once fall short while the others pass.
		for i := range res.GPUs {
			if gr := &res.GPUs[i]; gr.Err == "" && gr.Model == "" {
				gr.Code = market.PoGNotConcurrent
				gr.Reason += "; other GPUs of the lease were credited: its results were not produced concurrently with theirs"
			}
		}
	}
	worst := -1
	for i, gr := range res.GPUs {
		if gr.Code != market.PoGOK && (worst < 0 || codeRank(gr.Code) > codeRank(res.GPUs[worst].Code)) {
			worst = i
		}
	}
	switch {
	case !res.Verified:
		res.Code, res.Reason = res.GPUs[worst].Code, fmt.Sprintf("%d of %d GPUs proved their computation, %d required; %s", res.Passed, g, res.Required, res.GPUs[worst].Reason)
		return
	case credited < res.Required:
		res.Code, res.Reason = res.GPUs[worst].Code, fmt.Sprintf("%d of %d GPUs credited, %d required; %s", credited, g, res.Required, res.GPUs[worst].Reason)
		return
	}
	model := ""
	for _, gr := range res.GPUs {
		if gr.Model == "" {
			continue
		}
		if mm, ok := s.table.Lookup(gr.Model); ok && (model == "" || mm.BaseScore < s.lookupScore(model)) {
			model = gr.Model
		}
	}
	res.Model, res.Count = model, credited
	res.Code = market.PoGOK
	res.Reason = res.GPUs[0].Reason
	if worst >= 0 {
		res.Code, res.Reason = res.GPUs[worst].Code, res.GPUs[worst].Reason
		res.Reason = fmt.Sprintf("%d × %s credited; %s", credited, model, res.Reason)
	}
}

func (s *session) lookupScore(name string) float64 {
	m, _ := s.table.Lookup(name)
	return m.BaseScore
}

// codeRank orders codes by how much they say about the miner: a failed
// proof first.
func codeRank(c market.PoGCode) int {
	switch c {
	case market.PoGNumerics, market.PoGBadProof, market.PoGWrongSize:
		return 6
	case market.PoGNotResident:
		return 5
	case market.PoGNotConcurrent:
		return 4
	case market.PoGTooSlow:
		return 3
	case market.PoGWorkerError:
		return 2
	case market.PoGDowngraded:
		return 1
	}
	return 0
}

// fail records a session-wide failure.
func (s *session) fail(code market.PoGCode, reason string) *Result {
	s.res.Code, s.res.Reason = code, reason
	return s.res
}

// Verifiers is a pool of slots for verifying proofs, shared by the
// sessions of a validator (CheckConfig.Verifiers).
type Verifiers struct{ slots chan struct{} }

// NewVerifiers returns a pool of k ≥ 1 slots.
func NewVerifiers(k int) *Verifiers {
	return &Verifiers{slots: make(chan struct{}, max(k, 1))}
}

// acquire takes a slot, or returns ctx's error; a nil pool always has one.
func (v *Verifiers) acquire(ctx context.Context) error {
	if v == nil {
		return nil
	}
	select {
	case v.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (v *Verifiers) release() {
	if v != nil {
		<-v.slots
	}
}

// readErr wraps a read failure; a stream that ends early is a protocol
// violation.
func readErr(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: read %s: stream ended early", ErrProtocol, what)
	}
	return fmt.Errorf("read %s: %w", what, err)
}
