package pog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// cheatDevice is a dishonest stand-in GPU built from the CPU pipeline.
type cheatDevice struct {
	name string
	mem  uint64
	// compute returns what the device commits to.
	compute func(ctx context.Context, req DeviceRequest) (*cpuResult, error)
	// prove answers cells; nil proves from the committed result.
	prove func(committed *cpuResult, cells []Cell) ([]Proof, error)
	// residency answers the residency round; nil runs it on the committed
	// result.
	residency func(ctx context.Context, committed *cpuResult, nonce Seed) ([]Hash, error)
	last      *cpuResult
}

func (d *cheatDevice) Info() GPUInfo {
	mem := d.mem
	if mem == 0 {
		mem = 1 << 20
	}
	return GPUInfo{Name: d.name, MemoryBytes: mem}
}

func (d *cheatDevice) Compute(ctx context.Context, req DeviceRequest) (Commitment, error) {
	r, err := d.compute(ctx, req)
	if err != nil {
		return Commitment{}, err
	}
	d.last = r
	return r.commitment(), nil
}

func (d *cheatDevice) Prove(_ context.Context, cells []Cell) ([]Proof, error) {
	if d.prove != nil {
		return d.prove(d.last, cells)
	}
	return d.last.prove(cells)
}

func (d *cheatDevice) Residency(ctx context.Context, nonce Seed) ([]Hash, error) {
	if d.residency != nil {
		return d.residency(ctx, d.last, nonce)
	}
	return d.last.residency(nonce), nil
}

func (d *cheatDevice) Open(_ context.Context, ops []Opening) ([]OpeningProof, error) {
	return d.last.open(ops)
}

func (d *cheatDevice) Close() error { return nil }

// cheatBackend opens count cheat devices made by mk.
type cheatBackend struct {
	count int
	mk    func() Device
}

func (cheatBackend) Name() string    { return "cpu" }
func (cheatBackend) Simulated() bool { return false }
func (b cheatBackend) Open(context.Context) ([]Device, error) {
	devs := make([]Device, b.count)
	for i := range devs {
		devs[i] = b.mk()
	}
	return devs, nil
}

func cheat(count int, compute func(ctx context.Context, req DeviceRequest) (*cpuResult, error), prove func(*cpuResult, []Cell) ([]Proof, error)) Backend {
	return cheatBackend{count: count, mk: func() Device {
		return &cheatDevice{name: "Test Slow", compute: compute, prove: prove}
	}}
}

func withOptions(opt cpuOptions) func(ctx context.Context, req DeviceRequest) (*cpuResult, error) {
	return func(ctx context.Context, req DeviceRequest) (*cpuResult, error) {
		return cpuCompute(ctx, req.N, req.Seed, 0, opt)
	}
}

// bf16 rounds to 8 significant bits, fp8 (e4m3) to 4, fp16 to 11.
func bf16(x float32) float32 { return float32(roundBits(float64(x), 8)) }
func fp8(x float32) float32  { return float32(roundBits(float64(x), 4)) }
func fp16(x float32) float32 { return float32(roundBits(float64(x), 11)) }

// fp16Accumulate multiplies as a tensor core accumulating in fp16 and
// flushing to fp32 every flush products (worth 2× on GeForce cards).
func fp16Accumulate(flush int) func(c, a, b []float32, n int) {
	return func(c, a, b []float32, n int) {
		for i := range n {
			ai := a[i*n : (i+1)*n]
			for j := range n {
				bj := b[j*n : (j+1)*n]
				var total float32
				for k0 := 0; k0 < n; k0 += flush {
					var acc float32
					for k := k0; k < k0+flush && k < n; k++ {
						acc = fp16(acc + ai[k]*bj[k])
					}
					total += acc
				}
				c[i*n+j] = total
			}
		}
	}
}

