package pog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
)

// lineConn is one side of a session: bounded line reads and line writes
// that give up when ctx ends. After a read or write was abandoned the conn
// is unusable; its goroutine ends when the caller closes the stream.
type lineConn struct {
	lr *LineReader
	w  io.Writer
	// wmu orders whole lines from concurrent writers (one per GPU).
	wmu    sync.Mutex
	mu     sync.Mutex // protects broken
	broken error
}

func newLineConn(r io.Reader, w io.Writer) *lineConn {
	return &lineConn{lr: NewLineReader(r), w: w}
}

type lineResult struct {
	line []byte
	err  error
}

func (c *lineConn) fail(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil {
		c.broken = err
	}
	return c.broken
}

func (c *lineConn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.broken
}

// read returns the next line; only one read runs at a time.
func (c *lineConn) read(ctx context.Context, limit int) ([]byte, error) {
	if err := c.err(); err != nil {
		return nil, err
	}
	ch := make(chan lineResult, 1)
	go func() {
		line, err := c.lr.ReadLine(limit)
		ch <- lineResult{line, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil && !errors.Is(r.err, io.EOF) {
			c.fail(r.err)
		}
		return r.line, r.err
	case <-ctx.Done():
		c.fail(fmt.Errorf("session abandoned: %w", ctx.Err()))
		return nil, ctx.Err()
	}
}

// write sends v as one line; concurrent writes send whole lines.
func (c *lineConn) write(ctx context.Context, v any) error {
	if err := c.err(); err != nil {
		return err
	}
	b, err := encodeLine(v)
	if err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	ch := make(chan error, 1)
	go func() {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		_, err := c.w.Write(b)
		ch <- err
	}()
	select {
	case err := <-ch:
		if err != nil {
			c.fail(err)
			return fmt.Errorf("write message: %w", err)
		}
		return nil
	case <-ctx.Done():
		c.fail(fmt.Errorf("session abandoned: %w", ctx.Err()))
		return ctx.Err()
	}
}

// openDevices opens the backend and builds the Info it claims.
func openDevices(ctx context.Context, b Backend) ([]Device, Info, error) {
	devs, err := b.Open(ctx)
	if err != nil {
		return nil, Info{}, fmt.Errorf("open %s backend: %w", b.Name(), err)
	}
	info := Info{Version: ProtocolVersion, Backend: b.Name(), Simulated: b.Simulated(), GPUs: make([]GPUInfo, len(devs))}
	for i, d := range devs {
		info.GPUs[i] = d.Info()
		info.GPUs[i].Index = i
	}
	return devs, info, nil
}

func closeDevices(devs []Device) error {
	var errs []error
	for _, d := range devs {
		errs = append(errs, d.Close())
	}
	return errors.Join(errs...)
}

// Describe opens the backend, returns what it claims and closes it.
func Describe(ctx context.Context, b Backend) (Info, error) {
	devs, info, err := openDevices(ctx, b)
	if err != nil {
		return Info{}, err
	}
	return info, closeDevices(devs)
}

// Serve runs the worker side of a session (`pog compute`): hello, then
// answers pings, compute requests (one commit line per GPU, each sent when
// that GPU is done), residency requests (one resident line per GPU, the
// same) and challenges until in ends. GPUs compute, pass and prove in
// parallel. A malformed request is answered with an error message and ends
// the session with an error wrapping ErrProtocol.
func Serve(ctx context.Context, b Backend, in io.Reader, out io.Writer) (err error) {
	devs, info, err := openDevices(ctx, b)
	if err != nil {
		// Tell the validator why before giving up; the hello never comes.
		c := newLineConn(in, out)
		_ = c.write(ctx, ErrorMessage{Type: TypeError, Message: sanitize(err.Error(), maxErrorMessage)})
		return err
	}
	defer func() { err = errors.Join(err, closeDevices(devs)) }()
	c := newLineConn(in, out)
	if err := c.write(ctx, Hello{Type: TypeHello, Info: info}); err != nil {
		return err
	}
	s := &serveState{c: c, devs: devs}
	for {
		line, err := c.read(ctx, MaxChallengeLine)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return s.refuse(ctx, fmt.Errorf("read request: %w", err))
		}
		if err := s.handle(ctx, line); err != nil {
			return err
		}
	}
}

