package axon

import (
	"container/heap"
	"context"
	"errors"
	"math"
	"sync"
)

var errQueueFull = errors.New("request queue is full")

// scheduler hands out a fixed number of worker slots. When all are busy,
// requests wait in a bounded queue and each freed slot goes to the waiting
// request with the highest priority (first come first served among equals).
type scheduler struct {
	queueSize int

	// mu protects the fields below.
	mu      sync.Mutex
	free    int
	waiting waitHeap
	seq     uint64
}

type waiter struct {
	priority float64
	seq      uint64
	index    int           // position in the heap, -1 once removed
	ready    chan struct{} // closed when a slot is handed over
}

func newScheduler(workers, queueSize int) *scheduler {
	return &scheduler{free: workers, queueSize: queueSize}
}

// acquire returns nil once the caller holds a slot, which it must give back
// with release. It fails with errQueueFull when the queue is full, or with
// ctx's error when ctx ends first (the caller then holds no slot).
func (s *scheduler) acquire(ctx context.Context, priority float64) error {
	if math.IsNaN(priority) {
		priority = math.Inf(-1)
	}
	s.mu.Lock()
	if s.free > 0 && len(s.waiting) == 0 {
		s.free--
		s.mu.Unlock()
		return nil
	}
	if len(s.waiting) >= s.queueSize {
		s.mu.Unlock()
		return errQueueFull
	}
	s.seq++
	w := &waiter{priority: priority, seq: s.seq, ready: make(chan struct{})}
	heap.Push(&s.waiting, w)
	s.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	if w.index < 0 { // granted while ctx ended: pass the slot on
		s.mu.Unlock()
		s.release()
		return ctx.Err()
	}
	heap.Remove(&s.waiting, w.index)
	s.mu.Unlock()
	return ctx.Err()
}

// release gives a slot back, to the best waiting request if any.
func (s *scheduler) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waiting) > 0 {
		w := heap.Pop(&s.waiting).(*waiter)
		close(w.ready)
		return
	}
	s.free++
}

// queued returns the number of waiting requests.
func (s *scheduler) queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.waiting)
}

// waitHeap is a max-heap on priority, then a min-heap on arrival.
type waitHeap []*waiter

func (h waitHeap) Len() int { return len(h) }
func (h waitHeap) Less(i, j int) bool {
	if h[i].priority != h[j].priority {
		return h[i].priority > h[j].priority
	}
	return h[i].seq < h[j].seq
}
func (h waitHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *waitHeap) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *waitHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	w.index = -1
	return w
}
