package pog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// testTableYAML holds made-up models sized for CPU tests: 1 MiB of memory
// gives n = 256.
const testTableYAML = `
gpu_performance:
  GPU_TFLOPS_FP16:
    Test Fast: 1000
    Test Mid: 0.001
    Test Slow: 0.0001
    Test Twin: 0.001
    Test Big: 1000
    Test Resident: 0.0001
    Test Conc: 0.000027
  GPU_MEMORY_MIB:
    Test Fast: 0.9
    Test Mid: 0.9
    Test Slow: 0.9
    Test Twin: 0.9
    Test Big: 64
    Test Resident: 3.9
    Test Conc: 0.9
  GPU_MEMORY_BANDWIDTH_GBPS:
    Test Fast: 1000
    Test Mid: 0.01
    Test Slow: 0.01
    Test Twin: 0.01
    Test Big: 1000
    Test Resident: 0.5
    Test Conc: 0.01
  gpu_tolerance_pairs:
    Test Slow: Test Twin
    Test Twin: Test Slow
  gpu_scores:
    Test Fast: 4
    Test Mid: 2
    Test Slow: 1
    Test Twin: 0.9
    Test Big: 8
    Test Resident: 3
    Test Conc: 0.5
`

func testTable(tb testing.TB) *market.GPUTable {
	tb.Helper()
	t, err := market.ParseGPUTable([]byte(testTableYAML))
	if err != nil {
		tb.Fatalf("parse test table: %v", err)
	}
	return t
}

func testModel(tb testing.TB, name string) market.GPUModel {
	tb.Helper()
	m, ok := testTable(tb).Lookup(name)
	if !ok {
		tb.Fatalf("no test model %q", name)
	}
	return m
}

// testPolicy suits CPU tests at n = 256 (1 MiB test models, whose C is a
// quarter of their memory): the default rate fraction, a residency slack
// that a loaded machine meets.
func testPolicy() *Policy {
	p := DefaultPolicy()
	p.MinResidentFraction = 0.2
	p.ResidencySlack = 2 * time.Second
	p.ComputeSlack = 2 * time.Second
	return &p
}

// lenient is testPolicy with time left for honest CPU devices on a loaded
// machine: tests that are not about time use it.
func lenient() *Policy {
	p := testPolicy()
	p.MinRateFraction = 0.01
	p.ResidencySlack = 20 * time.Second
	p.ComputeSlack = 20 * time.Second
	return p
}

// detRand is a reproducible random source.
func detRand(seed uint64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return rand.NewChaCha8(s)
}

// runSession runs Serve with b against Check with cfg over pipes.
func runSession(tb testing.TB, b Backend, cfg CheckConfig) (*Result, error) {
	tb.Helper()
	return runSessionWith(tb, func(ctx context.Context, in io.Reader, out io.Writer) error {
		return Serve(ctx, b, in, out)
	}, cfg)
}

// runSessionWith runs an arbitrary worker function against Check.
func runSessionWith(tb testing.TB, worker func(ctx context.Context, in io.Reader, out io.Writer) error, cfg CheckConfig) (*Result, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reqR, reqW := io.Pipe()
	respR, respW := io.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := worker(ctx, reqR, respW)
		respW.CloseWithError(errors.Join(err, io.EOF))
		reqR.Close()
	}()
	if cfg.Table == nil {
		cfg.Table = testTable(tb)
	}
	if cfg.Policy == nil {
		cfg.Policy = testPolicy()
	}
	res, err := Check(ctx, respR, reqW, cfg)
	reqW.Close()
	respR.Close()
	wg.Wait()
	return res, err
}

// claimBackend makes a backend's devices claim another name and memory.
type claimBackend struct {
	Backend
	name string
	mem  uint64
	// wrap, when set, replaces each device (to make it dishonest).
	wrap func(d Device) Device
}

func (c claimBackend) Open(ctx context.Context) ([]Device, error) {
	devs, err := c.Backend.Open(ctx)
	if err != nil {
		return nil, err
	}
	for i, d := range devs {
		if c.wrap != nil {
			d = c.wrap(d)
		}
		devs[i] = claimDevice{Device: d, name: c.name, mem: c.mem}
	}
	return devs, nil
}

type claimDevice struct {
	Device
	name string
	mem  uint64
}

