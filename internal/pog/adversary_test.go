package pog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

// cheatDevice is a dishonest stand-in GPU built from the CPU pipeline.
type cheatDevice struct {
	name string
	// compute returns what the device commits to.
	compute func(ctx context.Context, req DeviceRequest) (*cpuResult, error)
	// prove answers cells; nil proves from the committed result.
	prove func(committed *cpuResult, cells []Cell) ([]Proof, error)
	last  *cpuResult
}

func (d *cheatDevice) Info() GPUInfo { return GPUInfo{Name: d.name, MemoryBytes: 1 << 20} }

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

// bf16 rounds to 8 significant bits, fp8 (e4m3) to 4.
func bf16(x float32) float32 { return float32(roundBits(float64(x), 8)) }
func fp8(x float32) float32  { return float32(roundBits(float64(x), 4)) }

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
	otherSeed := Seed{0xde, 0xad}
	tests := []struct {
		name    string
		backend Backend
		reason  string
	}{
		{"computes only 90% of the rows", cheat(1, withOptions(cpuOptions{tamper: func(c []float32, n int) {
			for i := 9; i < n; i += 10 {
				clear(c[i*n : (i+1)*n])
			}
		}}), nil), "exact"},
		{"bf16-rounded inputs", cheat(1, withOptions(cpuOptions{roundInput: bf16}), nil), "exact"},
		{"fp8-rounded inputs", cheat(1, withOptions(cpuOptions{roundInput: fp8}), nil), "exact"},
		{"C rounded to bf16", cheat(1, withOptions(cpuOptions{tamper: func(c []float32, _ int) {
			for i, v := range c {
				c[i] = bf16(v)
			}
		}}), nil), "exact"},
		{"reuses an old commitment", cheat(1, func(ctx context.Context, req DeviceRequest) (*cpuResult, error) {
			return cpuCompute(ctx, req.N, otherSeed, 0, cpuOptions{})
		}, nil), "exact"},
		{"proves rows it did not commit", cheat(1, withOptions(cpuOptions{tamper: func(c []float32, n int) {
			for i := 1; i < n; i += 2 {
				clear(c[i*n : (i+1)*n])
			}
		}}), func(committed *cpuResult, cells []Cell) ([]Proof, error) {
			// Open every cell from an honest computation whose root was
			// never sent.
			honest, err := cpuCompute(context.Background(), committed.n, lastSeed(committed), 0, cpuOptions{})
			if err != nil {
				return nil, err
			}
			return honest.prove(cells)
		}), "does not lead to the committed root"},
		{"NaN values", cheat(1, withOptions(cpuOptions{tamper: func(c []float32, _ int) {
			for i := range c {
				c[i] = float32(math.NaN())
			}
		}}), nil), "exact"},
		{"refuses to prove", cheat(1, withOptions(cpuOptions{}), func(*cpuResult, []Cell) ([]Proof, error) {
			return nil, errors.New("lost C")
		}), "lost C"},
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
		}()}, "2 of 4 GPUs proved"},
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
		}()}, "out of memory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := runSession(t, tt.backend, CheckConfig{Rand: detRand(7)})
			wantFailed(t, res, err, tt.reason)
		})
	}
}

func lastSeed(r *cpuResult) Seed { return r.seed }