// strassen multiplies with one level of Strassen's algorithm: seven
// half-size products of block sums, which tensor cores need rounded to
// fp16, recombined in fp32.
func strassen(c, a, b []float32, n int) {
	h := n / 2
	// X = A, Y = Bᵀ: C = X·Y; blk returns block (r, s) of m (row-major, Bᵀ
	// read transposed from b).
	blk := func(m []float32, transposed bool, r, s int) []float32 {
		out := make([]float32, h*h)
		for i := range h {
			for j := range h {
				if transposed {
					out[i*h+j] = m[(s*h+j)*n+r*h+i]
				} else {
					out[i*h+j] = m[(r*h+i)*n+s*h+j]
				}
			}
		}
		return out
	}
	add := func(x, y []float32, sign float32) []float32 {
		out := make([]float32, len(x))
		for i := range x {
			out[i] = fp16(x[i] + sign*y[i])
		}
		return out
	}
	mul := func(x, y []float32) []float32 {
		out := make([]float32, h*h)
		for i := range h {
			for j := range h {
				var s float32
				for k := range h {
					s += x[i*h+k] * y[k*h+j]
				}
				out[i*h+j] = s
			}
		}
		return out
	}
	a11, a12, a21, a22 := blk(a, false, 0, 0), blk(a, false, 0, 1), blk(a, false, 1, 0), blk(a, false, 1, 1)
	b11, b12, b21, b22 := blk(b, true, 0, 0), blk(b, true, 0, 1), blk(b, true, 1, 0), blk(b, true, 1, 1)
	m1 := mul(add(a11, a22, 1), add(b11, b22, 1))
	m2 := mul(add(a21, a22, 1), b11)
	m3 := mul(a11, add(b12, b22, -1))
	m4 := mul(a22, add(b21, b11, -1))
	m5 := mul(add(a11, a12, 1), b22)
	m6 := mul(add(a21, a11, -1), add(b11, b12, 1))
	m7 := mul(add(a12, a22, -1), add(b21, b22, 1))
	for i := range h {
		for j := range h {
			k := i*h + j
			c[i*n+j] = m1[k] + m4[k] - m5[k] + m7[k]
			c[i*n+h+j] = m3[k] + m5[k]
			c[(h+i)*n+j] = m2[k] + m4[k]
			c[(h+i)*n+h+j] = m1[k] - m2[k] + m3[k] + m6[k]
		}
	}
}

// wantFailed checks that a session did not credit anything.
func wantFailed(t *testing.T, res *Result, err error, reason string) {
	t.Helper()
	if err != nil {
		t.Fatalf("Check: %v (want a failed result)", err)
	}
	if res.Model != "" || res.Count != 0 {
		t.Fatalf("credited %d × %q (%s); want a failure", res.Count, res.Model, res.Reason)
	}
	if !strings.Contains(res.Reason, reason) {
		t.Errorf("reason %q, want it to contain %q", res.Reason, reason)
	}
}

func TestAdversariesFail(t *testing.T) {
	t.Parallel()
	otherSeed := Seed{0xde, 0xad}
	tests := []struct {
		name    string
		backend Backend
		code    market.PoGCode
		reason  string
	}{
		{"computes only 90% of the rows", cheat(1, withOptions(cpuOptions{tamper: func(c []float32, n int) {
			for i := 9; i < n; i += 10 {
				clear(c[i*n : (i+1)*n])
			}
		}}), nil), market.PoGNumerics, "exact"},
		{"bf16-rounded inputs", cheat(1, withOptions(cpuOptions{roundInput: bf16}), nil), market.PoGNumerics, "exact"},
		{"fp8-rounded inputs", cheat(1, withOptions(cpuOptions{roundInput: fp8}), nil), market.PoGNumerics, "exact"},
		{"C rounded to bf16", cheat(1, withOptions(cpuOptions{tamper: func(c []float32, _ int) {
			for i, v := range c {
				c[i] = bf16(v)
			}
		}}), nil), market.PoGNumerics, "exact"},
		{"fp16 accumulation flushed every 32 products", cheat(1, withOptions(cpuOptions{multiply: fp16Accumulate(32)}), nil), market.PoGNumerics, ""},
		{"one level of Strassen", cheat(1, withOptions(cpuOptions{multiply: strassen}), nil), market.PoGNumerics, ""},
		{"replays an old commitment", cheat(1, func(ctx context.Context, req DeviceRequest) (*cpuResult, error) {
			return cpuCompute(ctx, req.N, otherSeed, 0, cpuOptions{})
		}, nil), market.PoGNumerics, "exact"},
		{"proves rows it did not commit", cheat(1, withOptions(cpuOptions{tamper: func(c []float32, n int) {
			for i := 1; i < n; i += 2 {
				clear(c[i*n : (i+1)*n])
			}
		}}), func(committed *cpuResult, cells []Cell) ([]Proof, error) {
			// Open every cell from an honest computation whose root was
			// never sent.
			honest, err := cpuCompute(context.Background(), committed.n, committed.seed, 0, cpuOptions{})
			if err != nil {
				return nil, err
			}
			return honest.prove(cells)
		}), market.PoGBadProof, "does not lead to the committed root"},
		{"NaN values", cheat(1, withOptions(cpuOptions{tamper: func(c []float32, _ int) {
			for i := range c {
				c[i] = float32(math.NaN())
			}
		}}), nil), market.PoGNumerics, "exact"},
		{"refuses to prove", cheat(1, withOptions(cpuOptions{}), func(*cpuResult, []Cell) ([]Proof, error) {
			return nil, errors.New("lost C")
		}), market.PoGBadProof, "lost C"},
		{"fakes the residency roots", cheatBackend{count: 1, mk: func() Device {
			return &cheatDevice{name: "Test Slow", compute: withOptions(cpuOptions{}),
				residency: func(context.Context, *cpuResult, Seed) ([]Hash, error) {
					return make([]Hash, ResidencyPasses), nil
				}}
		}}, market.PoGBadProof, "residency"},
		{"2 of 4 GPUs cheat", cheatBackend{count: 4, mk: func() func() Device {
			k := 0
			return func() Device {
				k++
				opt := cpuOptions{}
				if k > 2 {
					opt.roundInput = fp8
				}
				return &cheatDevice{name: "Test Slow", compute: withOptions(opt)}
			}
		}()}, market.PoGNumerics, "2 of 4 GPUs proved"},
		{"1 of 2 GPUs fails to compute", cheatBackend{count: 2, mk: func() func() Device {
			k := 0
			return func() Device {
				k++
				if k == 2 {
					return &cheatDevice{name: "Test Slow", compute: func(context.Context, DeviceRequest) (*cpuResult, error) {
						return nil, errors.New("out of memory")
					}}
				}
				return &cheatDevice{name: "Test Slow", compute: withOptions(cpuOptions{})}
			}
		}()}, market.PoGWorkerError, "out of memory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := runSession(t, tt.backend, CheckConfig{Rand: detRand(7), Policy: lenient()})
			wantFailed(t, res, err, tt.reason)
			if res.Code != tt.code {
				t.Errorf("code %q, want %q (%s)", res.Code, tt.code, res.Reason)
			}
		})
	}
}

