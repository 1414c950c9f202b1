package validator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/pog"
)

func model(tb testing.TB, name string) market.GPUModel {
	tb.Helper()
	m, ok := market.DefaultGPUTable().Lookup(name)
	if !ok {
		tb.Fatalf("%s not in the GPU table", name)
	}
	return m
}

// simWorker serves a session with the sim backend in-process.
func simWorker(m market.GPUModel, count int) workerScript {
	return func(ctx context.Context, _ string, in io.Reader, out, _ io.Writer) int {
		if err := pog.Serve(ctx, pog.Sim{Model: m, Count: count, Workers: 1}, in, out); err != nil {
			return 1
		}
		return 0
	}
}

func writeLine(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	_, _ = w.Write(append(b, '\n'))
}

func hello(m market.GPUModel) pog.Hello {
	return pog.Hello{Type: pog.TypeHello, Info: pog.Info{Version: pog.ProtocolVersion, Backend: "cuda",
		GPUs: []pog.GPUInfo{{Index: 0, Name: m.Name, MemoryBytes: m.MemoryBytes}}}}
}

// afterChallenge plays a worker that claims m, commits at the requested
// size without computing, reads the challenge and then, instead of
// proofs, does answer (a worker that checked its proofs against the seeds
// and found they would fail).
func afterChallenge(m market.GPUModel, answer func(ctx context.Context, out io.Writer)) workerScript {
	return func(ctx context.Context, _ string, in io.Reader, out, _ io.Writer) int {
		writeLine(out, hello(m))
		br := bufio.NewReader(in)
		line, err := readRequest(br, out)
		if err != nil {
			return 1
		}
		var req pog.ComputeRequest
		if err := json.Unmarshal(line, &req); err != nil {
			return 1
		}
		writeLine(out, pog.Commitment{Type: pog.TypeCommit, N: req.N, Root: pog.Hash{1}})
		if _, err := br.ReadBytes('\n'); err != nil {
			return 1
		}
		writeLine(out, pog.Residency{Type: pog.TypeResident, Roots: make([]pog.Hash, pog.ResidencyPasses)})
		if _, err := br.ReadBytes('\n'); err != nil {
			return 1
		}
		answer(ctx, out)
		return 0
	}
}

// readRequest reads the next request, answering pings.
func readRequest(br *bufio.Reader, out io.Writer) ([]byte, error) {
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		if p, err := pog.DecodePing(bytes.TrimSuffix(line, []byte("\n")), pog.TypePing); err == nil {
			writeLine(out, pog.Ping{Type: pog.TypePong, Seq: p.Seq})
			continue
		}
		return line, nil
	}
}