func TestThreeOfFourPass(t *testing.T) {
	k := 0
	b := cheatBackend{count: 4, mk: func() Device {
		k++
		opt := cpuOptions{}
		if k == 4 {
			opt.roundInput = fp8
		}
		return &cheatDevice{name: "Test Slow", compute: withOptions(opt)}
	}}
	res, err := runSession(t, b, CheckConfig{Rand: detRand(3)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Model != "Test Slow" || res.Count != 3 || res.Passed != 3 || res.Required != 3 {
		t.Fatalf("model %q count %d passed %d/%d (%s); want Test Slow × 3", res.Model, res.Count, res.Passed, res.Required, res.Reason)
	}
}

func TestClaimsBetterGPUThanItHas(t *testing.T) {
	devnet := &Policy{TimeSlack: 0.25, Overhead: 20 * time.Millisecond, MinFill: 0.5, AllowSimulated: true}
	tests := []struct {
		name      string
		backend   Backend
		policy    *Policy
		wantModel string
		reason    string
	}{
		{"cpu claims the fast model", claimCPU("Test Fast", 1), &Policy{TimeSlack: 0.25, Overhead: time.Millisecond, MinFill: 0.5}, "", ""},
		{"sim with slow timing claims the mid model", Sim{Model: testModel(t, "Test Mid"), Timing: testModel(t, "Test Slow")}, devnet,
			"Test Slow", "claimed Test Mid not confirmed"},
		{"slower than claimed: sleeps past the bound", claimBackend{Backend: CPU{}, name: "Test Mid", mem: 1 << 20, wrap: func(d Device) Device {
			return slowDevice{Device: d, delay: 150 * time.Millisecond}
		}}, nil, "Test Slow", "claimed Test Mid not confirmed"},
		{"simulated refused outside devnet", Sim{Model: testModel(t, "Test Slow")}, nil, "", ReasonSimulatedRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := runSession(t, tt.backend, CheckConfig{Rand: detRand(5), Policy: tt.policy, SimTimeScale: 1})
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantModel == "" && tt.reason == "" {
				// The CPU cannot be as fast as the fast model; whatever it is
				// identified as, it is not that.
				if res.Model == "Test Fast" || !strings.Contains(res.Reason, "claimed Test Fast not confirmed") {
					t.Fatalf("cpu identified as %q (%s), want anything but Test Fast", res.Model, res.Reason)
				}
				return
			}
			if res.Model != tt.wantModel || !strings.Contains(res.Reason, tt.reason) {
				t.Fatalf("model %q (%s); want %q with reason containing %q", res.Model, res.Reason, tt.wantModel, tt.reason)
			}
		})
	}
}

type slowDevice struct {
	Device
	delay time.Duration
}

func (s slowDevice) Compute(ctx context.Context, req DeviceRequest) (Commitment, error) {
	time.Sleep(s.delay)
	return s.Device.Compute(ctx, req)
}

// rawWorker scripts a worker that answers with fixed lines after reading
// the validator's requests.
func rawWorker(lines ...string) func(ctx context.Context, in io.Reader, out io.Writer) error {
	return func(ctx context.Context, in io.Reader, out io.Writer) error {
		lr := NewLineReader(in)
		for i, l := range lines {
			if i > 0 {
				if _, err := lr.ReadLine(MaxChallengeLine); err != nil {
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

const goodHello = `{"type":"hello","version":1,"backend":"cpu","simulated":false,"gpus":[{"index":0,"name":"Test Slow","memory_bytes":1048576}]}` + "\n"

func TestGarbageWorkersFail(t *testing.T) {
	root := strings.Repeat("ab", 32)
	commit := func(n int) string {
		return fmt.Sprintf(`{"type":"commit","gpus":[{"n":%d,"root":"%s","timings":{"generate_ms":1,"multiply_ms":1,"hash_ms":1,"tree_ms":1}}]}`+"\n", n, root)
	}
	tests := []struct {
		name   string
		worker func(ctx context.Context, in io.Reader, out io.Writer) error
	}{
		{"nothing", rawWorker()},
		{"not JSON", rawWorker("hello there\n")},
		{"truncated hello", rawWorker(goodHello[:40])},
		{"huge line", rawWorker(strings.Repeat("x", MaxHelloLine+10) + "\n")},
		{"unknown field", rawWorker(strings.Replace(goodHello, `"version":1`, `"version":1,"extra":true`, 1))},
		{"wrong version", rawWorker(strings.Replace(goodHello, `"version":1`, `"version":2`, 1))},
		{"trailing data", rawWorker(strings.TrimSuffix(goodHello, "\n") + " {}\n")},
		{"no commitment", rawWorker(goodHello)},
		{"commitment for a larger n", rawWorker(goodHello, commit(512))},
		{"commitment for two GPUs", rawWorker(goodHello, strings.Replace(commit(256), `}]}`, `},{"n":256,"root":"`+root+`","timings":{"generate_ms":0,"multiply_ms":0,"hash_ms":0,"tree_ms":0}}]}`, 1))},
		{"short root", rawWorker(goodHello, strings.Replace(commit(256), root, root[:62], 1))},
		{"negative timing", rawWorker(goodHello, strings.Replace(commit(256), `"tree_ms":1`, `"tree_ms":-1`, 1))},
		{"proofs missing", rawWorker(goodHello, commit(256), `{"type":"proofs","gpus":[{"proofs":[]}]}`+"\n")},
		{"proofs truncated", rawWorker(goodHello, commit(256), `{"type":"proofs","gpus":[{"proofs":[{"i":`)},
		{"worker error message", rawWorker(goodHello, `{"type":"error","message":"no GPU"}`+"\n")},
		{"wrong message type", rawWorker(goodHello, `{"type":"proofs","gpus":[]}`+"\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := runSessionWith(t, tt.worker, CheckConfig{Rand: detRand(9)})
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
	worker := func(ctx context.Context, in io.Reader, out io.Writer) error {
		if _, err := io.WriteString(out, goodHello); err != nil {
			return err
		}
		_, err := io.Copy(io.Discard, in) // reads the request, never answers
		return err
	}
	start := time.Now()
	res, err := runSessionWith(t, worker, CheckConfig{Rand: detRand(2)})
	wantFailed(t, res, err, "no commitment within")
	// The slowest 1 MiB test model's bound is 0.44 s; plus 1 s margin.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %s", d)
	}
}

// A worker that computed half the rows passes k distinct-row challenges
// with probability ≈ q^k (exactly the hypergeometric ∏ (R−t)/(n−t)); with
// k = 4 that is 6.0%, which 4,000 trials measure.
func TestPartialCheaterPassRate(t *testing.T) {
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
		if VerifyGPU(seed, n, root, cells, proofs, Tolerance(n)) == nil {
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