func TestThreeOfFourPass(t *testing.T) {
	t.Parallel()
	k := 0
	b := cheatBackend{count: 4, mk: func() Device {
		k++
		opt := cpuOptions{}
		if k == 4 {
			opt.roundInput = fp8
		}
		return &cheatDevice{name: "Test Slow", compute: withOptions(opt)}
	}}
	res, err := runSession(t, b, CheckConfig{Rand: detRand(3), Policy: lenient()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Model != "Test Slow" || res.Count != 3 || res.Passed != 3 || res.Required != 3 {
		t.Fatalf("model %q count %d passed %d/%d (%s); want Test Slow × 3", res.Model, res.Count, res.Passed, res.Required, res.Reason)
	}
}

// delayed is a CPU device that also waits delay per computation, holding
// lock while it computes when lock is set: several such devices sharing a
// lock are one device standing in for several.
type delayed struct {
	Device
	delay time.Duration
	lock  *sync.Mutex
}

func (d delayed) Compute(ctx context.Context, req DeviceRequest) (Commitment, error) {
	if d.lock != nil {
		d.lock.Lock()
		defer d.lock.Unlock()
	}
	time.Sleep(d.delay)
	return d.Device.Compute(ctx, req)
}

// Claiming a better model, one device as many, and a C not held in
// memory, each against the same claim done honestly.
// Not parallel: it times honest devices against a bound.
func TestCreditFollowsWhatWasMeasured(t *testing.T) {
	shared := func(n int, delay time.Duration) Backend {
		var mu sync.Mutex
		return claimBackend{Backend: CPU{Devices: n}, name: "Test Conc", mem: 1 << 20, wrap: func(d Device) Device {
			return delayed{Device: d, delay: delay, lock: &mu}
		}}
	}
	concurrent := func(n int, delay time.Duration) Backend {
		return claimBackend{Backend: CPU{Devices: n}, name: "Test Conc", mem: 1 << 20, wrap: func(d Device) Device {
			return delayed{Device: d, delay: delay}
		}}
	}
	residentPolicy := testPolicy()
	residentPolicy.MinResidentFraction = DefaultMinResidentFraction
	residentPolicy.ResidencySlack = 800 * time.Millisecond
	residentPolicy.ComputeSlack = 20 * time.Second
	residentPolicy.MinRateFraction = 0.01
	streams := cheatBackend{count: 1, mk: func() Device {
		return &cheatDevice{name: "Test Resident", mem: 4089446, compute: withOptions(cpuOptions{}),
			// Keeps only the tree: recomputes C for every pass.
			residency: func(ctx context.Context, committed *cpuResult, nonce Seed) ([]Hash, error) {
				for range ResidencyPasses {
					again, err := cpuCompute(ctx, committed.n, committed.seed, 1, cpuOptions{})
					if err != nil {
						return nil, err
					}
					committed.c = again.c
				}
				return committed.residency(nonce), nil
			}}
	}}
	tests := []struct {
		name      string
		backend   Backend
		policy    *Policy
		wantModel string
		wantCount int
		code      market.PoGCode
	}{
		{"honest: 4 GPUs at once", concurrent(4, 800*time.Millisecond), nil, "Test Conc", 4, market.PoGOK},
		{"one device as 4 GPUs, each in half the time of one", shared(4, 600*time.Millisecond), nil, "", 0, market.PoGNotConcurrent},
		{"slower than claimed", claimBackend{Backend: CPU{}, name: "Test Conc", mem: 1 << 20, wrap: func(d Device) Device {
			return delayed{Device: d, delay: 2500 * time.Millisecond}
		}}, nil, "", 0, market.PoGTooSlow},
		{"cpu claims the fast model", claimCPU("Test Fast", 1), nil, "*", 1, market.PoGDowngraded},
		{"honest: C resident", claimBackend{Backend: CPU{}, name: "Test Resident", mem: 4089446}, residentPolicy, "Test Resident", 1, market.PoGOK},
		{"keeps only the tree, recomputes C", streams, residentPolicy, "", 0, market.PoGNotResident},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.policy
			if p == nil {
				p = testPolicy()
				p.ResidencySlack, p.ComputeSlack = 20*time.Second, 20*time.Second
			}
			res, err := runSession(t, tt.backend, CheckConfig{Rand: detRand(5), Policy: p})
			if err != nil {
				t.Fatal(err)
			}
			model := res.Model
			if tt.wantModel == "*" && model != "" && model != "Test Fast" {
				model = "*" // whatever the CPU's speed proves, not the claim
			}
			if model != tt.wantModel || res.Count != tt.wantCount || res.Code != tt.code {
				t.Fatalf("credited %d × %q, code %q (%s); want %d × %q, %q", res.Count, res.Model, res.Code, res.Reason, tt.wantCount, tt.wantModel, tt.code)
			}
		})
	}
}