func TestDriverOutcomes(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	h100 := model(t, "NVIDIA H100 80GB HBM3")
	tests := []struct {
		name        string
		b           minerBehavior
		allowSim    bool
		mod         func(*PoGConfig)
		want        Outcome
		final       bool
		reason      string
		model       string
		deallocErr  string
		maxDuration time.Duration
		tgt         func(*target)
		count       int
	}{
		{name: "honest simulated miner", b: minerBehavior{script: simWorker(h100, 2)}, allowSim: true,
			want: OutcomePass, model: h100.Name, reason: "confirmed"},
		{name: "simulated outside devnet", b: minerBehavior{script: simWorker(h100, 1)},
			want: OutcomeFail, final: true, reason: pog.ReasonSimulatedRefused},
		{name: "allocation refused", b: minerBehavior{refuse: true},
			want: OutcomeUnreachable, reason: "all GPUs are leased"},
		{name: "allocation too slow", b: minerBehavior{allocDelay: 3 * time.Second},
			mod:  func(c *PoGConfig) { c.AllocateTimeout = 300 * time.Millisecond },
			want: OutcomeUnreachable, reason: "allocation refused", maxDuration: 10 * time.Second},
		{name: "undecryptable credentials", b: minerBehavior{badInfo: true},
			want: OutcomeUnreachable, reason: "credentials unreadable"},
		{name: "port nobody listens on", b: minerBehavior{deadPort: true},
			mod:  func(c *PoGConfig) { c.SSHTimeout = time.Second },
			want: OutcomeUnreachable, reason: "no SSH server within", maxDuration: 5 * time.Second},
		{name: "ssh accepts and hangs", b: minerBehavior{hangSSH: true},
			mod:  func(c *PoGConfig) { c.SSHTimeout = time.Second },
			want: OutcomeUnreachable, reason: "ssh", maxDuration: 5 * time.Second},
		{name: "worker prints garbage", b: minerBehavior{script: func(ctx context.Context, _ string, in io.Reader, out, _ io.Writer) int {
			fmt.Fprintln(out, "Welcome to Ubuntu! this is not JSON")
			_, _ = io.Copy(io.Discard, in)
			return 0
		}}, want: OutcomeFail, reason: "protocol violation"},
		{name: "worker prints a huge line", b: minerBehavior{script: func(ctx context.Context, _ string, in io.Reader, out, _ io.Writer) int {
			chunk := []byte(strings.Repeat("x", 64<<10))
			for ctx.Err() == nil {
				if _, err := out.Write(chunk); err != nil {
					return 1
				}
			}
			return 0
		}}, want: OutcomeFail, reason: "line too long", maxDuration: 10 * time.Second},
		{name: "worker hangs after hello", b: minerBehavior{script: func(ctx context.Context, _ string, in io.Reader, out, _ io.Writer) int {
			writeLine(out, hello(h100))
			<-ctx.Done()
			return 0
		}}, mod: func(c *PoGConfig) { c.AttemptTimeout = 2 * time.Second },
			want: OutcomeFail, reason: "timed out", maxDuration: 8 * time.Second},
		{name: "worker says nothing", b: minerBehavior{script: func(ctx context.Context, _ string, in io.Reader, out, _ io.Writer) int {
			<-ctx.Done()
			return 0
		}}, mod: func(c *PoGConfig) { c.HelloTimeout = 500 * time.Millisecond },
			want: OutcomeFail, reason: "no complete hello from the worker within 500ms", maxDuration: 5 * time.Second},
		{name: "worker stalls in the middle of its hello", b: minerBehavior{script: func(ctx context.Context, _ string, in io.Reader, out, _ io.Writer) int {
			b, _ := json.Marshal(hello(h100))
			_, _ = out.Write(b[:len(b)/2])
			<-ctx.Done()
			return 0
		}}, mod: func(c *PoGConfig) { c.HelloTimeout = 500 * time.Millisecond },
			want: OutcomeFail, reason: "no complete hello from the worker within 500ms", maxDuration: 5 * time.Second},
		{name: "worker error instead of proofs", b: minerBehavior{script: afterChallenge(h100, func(_ context.Context, out io.Writer) {
			writeLine(out, pog.ErrorMessage{Type: pog.TypeError, Message: "CUDA error: an illegal memory access"})
		})}, want: OutcomeFail, final: true, reason: "no valid proofs after the challenge: worker error"},
		{name: "garbage instead of proofs", b: minerBehavior{script: afterChallenge(h100, func(_ context.Context, out io.Writer) {
			fmt.Fprintln(out, "Segmentation fault")
		})}, want: OutcomeFail, final: true, reason: "protocol violation"},
		{name: "end of stream instead of proofs", b: minerBehavior{script: afterChallenge(h100, func(context.Context, io.Writer) {})},
			want: OutcomeFail, final: true, reason: "stream ended early"},
		{name: "per-GPU error instead of proofs", b: minerBehavior{script: afterChallenge(h100, func(_ context.Context, out io.Writer) {
			writeLine(out, pog.ProofsResponse{Type: pog.TypeProofs, GPUs: []pog.GPUProofs{{Proofs: []pog.Proof{}, Error: "lost C"}}})
		})}, want: OutcomeFail, final: true, reason: "worker: lost C"},
		{name: "silence instead of proofs", b: minerBehavior{script: afterChallenge(h100, func(ctx context.Context, _ io.Writer) { <-ctx.Done() })},
			mod:  func(c *PoGConfig) { c.ProofTimeout = 300 * time.Millisecond },
			want: OutcomeFail, final: true, reason: "no proofs within 300ms", maxDuration: 5 * time.Second},
		{name: "credit capped at the GPUs the specs declared", b: minerBehavior{script: simWorker(h100, 2)}, allowSim: true,
			tgt: func(t *target) { t.GPUs, t.SpecsGPUs = 1, 1 }, want: OutcomePass, model: h100.Name, count: 1, reason: "confirmed"},
		{name: "worker cannot start", b: minerBehavior{script: func(ctx context.Context, _ string, in io.Reader, out, errw io.Writer) int {
			fmt.Fprintln(errw, "error: libcuda.so.1: cannot open shared object file")
			return 127
		}}, want: OutcomeFail, reason: "libcuda.so.1"},
		{name: "worker reports an error", b: minerBehavior{script: func(ctx context.Context, _ string, in io.Reader, out, _ io.Writer) int {
			writeLine(out, pog.ErrorMessage{Type: pog.TypeError, Message: "CUDA out of memory"})
			return 1
		}}, want: OutcomeFail, reason: "CUDA out of memory"},
		{name: "worker lies about the matrix size", b: minerBehavior{script: func(ctx context.Context, _ string, in io.Reader, out, _ io.Writer) int {
			writeLine(out, hello(h100))
			br := bufio.NewReader(in)
			if _, err := readRequest(br, out); err != nil {
				return 1
			}
			writeLine(out, pog.Commitment{Type: pog.TypeCommit, N: 1024, Root: pog.Hash{1}})
			if _, err := readRequest(br, out); err != nil {
				return 1
			}
			writeLine(out, pog.Residency{Type: pog.TypeResident, Error: "no commitment"})
			if _, err := readRequest(br, out); err != nil {
				return 1
			}
			writeLine(out, pog.ProofsResponse{Type: pog.TypeProofs, GPUs: []pog.GPUProofs{{}}})
			_, _ = io.Copy(io.Discard, br)
			return 0
		}}, want: OutcomeFail, final: true, reason: "committed n = 1024"},
		{name: "miner refuses to deallocate", b: minerBehavior{script: simWorker(h100, 1), refuseDealloc: true}, allowSim: true,
			want: OutcomePass, model: h100.Name, deallocErr: "cannot stop container"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := startFakeMiner(t, "", nil, tt.b)
			cfg := testPoGConfig(t, smallWorker(t))
			cfg.AllowSimulated = tt.allowSim
			if tt.mod != nil {
				tt.mod(&cfg)
			}
			d := newTestDriver(t, cfg)
			tg := m.target()
			if tt.tgt != nil {
				tt.tgt(&tg)
			}
			start := time.Now()
			a := d.test(context.Background(), tg)
			took := time.Since(start)
			if a.outcome != tt.want || a.final != tt.final {
				t.Fatalf("outcome %s (final %v), want %s (final %v): %s", a.outcome, a.final, tt.want, tt.final, a.reason)
			}
			if !strings.Contains(a.reason, tt.reason) {
				t.Errorf("reason %q does not mention %q", a.reason, tt.reason)
			}
			if tt.model != "" && (a.res == nil || a.res.Model != tt.model) {
				t.Errorf("model %+v, want %s", a.res, tt.model)
			}
			if tt.count > 0 && (a.res == nil || a.res.Count != tt.count) {
				t.Errorf("credited %+v, want %d GPUs", a.res, tt.count)
			}
			if !strings.Contains(a.deallocError, tt.deallocErr) || (tt.deallocErr == "" && a.deallocError != "") {
				t.Errorf("dealloc error %q, want %q", a.deallocError, tt.deallocErr)
			}
			if tt.maxDuration > 0 && took > tt.maxDuration {
				t.Errorf("took %s, more than %s", took, tt.maxDuration)
			}
			allocs, deallocs, live, _ := m.counts()
			switch {
			case tt.b.refuse:
				if deallocs != 0 {
					t.Errorf("%d deallocations after a refused allocation", deallocs)
				}
			case tt.b.refuseDealloc:
				if deallocs != cfg.DeallocateAttempts {
					t.Errorf("%d deallocation calls, want %d", deallocs, cfg.DeallocateAttempts)
				}
			default:
				if live != 0 || deallocs < 1 {
					t.Errorf("lease left behind: %d allocations, %d deallocations, %d live", allocs, deallocs, live)
				}
			}
		})
	}
}

