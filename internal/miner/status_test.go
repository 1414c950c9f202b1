package miner

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nicompute/nicompute/internal/market"
)

// TestQuiesceWaitsForAllocations: Quiesce returns only once a running
// allocation has answered, refuses new ones meanwhile (503), and resume
// admits them again. The lease allocated before is untouched.
func TestQuiesceWaitsForAllocations(t *testing.T) {
	w := newWorld(t)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	reg := prometheus.NewRegistry()
	tm := startTestMiner(t, w, func(c *Config, _ *Deps) { c.Metrics = reg })
	tm.rt.createHook = func(ContainerSpec) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return nil
	}
	_, key := sshPub(t)
	first := make(chan int, 1)
	go func() {
		_, st := tm.call(t, nil, allocReq(newRenter(t), key, market.Requirement{CPUs: 1}))
		first <- st
	}()
	<-entered

	quiesced := make(chan error, 1)
	var resume func()
	go func() {
		var err error
		resume, err = tm.svc.Quiesce(context.Background())
		quiesced <- err
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-quiesced:
		t.Fatalf("Quiesce returned (%v) while an allocation was running", err)
	default:
	}
	// A second, timed-out Quiesce gives up alone; the first keeps waiting.
	if _, err := tm.svc.Quiesce(timeoutCtx(t, 20*time.Millisecond)); err == nil {
		t.Fatal("Quiesce with an expired context succeeded while an allocation ran")
	}
	close(release)
	if st := <-first; st != 200 {
		t.Fatalf("the running allocation answered %d", st)
	}
	if err := <-quiesced; err != nil {
		t.Fatal(err)
	}
	// Closed: new requests are refused without touching the runtime.
	creates := tm.rt.creates.Load()
	if out, st := tm.call(t, nil, allocReq(newRenter(t), key, market.Requirement{CPUs: 1})); st != 503 {
		t.Fatalf("allocate while quiesced: %d %+v, want 503", st, out)
	}
	if tm.rt.creates.Load() != creates {
		t.Fatal("a refused request reached the runtime")
	}
	resume()
	if _, st := tm.call(t, nil, allocReq(newRenter(t), key, market.Requirement{CPUs: 1})); st != 200 {
		t.Fatalf("allocate after resume: %d", st)
	}
	if n := len(tm.live(t)); n != 2 {
		t.Fatalf("%d live leases, want 2", n)
	}

	st := tm.svc.Status()
	if !st.Registered || st.Block == 0 || st.Hotkey != w.miner.SS58() || st.Capacity.CPUs == 0 || st.Validators != 1 {
		t.Fatalf("status %+v", st)
	}
	reqs := tm.svc.Requests()
	if len(reqs) != 1 || reqs[0].Hotkey != w.validator.SS58() || reqs[0].Action != "allocate" || reqs[0].Result != "ok" {
		t.Fatalf("requests %+v", reqs)
	}
	if got := testutil.ToFloat64(tm.svc.metrics.requests.WithLabelValues("allocate", "ok")); got != 2 {
		t.Fatalf("allocations_total{allocate,ok} = %v, want 2", got)
	}
	if testutil.CollectAndCount(reg, "nicompute_chain_block", "nicompute_miner_axon_requests_total") < 2 {
		t.Fatal("chain block or axon metrics missing")
	}
}

func TestRequestLogIsBounded(t *testing.T) {
	now := time.Unix(0, 0)
	l := newRequestLog(func() time.Time { now = now.Add(time.Second); return now })
	for i := range maxRequestLog + 10 {
		l.note(string(rune('A'+i%26))+strings.Repeat("x", i), "check", nil)
	}
	l.note("A", "allocate", market.Errorf(market.ECONFLICT, "all GPUs are leased"))
	if len(l.last) != maxRequestLog {
		t.Fatalf("%d callers kept, want %d", len(l.last), maxRequestLog)
	}
	if r := l.last["A"]; r.Result != market.ECONFLICT || r.Message != "all GPUs are leased" {
		t.Fatalf("last of A = %+v", r)
	}
}

func timeoutCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
