package axon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestCheckFresh(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name    string
		nonce   time.Time
		timeout time.Duration
		want    error
	}{
		{"now", now, 12 * time.Second, nil},
		{"just inside the window", now.Add(-16*time.Second + time.Nanosecond), 12 * time.Second, nil},
		{"at the window edge", now.Add(-16 * time.Second), 12 * time.Second, errNonceStale},
		{"old with no timeout", now.Add(-5 * time.Second), 0, errNonceStale},
		{"slightly ahead", now.Add(3 * time.Second), 0, nil},
		{"far ahead", now.Add(17 * time.Second), 12 * time.Second, errNonceFuture},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkFresh(tt.nonce.UnixNano(), now, tt.timeout); !errors.Is(got, tt.want) {
				t.Errorf("checkFresh = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNonceStoreOrder(t *testing.T) {
	s := newNonceStore(20*time.Second, 100)
	now := time.Unix(1_700_000_000, 0)
	n := now.UnixNano()
	steps := []struct {
		key   string
		nonce int64
		want  error
	}{
		{"a:1", n, nil},
		{"a:1", n, errNonceReplayed},
		{"a:1", n - 1, errNonceReplayed},
		{"a:1", n + 1, nil},
		{"a:2", n - 5, nil}, // another uuid has its own sequence
		{"b:1", n - 5, nil},
	}
	for i, st := range steps {
		if got := s.commit(st.key, st.nonce, now); !errors.Is(got, st.want) {
			t.Errorf("step %d commit(%s, %d) = %v, want %v", i, st.key, st.nonce-n, got, st.want)
		}
	}
}

// TestNonceStoreBounded floods the store with distinct endpoints: its size
// stays bounded, and no evicted request can be replayed.
func TestNonceStoreBounded(t *testing.T) {
	const capacity = 64
	s := newNonceStore(20*time.Second, capacity)
	now := time.Unix(1_700_000_000, 0)
	base := now.UnixNano()
	for i := range 10 * capacity {
		if err := s.commit(fmt.Sprintf("k:%d", i), base+int64(i), now); err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
		if s.len() > capacity {
			t.Fatalf("store grew to %d entries", s.len())
		}
	}
	for i := range 10 * capacity {
		// Every request seen so far is refused, stored or evicted.
		if err := s.check(fmt.Sprintf("k:%d", i), base+int64(i)); err == nil {
			t.Fatalf("replay of request %d accepted", i)
		}
	}
	// A new dendrite with a current nonce is still accepted.
	if err := s.commit("new:1", base+int64(10*capacity), now); err != nil {
		t.Errorf("new endpoint refused: %v", err)
	}
	// Once their nonces are past the retention, entries are dropped without
	// raising the floor.
	later := now.Add(time.Minute)
	if err := s.commit("late:1", later.UnixNano(), later); err != nil {
		t.Fatal(err)
	}
	if s.len() != 1 {
		t.Errorf("after retention: %d entries, want 1", s.len())
	}
}

func TestNonceStoreConcurrentReplay(t *testing.T) {
	s := newNonceStore(20*time.Second, 1000)
	now := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 16 {
		wg.Go(func() {
			if s.commit("a:1", now.UnixNano(), now) == nil {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if accepted != 1 {
		t.Errorf("same nonce accepted %d times", accepted)
	}
}

func TestDendriteNonces(t *testing.T) {
	fixed := time.Unix(1_700_000_000, 0)
	d := NewDendrite(mustKey(t, "//Alice"), withClock(func() time.Time { return fixed }))
	a, b, c := d.nextNonce(), d.nextNonce(), d.nextNonce()
	if a != fixed.UnixNano() || b != a+1 || c != b+1 {
		t.Errorf("nonces %d %d %d from a stopped clock", a, b, c)
	}
	// Concurrent calls take distinct uuids; uuids are reused after.
	u1, _ := d.takeUUID(context.Background())
	u2, _ := d.takeUUID(context.Background())
	if u1 == u2 || !signsBody(u1) || !signsBody(u2) {
		t.Errorf("uuids %s %s", u1, u2)
	}
	d.putUUID(u1)
	if u3, _ := d.takeUUID(context.Background()); u3 != u1 {
		t.Errorf("idle uuid not reused: %s", u3)
	}
}

// TestDendriteConcurrentCalls: many concurrent calls from one Dendrite to
// one axon all succeed (no call is refused for an out-of-order nonce).
func TestDendriteConcurrentCalls(t *testing.T) {
	ta := startAxon(t, Config{MaxWorkers: 4}, Hooks{})
	d := NewDendrite(mustKey(t, "//Alice"))
	defer d.Close() // else connections dialed but never used hold up the axon's shutdown
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			_, err := d.Call(context.Background(), ta.target, "Echo", echoRequest{Timeline: i, SleepMS: i % 3}, nil, 10*time.Second)
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ta.runs.Load() != 64 {
		t.Errorf("runs = %d", ta.runs.Load())
	}
}