// serveState is what a session remembers between requests.
type serveState struct {
	c    *lineConn
	devs []Device
	// ns are the sizes the GPUs of the last compute request committed,
	// 0 for a GPU that failed; resident marks the GPUs whose residency
	// round succeeded.
	ns       []int
	resident []bool
}

func (s *serveState) refuse(ctx context.Context, e error) error {
	_ = s.c.write(ctx, ErrorMessage{Type: TypeError, Message: sanitize(e.Error(), maxErrorMessage)})
	return e
}

func (s *serveState) handle(ctx context.Context, line []byte) error {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(line, &head); err != nil {
		return s.refuse(ctx, protoErr("request: %v", err))
	}
	switch head.Type {
	case TypePing:
		p, err := DecodePing(line, TypePing)
		if err != nil {
			return s.refuse(ctx, err)
		}
		return s.c.write(ctx, Ping{Type: TypePong, Seq: p.Seq})
	case TypeCompute:
		req, err := DecodeComputeRequest(line)
		if err != nil {
			return s.refuse(ctx, err)
		}
		if len(req.Seeds) > len(s.devs) {
			return s.refuse(ctx, protoErr("%d GPUs requested, %d present", len(req.Seeds), len(s.devs)))
		}
		return s.compute(ctx, req)
	case TypeResidency:
		if s.ns == nil {
			return s.refuse(ctx, protoErr("residency request before a compute request"))
		}
		req, err := DecodeResidencyRequest(line, len(s.ns))
		if err != nil {
			return s.refuse(ctx, err)
		}
		return s.residency(ctx, req)
	case TypeChallenge:
		if s.ns == nil {
			return s.refuse(ctx, protoErr("challenge before a compute request"))
		}
		ch, err := DecodeChallenge(line, s.ns)
		if err != nil {
			return s.refuse(ctx, err)
		}
		return s.prove(ctx, ch)
	}
	return s.refuse(ctx, protoErr("unexpected %q request", sanitize(head.Type, 32)))
}