func (c claimDevice) Info() GPUInfo {
	in := c.Device.Info()
	in.Name, in.MemoryBytes = c.name, c.mem
	return in
}

func claimCPU(name string, devices int) claimBackend {
	return claimBackend{Backend: CPU{Devices: devices}, name: name, mem: 1 << 20}
}

func TestHonestSessionPasses(t *testing.T) {
	tests := []struct {
		name      string
		claim     string
		devices   int
		wantModel string
	}{
		{"one GPU claims the slow model", "Test Slow", 1, "Test Slow"},
		{"four GPUs", "Test Slow", 4, "Test Slow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Generous overhead: four CPU devices on a loaded (or -race)
			// machine must not fail the time bound this test is not about.
			res, err := runSession(t, claimCPU(tt.claim, tt.devices), CheckConfig{Rand: detRand(1), Policy: lenient()})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if res.Model != tt.wantModel || res.Count != tt.devices || !res.Verified {
				t.Fatalf("model %q count %d verified %v (%s), want %q × %d", res.Model, res.Count, res.Verified, res.Reason, tt.wantModel, tt.devices)
			}
			if res.N != 256 || len(res.GPUs) != tt.devices {
				t.Errorf("n = %d, %d GPUs; want 256, %d", res.N, len(res.GPUs), tt.devices)
			}
			for _, g := range res.GPUs {
				if g.Err != "" || g.Timings.MultiplyMS <= 0 {
					t.Errorf("GPU %d: err %q timings %+v", g.Index, g.Err, g.Timings)
				}
			}
		})
	}
}

// TestHonestRunsPass runs 1,000 honest sessions (50 with -short), each
// with fresh seeds and 64 elements, and expects no false reject.
func TestHonestRunsPass(t *testing.T) {
	t.Parallel()
	runs := 1000
	if testing.Short() {
		runs = 50
	}
	policy := lenient()
	// The runs are independent sessions: a few at a time keep the
	// machine's cores busy.
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var rejects []string
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range next {
				res, err := runSession(t, claimCPU("Test Slow", 1), CheckConfig{Policy: policy})
				if err == nil && (res.Model != "Test Slow" || res.Count != 1) {
					err = fmt.Errorf("false reject: %s", res.Reason)
				}
				if err != nil {
					mu.Lock()
					rejects = append(rejects, fmt.Sprintf("run %d: %v", r, err))
					mu.Unlock()
				}
			}
		}()
	}
	for r := range runs {
		next <- r
	}
	close(next)
	wg.Wait()
	if len(rejects) > 0 {
		t.Fatalf("%d of %d honest runs rejected:\n%s", len(rejects), runs, strings.Join(rejects, "\n"))
	}
	t.Logf("%d honest runs at n = 256 with %d elements and %d residency openings each: no false reject", runs, DefaultChallenges, ResidencyPasses*ResidencyOpenings)
}

func testRealTable(tb testing.TB) *market.GPUTable {
	tb.Helper()
	return market.DefaultGPUTable()
}

// A session waits for a verifier slot only after its timed part: held
// elsewhere, the slot delays the result but not what was measured.
// Not parallel: it compares times with the wait.
func TestVerifiersBoundVerification(t *testing.T) {
	v := NewVerifiers(1)
	if err := v.acquire(context.Background()); err != nil { // another session verifying
		t.Fatal(err)
	}
	type outcome struct {
		res *Result
		err error
	}
	done := make(chan outcome, 1)
	start := time.Now()
	go func() {
		res, err := runSession(t, claimCPU("Test Slow", 1), CheckConfig{Policy: lenient(), Verifiers: v})
		done <- outcome{res, err}
	}()
	const hold = 2 * time.Second
	select {
	case o := <-done:
		t.Fatalf("session verified without a slot: %+v, %v", o.res, o.err)
	case <-time.After(hold):
	}
	v.release()
	o := <-done
	if o.err != nil || o.res.Model != "Test Slow" {
		t.Fatalf("session after the wait: %+v, %v", o.res, o.err)
	}
	if took := time.Since(start); took < hold || o.res.Elapsed >= hold/2 || o.res.GPUs[0].Residency >= hold/2 {
		t.Errorf("session took %s; measured compute %s and residency %s, which must not include the wait", took, o.res.Elapsed, o.res.GPUs[0].Residency)
	}
}