func TestSimulatedRefusedOutsideDevnet(t *testing.T) {
	t.Parallel()
	res, err := runSession(t, Sim{Model: testModel(t, "Test Slow")}, CheckConfig{Rand: detRand(5), SimTimeScale: 1})
	wantFailed(t, res, err, ReasonSimulatedRefused)
	if res.Code != market.PoGSimulated {
		t.Errorf("code %q", res.Code)
	}
}

// rawWorker scripts a worker that answers with fixed lines after reading
// the validator's requests: lines[0] at once, each next one after reading
// a request. Pings are answered on the way.
func rawWorker(lines ...string) func(ctx context.Context, in io.Reader, out io.Writer) error {
	return func(ctx context.Context, in io.Reader, out io.Writer) error {
		lr := NewLineReader(in)
		for i, l := range lines {
			if i > 0 {
				if err := skipPings(lr, out); err != nil {
					return err
				}
			}
			if _, err := io.WriteString(out, l); err != nil {
				return err
			}
		}
		// End the output like an exiting process, keep draining input.
		if c, ok := out.(io.Closer); ok {
			c.Close()
		}
		_, err := io.Copy(io.Discard, in)
		return err
	}
}

// skipPings reads requests, answering pings, until one that is not a ping.
func skipPings(lr *LineReader, out io.Writer) error {
	for {
		line, err := lr.ReadLine(MaxChallengeLine)
		if err != nil {
			return err
		}
		p, err := DecodePing(line, TypePing)
		if err != nil {
			return nil
		}
		if _, err := fmt.Fprintf(out, `{"type":"pong","seq":%d}`+"\n", p.Seq); err != nil {
			return err
		}
	}
}

const goodHello = `{"type":"hello","version":2,"backend":"cpu","simulated":false,"gpus":[{"index":0,"name":"Test Slow","memory_bytes":1048576}]}` + "\n"

