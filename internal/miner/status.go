package miner

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/subnet"
)

// Status is the miner's standing on its subnet, for dashboards and health
// checks.
type Status struct {
	NetUID     subnet.NetUID   `json:"netuid"`
	Hotkey     string          `json:"hotkey"`
	Block      uint64          `json:"block"`
	Registered bool            `json:"registered"`
	Neuron     subnet.Neuron   `json:"neuron"`
	Capacity   market.Capacity `json:"capacity"`
	// Validators is the number of neurons whose stake reaches the permit.
	Validators int `json:"validators"`
}

// Status returns the miner's standing as of its last metagraph.
func (s *Service) Status() Status {
	st := Status{NetUID: s.cfg.NetUID, Hotkey: s.cfg.Hotkey.SS58(), Capacity: s.leases.capacity}
	if v := s.chain.view.Load(); v != nil {
		st.Block, st.Validators = v.mg.Block, v.validators
		st.Neuron, st.Registered = v.byHotkey[st.Hotkey]
	}
	return st
}

// block is the block of the current metagraph (0 before the first).
func (s *Service) block() uint64 {
	if v := s.chain.view.Load(); v != nil {
		return v.mg.Block
	}
	return 0
}

// Request is the outcome of the last Allocate request of one caller.
type Request struct {
	Hotkey string    `json:"hotkey"`
	Action string    `json:"action"`
	At     time.Time `json:"at"`
	// Result is "ok" or the error code; Message the refusal's message.
	Result  string `json:"result"`
	Message string `json:"message,omitempty"`
}

// maxRequestLog bounds the callers remembered (the oldest is forgotten).
const maxRequestLog = 64

// requestLog remembers the last Allocate outcome of each caller.
type requestLog struct {
	now func() time.Time
	// mu protects last.
	mu   sync.Mutex
	last map[string]Request
}

func newRequestLog(now func() time.Time) *requestLog {
	return &requestLog{now: now, last: map[string]Request{}}
}

func (l *requestLog) note(hotkey, action string, err error) {
	r := Request{Hotkey: hotkey, Action: action, At: l.now().UTC(), Result: "ok"}
	if err != nil {
		r.Result, r.Message = market.ErrorCode(err), market.ErrorMessage(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.last[hotkey]; !ok && len(l.last) >= maxRequestLog {
		oldest := ""
		for h, x := range l.last {
			if oldest == "" || x.At.Before(l.last[oldest].At) {
				oldest = h
			}
		}
		delete(l.last, oldest)
	}
	l.last[hotkey] = r
}

// Requests returns the last Allocate outcome of each recent caller, newest
// first.
func (s *Service) Requests() []Request {
	s.requests.mu.Lock()
	out := make([]Request, 0, len(s.requests.last))
	for _, r := range s.requests.last {
		out = append(out, r)
	}
	s.requests.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
	return out
}

// gate lets Quiesce wait until no Allocate request runs and hold new ones
// off, so that the process can restart between allocations.
type gate struct {
	// mu protects the following.
	mu      sync.Mutex
	running int
	closers int           // Quiesce calls holding the gate closed
	idle    chan struct{} // closed when running drops to 0
}

// enter admits a request unless the gate is closed.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closers > 0 {
		return false
	}
	g.running++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running--
	if g.running == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// Quiesce refuses new Allocate requests (503, retry later) and waits until
// the running ones have answered. The caller restarts the process, or
// calls resume to admit requests again (once every Quiesce has resumed);
// when ctx ends first, Quiesce resumes by itself and returns ctx's error.
// Leases are not touched.
func (s *Service) Quiesce(ctx context.Context) (resume func(), err error) {
	g := &s.gate
	g.mu.Lock()
	g.closers++
	var idle chan struct{}
	if g.running > 0 {
		if g.idle == nil {
			g.idle = make(chan struct{})
		}
		idle = g.idle
	}
	g.mu.Unlock()
	var once sync.Once
	resume = func() {
		once.Do(func() {
			g.mu.Lock()
			g.closers--
			g.mu.Unlock()
		})
	}
	if idle == nil {
		return resume, nil
	}
	select {
	case <-idle:
		return resume, nil
	case <-ctx.Done():
		resume()
		return nil, ctx.Err()
	}
}
