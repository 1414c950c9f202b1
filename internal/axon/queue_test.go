package axon

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// waitFor polls cond every millisecond for up to 5 s.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	tb.Fatalf("timed out waiting for %s", what)
}

// priorityAxon serves "Work" with one worker. Calls from //Charlie block
// until release is closed; every run is recorded in order; priority is the
// caller's stake.
type priorityAxon struct {
	srv     *Server
	target  Target
	started chan struct{}
	release chan struct{}
	mu      sync.Mutex
	order   []string
}

func startPriorityAxon(tb testing.TB, cfg Config) *priorityAxon {
	tb.Helper()
	stake := map[string]float64{
		mustKey(tb, "//Alice").SS58(): 10,   // low
		mustKey(tb, "//Dave").SS58():  1000, // high
	}
	charlie := mustKey(tb, "//Charlie").SS58()
	cfg.Hotkey = mustKey(tb, "//Bob")
	cfg.MaxWorkers = 1
	srv, err := NewServer(cfg, testLogger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	pa := &priorityAxon{srv: srv, started: make(chan struct{}), release: make(chan struct{})}
	srv.Attach("Work", func(ctx context.Context, call *Call) (any, error) {
		pa.mu.Lock()
		pa.order = append(pa.order, call.Caller.Hotkey)
		pa.mu.Unlock()
		if call.Caller.Hotkey == charlie {
			close(pa.started)
			select {
			case <-pa.release:
			case <-ctx.Done():
			}
		}
		return map[string]bool{"ok": true}, nil
	}, Hooks{Priority: func(_ context.Context, c Caller, _ string) float64 { return stake[c.Hotkey] }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	tb.Cleanup(func() { cancel(); <-done; srv.Close() })
	pa.target = Target{Addr: ln.Addr().String(), Hotkey: srv.Hotkey()}
	return pa
}

type callOutcome struct {
	who string
	err error
}

func (pa *priorityAxon) call(tb testing.TB, uri string, timeout time.Duration, out chan<- callOutcome) {
	d := NewDendrite(mustKey(tb, uri))
	go func() {
		_, err := d.Call(context.Background(), pa.target, "Work", nil, nil, timeout)
		out <- callOutcome{uri, err}
	}()
}

func (pa *priorityAxon) ran() []string {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	return append([]string(nil), pa.order...)
}

// TestPriorityWhenSaturated: with the only worker busy, a low-stake and
// then a high-stake caller queue up; the high one runs first.
func TestPriorityWhenSaturated(t *testing.T) {
	pa := startPriorityAxon(t, Config{})
	out := make(chan callOutcome, 3)
	pa.call(t, "//Charlie", 10*time.Second, out)
	<-pa.started
	pa.call(t, "//Alice", 10*time.Second, out)
	waitFor(t, "Alice queued", func() bool { return pa.srv.sched.queued() == 1 })
	pa.call(t, "//Dave", 10*time.Second, out)
	waitFor(t, "Dave queued", func() bool { return pa.srv.sched.queued() == 2 })
	close(pa.release)
	for range 3 {
		if o := <-out; o.err != nil {
			t.Errorf("%s: %v", o.who, o.err)
		}
	}
	want := []string{mustKey(t, "//Charlie").SS58(), mustKey(t, "//Dave").SS58(), mustKey(t, "//Alice").SS58()}
	got := pa.ran()
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("run order = %v, want Charlie, Dave, Alice %v", got, want)
	}
}

// TestQueuedDeadline: a request whose deadline passes while it waits gets
// 408 and never runs; a request beyond the queue gets 503.
func TestQueuedDeadline(t *testing.T) {
	pa := startPriorityAxon(t, Config{QueueSize: 1})
	out := make(chan callOutcome, 3)
	pa.call(t, "//Charlie", 10*time.Second, out)
	<-pa.started
	pa.call(t, "//Alice", 200*time.Millisecond, out)
	waitFor(t, "Alice queued", func() bool { return pa.srv.sched.queued() == 1 })
	pa.call(t, "//Dave", 10*time.Second, out) // queue full
	o := <-out
	if o.who != "//Dave" || StatusCode(o.err) != http.StatusServiceUnavailable {
		t.Errorf("first answer %s: %v (status %d), want Dave with 503", o.who, o.err, StatusCode(o.err))
	}
	o = <-out
	if o.who != "//Alice" || StatusCode(o.err) != http.StatusRequestTimeout {
		t.Errorf("second answer %s: %v (status %d), want Alice with 408", o.who, o.err, StatusCode(o.err))
	}
	close(pa.release)
	if o := <-out; o.err != nil {
		t.Errorf("%s: %v", o.who, o.err)
	}
	if got := pa.ran(); len(got) != 1 {
		t.Errorf("handlers run for %v, want only Charlie", got)
	}
	if pa.srv.sched.queued() != 0 {
		t.Errorf("queue not empty: %d", pa.srv.sched.queued())
	}
}

func TestSchedulerHandoverOnCancel(t *testing.T) {
	s := newScheduler(1, 4)
	if err := s.acquire(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	// A waiter whose context ends while queued leaves no trace.
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.acquire(ctx, 5) }()
	waitFor(t, "waiter queued", func() bool { return s.queued() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("acquire = %v", err)
	}
	if s.queued() != 0 {
		t.Errorf("queued = %d", s.queued())
	}
	// NaN priorities rank last, equal priorities first come first served.
	got := make(chan float64, 3)
	for _, p := range []float64{math.NaN(), 1, 1} {
		n := s.queued() + 1
		go func() {
			if err := s.acquire(context.Background(), p); err == nil {
				got <- p
				s.release()
			}
		}()
		waitFor(t, "queued", func() bool { return s.queued() == n })
	}
	s.release()
	a, b, c := <-got, <-got, <-got
	if a != 1 || b != 1 || !math.IsNaN(c) {
		t.Errorf("order %v %v %v, want 1 1 NaN", a, b, c)
	}
	if err := s.acquire(context.Background(), 0); err != nil {
		t.Errorf("slot lost: %v", err)
	}
}
