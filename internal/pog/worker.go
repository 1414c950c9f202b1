package pog

import (
	"context"
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
	lr     *LineReader
	w      io.Writer
	broken error
}

func newLineConn(r io.Reader, w io.Writer) *lineConn {
	return &lineConn{lr: NewLineReader(r), w: w}
}

type lineResult struct {
	line []byte
	err  error
}

func (c *lineConn) read(ctx context.Context, limit int) ([]byte, error) {
	if c.broken != nil {
		return nil, c.broken
	}
	ch := make(chan lineResult, 1)
	go func() {
		line, err := c.lr.ReadLine(limit)
		ch <- lineResult{line, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil && !errors.Is(r.err, io.EOF) {
			c.broken = r.err
		}
		return r.line, r.err
	case <-ctx.Done():
		c.broken = fmt.Errorf("session abandoned: %w", ctx.Err())
		return nil, ctx.Err()
	}
}

func (c *lineConn) write(ctx context.Context, v any) error {
	if c.broken != nil {
		return c.broken
	}
	b, err := encodeLine(v)
	if err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	ch := make(chan error, 1)
	go func() {
		_, err := c.w.Write(b)
		ch <- err
	}()
	select {
	case err := <-ch:
		if err != nil {
			c.broken = err
			return fmt.Errorf("write message: %w", err)
		}
		return nil
	case <-ctx.Done():
		c.broken = fmt.Errorf("session abandoned: %w", ctx.Err())
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
// compute → commit → challenge → proofs rounds until in ends. GPUs compute
// and prove in parallel. A malformed request is answered with an error
// message and ends the session with an error wrapping ErrProtocol.
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
	refuse := func(e error) error {
		_ = c.write(ctx, ErrorMessage{Type: TypeError, Message: sanitize(e.Error(), maxErrorMessage)})
		return e
	}
	for {
		line, err := c.read(ctx, MaxComputeLine)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return refuse(fmt.Errorf("read compute request: %w", err))
		}
		req, err := DecodeComputeRequest(line)
		if err != nil {
			return refuse(err)
		}
		if len(req.Seeds) > len(devs) {
			return refuse(protoErr("%d GPUs requested, %d present", len(req.Seeds), len(devs)))
		}
		commits := make([]Commitment, len(req.Seeds))
		parallel(len(req.Seeds), func(g int) {
			cm, err := devs[g].Compute(ctx, DeviceRequest{N: req.N, Seed: req.Seeds[g], SimTimeScale: req.SimTimeScale})
			if err != nil {
				cm = Commitment{Error: sanitize(err.Error(), maxErrorMessage)}
			}
			commits[g] = cm
		})
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.write(ctx, ComputeResponse{Type: TypeCommit, GPUs: commits}); err != nil {
			return err
		}

		line, err = c.read(ctx, MaxChallengeLine)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return refuse(fmt.Errorf("read challenge: %w", err))
		}
		ns := make([]int, len(commits))
		for g, cm := range commits {
			if cm.Error == "" {
				ns[g] = cm.N
			}
		}
		ch, err := DecodeChallenge(line, ns)
		if err != nil {
			return refuse(err)
		}
		proofs := make([]GPUProofs, len(ch.GPUs))
		parallel(len(ch.GPUs), func(g int) {
			if ns[g] == 0 {
				proofs[g] = GPUProofs{Error: "no commitment"}
				return
			}
			ps, err := devs[g].Prove(ctx, ch.GPUs[g])
			if err != nil {
				proofs[g] = GPUProofs{Error: sanitize(err.Error(), maxErrorMessage)}
				return
			}
			proofs[g] = GPUProofs{Proofs: ps}
		})
		if err := c.write(ctx, ProofsResponse{Type: TypeProofs, GPUs: proofs}); err != nil {
			return err
		}
	}
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
		if VerifyProof(seed, cm.N, cm.Root, c, proofs[k], r.Tolerance) != nil {
			r.Failed++
		}
	}
	if r.Checked > 0 {
		r.RMSError = math.Sqrt(sumSq / float64(r.Checked))
	}
	return r
}