// TestDriverRealWorker runs the real chain of a test: nicompute's SSH
// server, an SFTP upload of the static nicompute binary, and `nicompute pog
// compute` with the devnet simulation its environment sets.
func TestDriverRealWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nicompute")
	}
	bin := nictest.BuildNicompute(t)
	a100 := model(t, "NVIDIA A100-SXM4-80GB")
	tests := []struct {
		name     string
		simulate string
		allowSim bool
		want     Outcome
		model    string
		count    int
		reason   string
	}{
		{"devnet simulation", "2x" + a100.Name, true, OutcomePass, a100.Name, 2, "confirmed"},
		{"cpu backend proves no model", "", true, OutcomeFail, "", 0, "no model of the table is proven"},
		{"simulation refused outside devnet", a100.Name, false, OutcomeFail, "", 0, pog.ReasonSimulatedRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := startFakeMiner(t, "", nil, minerBehavior{simulate: tt.simulate})
			cfg := testPoGConfig(t, bin)
			cfg.AllowSimulated = tt.allowSim
			d := newTestDriver(t, cfg)
			tg := m.target()
			tg.GPUs = 2
			a := d.test(context.Background(), tg)
			if a.outcome != tt.want || !strings.Contains(a.reason, tt.reason) {
				t.Fatalf("outcome %s: %s; want %s mentioning %q", a.outcome, a.reason, tt.want, tt.reason)
			}
			if tt.model != "" && (a.res.Model != tt.model || a.res.Count != tt.count) {
				t.Fatalf("proved %d × %s, want %d × %s", a.res.Count, a.res.Model, tt.count, tt.model)
			}
			if !strings.HasPrefix(a.hostKey, "SHA256:") {
				t.Errorf("host key %q not recorded", a.hostKey)
			}
			if _, deallocs, live, _ := m.counts(); live != 0 || deallocs != 1 {
				t.Errorf("%d deallocations, %d live leases", deallocs, live)
			}
		})
	}
}

func TestDriverCanceled(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	m := startFakeMiner(t, "", nil, minerBehavior{script: func(ctx context.Context, _ string, in io.Reader, out, _ io.Writer) int {
		<-ctx.Done()
		return 0
	}})
	d := newTestDriver(t, testPoGConfig(t, smallWorker(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	d.test(ctx, m.target())
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("canceled test took %s", took)
	}
	if _, deallocs, live, _ := m.counts(); live != 0 || deallocs != 1 {
		t.Fatalf("canceled test left its lease: %d deallocations, %d live", deallocs, live)
	}
}
