package dashboard

import (
	"context"
	"sync"
	"time"
)

// Sample is a set of named values read at one block.
type Sample struct {
	Block  uint64
	At     time.Time
	Values map[string]float64
}

// History keeps the newest samples, one per block, in memory (a restart
// starts a new history; scores, which the validator stores, come from its
// store instead). It is safe for concurrent use.
type History struct {
	max int
	// mu protects samples.
	mu      sync.Mutex
	samples []Sample
}

// NewHistory keeps at most max samples (default 720).
func NewHistory(max int) *History {
	if max <= 0 {
		max = 720
	}
	return &History{max: max}
}

// Add records s unless a sample of the same or a later block is already
// the newest (the chain was read twice at one block, or went back).
func (h *History) Add(s Sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := len(h.samples); n > 0 && h.samples[n-1].Block >= s.Block {
		if h.samples[n-1].Block == s.Block {
			return
		}
		h.samples = h.samples[:0] // a reset chain: start over
	}
	h.samples = append(h.samples, s)
	if len(h.samples) > h.max {
		h.samples = append(h.samples[:0:0], h.samples[len(h.samples)-h.max:]...)
	}
}

// Samples returns a copy of the samples, oldest first.
func (h *History) Samples() []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Sample(nil), h.samples...)
}

// Run calls read every interval and adds what it returns (ok false: skip)
// until ctx ends.
func (h *History) Run(ctx context.Context, every time.Duration, read func(context.Context) (Sample, bool)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if s, ok := read(ctx); ok {
			h.Add(s)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