func (s *serveState) compute(ctx context.Context, req ComputeRequest) error {
	s.ns, s.resident = make([]int, len(req.Seeds)), make([]bool, len(req.Seeds))
	errs := make([]error, len(req.Seeds))
	parallel(len(req.Seeds), func(g int) {
		cm, err := s.devs[g].Compute(ctx, DeviceRequest{N: req.N, Seed: req.Seeds[g], SimTimeScale: req.SimTimeScale})
		if err != nil {
			cm = Commitment{Error: sanitize(err.Error(), maxErrorMessage)}
		} else {
			s.ns[g] = cm.N
		}
		cm.Type, cm.GPU = TypeCommit, g
		errs[g] = s.c.write(ctx, cm)
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

func (s *serveState) residency(ctx context.Context, req ResidencyRequest) error {
	errs := make([]error, len(s.ns))
	parallel(len(s.ns), func(g int) {
		r := Residency{Type: TypeResident, GPU: g}
		if s.ns[g] == 0 {
			r.Error = "no commitment"
		} else if roots, err := s.devs[g].Residency(ctx, req.Nonces[g]); err != nil {
			r.Error = sanitize(err.Error(), maxErrorMessage)
		} else {
			r.Roots = roots
			s.resident[g] = true
		}
		errs[g] = s.c.write(ctx, r)
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

func (s *serveState) prove(ctx context.Context, ch ChallengeRequest) error {
	proofs := make([]GPUProofs, len(ch.GPUs))
	parallel(len(ch.GPUs), func(g int) {
		if s.ns[g] == 0 {
			proofs[g] = GPUProofs{Error: "no commitment"}
			return
		}
		ps, err := s.devs[g].Prove(ctx, ch.GPUs[g])
		if err != nil {
			proofs[g] = GPUProofs{Error: sanitize(err.Error(), maxErrorMessage)}
			return
		}
		gp := GPUProofs{Proofs: ps, Openings: []OpeningProof{}}
		if len(ch.Openings[g]) > 0 {
			if !s.resident[g] {
				proofs[g] = GPUProofs{Error: "no residency round"}
				return
			}
			if gp.Openings, err = s.devs[g].Open(ctx, ch.Openings[g]); err != nil {
				proofs[g] = GPUProofs{Error: sanitize(err.Error(), maxErrorMessage)}
				return
			}
		}
		proofs[g] = gp
	})
	return s.c.write(ctx, ProofsResponse{Type: TypeProofs, GPUs: proofs})
}

// parallel calls f(0) … f(n−1) concurrently and waits.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	wg.Wait()
}

// BenchOptions configure Bench.
type BenchOptions struct {
	// N is the matrix size.
	N int
	// Seeds are per device; missing ones are drawn from crypto/rand.
	Seeds []Seed
	// Verify is the number of cells per device to prove and check against
	// the exact values (0: none), to measure the device's error.
	Verify int
}

// BenchResult is one device's outcome of Bench.
type BenchResult struct {
	GPU     GPUInfo `json:"gpu"`
	N       int     `json:"n"`
	Timings Timings `json:"timings"`
	// TFLOPS is 2n³ over the multiply phase.
	TFLOPS float64 `json:"tflops"`
	// Checked cells were proved and compared with the exact value; Failed
	// of them failed VerifyProof; MaxError and RMSError are |proven − exact|.
	Checked  int     `json:"checked,omitempty"`
	Failed   int     `json:"failed,omitempty"`
	MaxError float64 `json:"max_error,omitempty"`
	RMSError float64 `json:"rms_error,omitempty"`
	// Tolerance is Tolerance(N), for comparison.
	Tolerance float64 `json:"tolerance"`
	Err       string  `json:"error,omitempty"`
}

// Bench runs one computation at o.N on every device of the backend in
// parallel and reports the worker's phase times, and with o.Verify the
// error of o.Verify proven elements.
func Bench(ctx context.Context, b Backend, o BenchOptions) ([]BenchResult, error) {
	if !validN(o.N) {
		return nil, fmt.Errorf("n = %d: want a multiple of %d in [%d, %d]", o.N, ChunkValues, MinN, MaxN)
	}
	if o.Verify < 0 || o.Verify > min(o.N, MaxChallenges) {
		return nil, fmt.Errorf("verify %d cells: want 0 to min(n, %d)", o.Verify, MaxChallenges)
	}
	devs, info, err := openDevices(ctx, b)
	if err != nil {
		return nil, err
	}
	defer closeDevices(devs)
	seeds := append([]Seed(nil), o.Seeds...)
	if len(seeds) < len(devs) {
		more, err := NewSeeds(nil, len(devs)-len(seeds))
		if err != nil {
			return nil, err
		}
		seeds = append(seeds, more...)
	}
	out := make([]BenchResult, len(devs))
	parallel(len(devs), func(g int) {
		out[g] = benchDevice(ctx, devs[g], info.GPUs[g], o, seeds[g])
	})
	return out, ctx.Err()
}

func benchDevice(ctx context.Context, d Device, info GPUInfo, o BenchOptions, seed Seed) BenchResult {
	r := BenchResult{GPU: info}
	cm, err := d.Compute(ctx, DeviceRequest{N: o.N, Seed: seed})
	if err != nil {
		r.Err = err.Error()
		return r
	}
	r.N, r.Timings, r.Tolerance = cm.N, cm.Timings, Tolerance(cm.N)
	if cm.Timings.MultiplyMS > 0 {
		r.TFLOPS = Flops(cm.N) / (cm.Timings.MultiplyMS / 1e3) / 1e12
	}
	if o.Verify == 0 {
		return r
	}
	cells, err := ChooseCells(nil, cm.N, min(o.Verify, cm.N))
	if err != nil {
		r.Err = err.Error()
		return r
	}
	proofs, err := d.Prove(ctx, cells)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	var sumSq float64
	for k, c := range cells {
		if k >= len(proofs) {
			r.Err = fmt.Sprintf("%d proofs for %d cells", len(proofs), len(cells))
			break
		}
		e := math.Abs(float64(ChunkValue(proofs[k].Chunk[:], c.J%ChunkValues)) - Expected(seed, cm.N, c.I, c.J))
		r.MaxError = max(r.MaxError, e)
		sumSq += e * e
		r.Checked++
		if _, err := VerifyProof(seed, cm.N, cm.Root, c, proofs[k], r.Tolerance); err != nil {
			r.Failed++
		}
	}
	if r.Checked > 0 {
		r.RMSError = math.Sqrt(sumSq / float64(r.Checked))
	}
	return r
}