func TestGarbageWorkersFail(t *testing.T) {
	t.Parallel()
	root := strings.Repeat("ab", 32)
	commit := func(n int) string {
		return fmt.Sprintf(`{"type":"commit","gpu":0,"n":%d,"root":"%s","timings":{"generate_ms":1,"multiply_ms":1,"hash_ms":1,"tree_ms":1}}`+"\n", n, root)
	}
	tests := []struct {
		name   string
		worker func(ctx context.Context, in io.Reader, out io.Writer) error
	}{
		{"nothing", rawWorker()},
		{"not JSON", rawWorker("hello there\n")},
		{"truncated hello", rawWorker(goodHello[:40])},
		{"huge line", rawWorker(strings.Repeat("x", MaxHelloLine+10) + "\n")},
		{"unknown field", rawWorker(strings.Replace(goodHello, `"version":2`, `"version":2,"extra":true`, 1))},
		{"old version", rawWorker(strings.Replace(goodHello, `"version":2`, `"version":1`, 1))},
		{"trailing data", rawWorker(strings.TrimSuffix(goodHello, "\n") + " {}\n")},
		{"no commitment", rawWorker(goodHello)},
		{"commitment for a larger n", rawWorker(goodHello, commit(512))},
		{"commitment for GPU 1", rawWorker(goodHello, strings.Replace(commit(256), `"gpu":0`, `"gpu":1`, 1))},
		{"short root", rawWorker(goodHello, strings.Replace(commit(256), root, root[:62], 1))},
		{"negative timing", rawWorker(goodHello, strings.Replace(commit(256), `"tree_ms":1`, `"tree_ms":-1`, 1))},
		{"residency without roots", rawWorker(goodHello, commit(256), `{"type":"resident","gpu":0,"roots":[]}`+"\n")},
		{"proofs instead of residency", rawWorker(goodHello, commit(256), `{"type":"proofs","gpus":[{"proofs":[]}]}`+"\n")},
		{"worker error message", rawWorker(goodHello, `{"type":"error","message":"no GPU"}`+"\n")},
		{"wrong message type", rawWorker(goodHello, `{"type":"proofs","gpus":[]}`+"\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := runSessionWith(t, tt.worker, CheckConfig{Rand: detRand(9), Policy: testPolicy()})
			var we *WorkerError
			if err == nil {
				t.Fatalf("Check passed a garbage worker: %+v", res)
			}
			if !errors.Is(err, ErrProtocol) && !errors.As(err, &we) {
				t.Errorf("error %v does not wrap ErrProtocol or WorkerError", err)
			}
		})
	}
}

// A worker that never answers is cut off at the compute limit.
func TestSilentWorkerTimesOut(t *testing.T) {
	t.Parallel()
	worker := func(ctx context.Context, in io.Reader, out io.Writer) error {
		if _, err := io.WriteString(out, goodHello); err != nil {
			return err
		}
		lr := NewLineReader(in)
		if err := skipPings(lr, out); err != nil {
			return err
		}
		_, err := io.Copy(io.Discard, in) // reads the request, never answers
		return err
	}
	p := testPolicy()
	p.ComputeSlack = 100 * time.Millisecond
	start := time.Now()
	res, err := runSessionWith(t, worker, CheckConfig{Rand: detRand(2), Policy: p})
	wantFailed(t, res, err, "not every GPU committed within")
	if res.Code != market.PoGTooSlow {
		t.Errorf("code %q", res.Code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %s", d)
	}
}

// A worker that computed half the rows passes k distinct-row challenges
// with probability ≈ q^k (exactly the hypergeometric ∏ (R−t)/(n−t)); with
// k = 4 that is 6.0%, which 4,000 trials measure.
func TestPartialCheaterPassRate(t *testing.T) {
	t.Parallel()
	const n, k, trials = 256, 4, 4000
	seed := Seed{0x42}
	res, err := cpuCompute(context.Background(), n, seed, 0, cpuOptions{tamper: func(c []float32, n int) {
		for i := 1; i < n; i += 2 {
			for j := range n {
				c[i*n+j] += 1
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	root := res.commitment().Root
	want := 1.0
	for q := range k {
		want *= float64(n/2-q) / float64(n-q)
	}
	rnd := detRand(11)
	passed := 0
	for range trials {
		cells, err := ChooseCells(rnd, n, k)
		if err != nil {
			t.Fatal(err)
		}
		proofs, err := res.prove(cells)
		if err != nil {
			t.Fatal(err)
		}
		if VerifyGPU(seed, n, root, cells, proofs, Tolerance(n), 1) == nil {
			passed++
		}
	}
	got := float64(passed) / trials
	t.Logf("pass rate %.4f, predicted %.4f (q^k = %.4f); at k = 64: q = 0.5 → %.1e, q = 0.9 → %.1e",
		got, want, math.Pow(0.5, k), math.Pow(0.5, 64), math.Pow(0.9, 64))
	if got < want*0.7 || got > want*1.3 {
		t.Errorf("pass rate %.4f, predicted %.4f", got, want)
	}
}
