package axon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
		{"short timeout, short window", now.Add(-7 * time.Second), 2 * time.Second, errNonceStale},
		{"old with no timeout", now.Add(-5 * time.Second), 0, errNonceStale},
		// A long timeout does not widen the window past DefaultMaxNonceAge,
		// as Bittensor's 4 s + timeout would (to 124 s here).
		{"long timeout, inside the bound", now.Add(-DefaultMaxNonceAge + time.Nanosecond), DefaultMaxTimeout, nil},
		{"long timeout, past the bound", now.Add(-DefaultMaxNonceAge), DefaultMaxTimeout, errNonceStale},
		{"long timeout, a minute old", now.Add(-time.Minute), DefaultMaxTimeout, errNonceStale},
		{"slightly ahead", now.Add(3 * time.Second), 0, nil},
		{"ahead by the allowed skew", now.Add(MaxNonceSkew), DefaultMaxTimeout, nil},
		{"beyond the skew with a long timeout", now.Add(MaxNonceSkew + time.Nanosecond), DefaultMaxTimeout, errNonceFuture},
		{"far ahead", now.Add(17 * time.Second), 12 * time.Second, errNonceFuture},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkFresh(tt.nonce.UnixNano(), now, tt.timeout, DefaultMaxNonceAge); !errors.Is(got, tt.want) {
				t.Errorf("checkFresh = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestStretchedTimeoutNonce: the timeout header is not covered by the
// request's signature, so a request signed a minute ago must be refused
// even when its timeout says 120 s (Bittensor's axon would accept it up to
// 124 s). A request as old as Bittensor's broadcast queue can make an honest
// one (a 12 s wait) still passes.
func TestStretchedTimeoutNonce(t *testing.T) {
	ta := startAxon(t, Config{}, Hooks{})
	d := NewDendrite(mustKey(t, "//Alice"))
	tests := []struct {
		name    string
		age     time.Duration
		timeout time.Duration
		status  int
	}{
		{"queued 12 s in a broadcast", 12 * time.Second, 12 * time.Second, http.StatusOK},
		{"a minute old, timeout 120 s", time.Minute, DefaultMaxTimeout, http.StatusUnauthorized},
		{"20 s old, timeout 120 s", 20 * time.Second, DefaultMaxTimeout, http.StatusUnauthorized},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nonce := time.Now().Add(-tt.age).UnixNano()
			r := signedRequest(t, d, ta.target, "Echo", echoRequest{}, tt.timeout, floodUUID(100+i), nonce)
			rep := send(t, ta.addr, r)
			if rep.status != tt.status {
				t.Errorf("status %d (%s), want %d", rep.status, rep.message, tt.status)
			}
		})
	}
}

func TestNonceStoreOrder(t *testing.T) {
	s := newNonceStore(20*time.Second, 100, 10)
	now := time.Unix(1_700_000_000, 0)
	n := now.UnixNano()
	steps := []struct {
		hotkey, uuid string
		nonce        int64
		want         error
	}{
		{"a", "1", n, nil},
		{"a", "1", n, errNonceReplayed},
		{"a", "1", n - 1, errNonceReplayed},
		{"a", "1", n + 1, nil},
		{"a", "2", n - 5, nil}, // another uuid has its own sequence
		{"b", "1", n - 5, nil},
	}
	for i, st := range steps {
		if got := s.commit(st.hotkey, st.uuid, st.nonce, now); !errors.Is(got, st.want) {
			t.Errorf("step %d commit(%s:%s, %d) = %v, want %v", i, st.hotkey, st.uuid, st.nonce-n, got, st.want)
		}
	}
}

// commitAll commits one request per uuid u0…u{n-1} of hotkey, with
// increasing nonces from base; it fails the test if one is refused.
func commitAll(tb testing.TB, s *nonceStore, hotkey string, n int, base int64, now time.Time) {
	tb.Helper()
	for i := range n {
		if err := s.commit(hotkey, fmt.Sprintf("u%d", i), base+int64(i), now); err != nil {
			tb.Fatalf("commit %s:u%d: %v", hotkey, i, err)
		}
	}
}

// assertReplaysRefused checks that none of commitAll's requests can be
// committed again.
func assertReplaysRefused(tb testing.TB, s *nonceStore, hotkey string, n int, base int64) {
	tb.Helper()
	for i := range n {
		if err := s.check(hotkey, fmt.Sprintf("u%d", i), base+int64(i)); err == nil {
			tb.Fatalf("replay of %s:u%d accepted", hotkey, i)
		}
	}
}

// TestNonceStorePerHotkey floods the store from one hotkey with fresh
// uuids and nonces as far ahead as allowed: the hotkey keeps at most
// perHotkey uuids, none of its requests can be replayed, and another
// hotkey's requests, even older than the flood's, are still accepted.
func TestNonceStorePerHotkey(t *testing.T) {
	const perHotkey = 8
	s := newNonceStore(20*time.Second, 1000, perHotkey)
	now := time.Unix(1_700_000_000, 0)
	ahead := now.Add(MaxNonceSkew).UnixNano()
	commitAll(t, s, "a", 10*perHotkey, ahead, now)
	if got := len(s.hotkeys["a"].last); got > perHotkey {
		t.Errorf("hotkey holds %d uuids, want at most %d", got, perHotkey)
	}
	assertReplaysRefused(t, s, "a", 10*perHotkey, ahead)
	// The flooding hotkey's own older nonces are refused on a new uuid...
	if err := s.commit("a", "new", now.UnixNano(), now); !errors.Is(err, errNonceReplayed) {
		t.Errorf("hotkey's nonce below its floor: %v, want errNonceReplayed", err)
	}
	// ...and its later ones accepted.
	if err := s.commit("a", "new", ahead+int64(10*perHotkey), now); err != nil {
		t.Errorf("hotkey's next nonce: %v", err)
	}
	if err := s.commit("b", "1", now.UnixNano(), now); err != nil {
		t.Errorf("another hotkey refused: %v", err)
	}
}

// TestNonceStoreBounded floods the store from many hotkeys, each with many
// uuids: its cost stays within capacity, no request can be replayed, the
// hotkeys holding the most uuids are trimmed first, and a hotkey that
// holds few keeps them and can still send older nonces than the flood's.
func TestNonceStoreBounded(t *testing.T) {
	const capacity, perHotkey = 64, 16
	s := newNonceStore(20*time.Second, capacity, perHotkey)
	now := time.Unix(1_700_000_000, 0)
	n := now.UnixNano()
	commitAll(t, s, "quiet", 2, n-int64(time.Second), now)
	ahead := now.Add(MaxNonceSkew).UnixNano()
	const flooders, each = 20, 3 * perHotkey
	for f := range flooders {
		hotkey := fmt.Sprintf("flood%d", f)
		for i := range each {
			if err := s.commit(hotkey, fmt.Sprintf("u%d", i), ahead+int64(i), now); err != nil {
				t.Fatalf("commit %s:u%d: %v", hotkey, i, err)
			}
			if cost, _ := s.size(); cost > capacity {
				t.Fatalf("store cost grew to %d", cost)
			}
		}
	}
	for f := range flooders {
		assertReplaysRefused(t, s, fmt.Sprintf("flood%d", f), each, ahead)
	}
	assertReplaysRefused(t, s, "quiet", 2, n-int64(time.Second))
	if got := len(s.hotkeys["quiet"].last); got != 2 {
		t.Errorf("quiet hotkey holds %d uuids, want its 2", got)
	}
	if err := s.commit("quiet", "u2", n-int64(time.Second)+2, now); err != nil {
		t.Errorf("quiet hotkey's next request refused: %v", err)
	}
	if err := s.commit("new", "1", n, now); err != nil {
		t.Errorf("new hotkey refused: %v", err)
	}
	// Once their nonces are past the retention, entries and hotkeys are
	// dropped.
	later := now.Add(time.Minute)
	if err := s.commit("late", "1", later.UnixNano(), later); err != nil {
		t.Fatal(err)
	}
	if cost, hotkeys := s.size(); cost != 1 || hotkeys != 1 {
		t.Errorf("after retention: cost %d, %d hotkeys; want 1, 1", cost, hotkeys)
	}
}

// TestNonceStoreFull: with the store full of distinct fresh hotkeys, a
// new hotkey is refused while the stored ones keep working, until the
// stored ones age out.
func TestNonceStoreFull(t *testing.T) {
	const capacity = 16
	s := newNonceStore(20*time.Second, capacity, 4)
	now := time.Unix(1_700_000_000, 0)
	n := now.UnixNano()
	full := s.target()
	for i := range full {
		if err := s.commit(fmt.Sprintf("k%d", i), "1", n, now); err != nil {
			t.Fatalf("hotkey %d: %v", i, err)
		}
	}
	if err := s.commit("new", "1", n, now.Add(2*minPurgeInterval)); !errors.Is(err, errNonceStoreFull) {
		t.Errorf("new hotkey in a full store: %v, want errNonceStoreFull", err)
	}
	if err := s.commit("k0", "2", n, now); err != nil {
		t.Errorf("stored hotkey's new uuid: %v", err)
	}
	if cost, _ := s.size(); cost > capacity {
		t.Errorf("cost %d over capacity", cost)
	}
	later := now.Add(time.Minute)
	if err := s.commit("new", "1", later.UnixNano(), later); err != nil {
		t.Errorf("new hotkey once the others aged out: %v", err)
	}
}

func TestNonceStoreConcurrentReplay(t *testing.T) {
	s := newNonceStore(20*time.Second, 1000, 10)
	now := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 16 {
		wg.Go(func() {
			if s.commit("a", "1", now.UnixNano(), now) == nil {
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

// floodUUID is the i-th of the fresh uuids a flooding dendrite uses.
func floodUUID(i int) string { return fmt.Sprintf("6e696331-0000-8000-8000-%012d", i) }

// TestBlacklistedFloodLockout: a key the blacklist refuses sends more
// requests than the nonce store holds, each under a fresh uuid with a nonce
// as far ahead as allowed. None of them takes room in the store, a replay
// is refused by the blacklist again, and a validator's brand-new dendrite
// is then served.
func TestBlacklistedFloodLockout(t *testing.T) {
	const capacity = 16
	alice := mustKey(t, "//Alice")
	ta := startAxon(t, Config{NonceCapacity: capacity}, Hooks{
		Blacklist: func(_ context.Context, c Caller, _ string) (string, bool) {
			return "not registered", c.Hotkey != aliceSS58
		},
	})
	eve := NewDendrite(mustKey(t, "//Eve"))
	ahead := time.Now().Add(MaxNonceSkew - time.Second).UnixNano()
	var first *rawRequest
	for i := range 2 * capacity {
		r := signedRequest(t, eve, ta.target, "Echo", echoRequest{}, DefaultMaxTimeout, floodUUID(i), ahead+int64(i))
		if first == nil {
			first = r.clone()
		}
		if rep := send(t, ta.addr, r); rep.status != http.StatusForbidden {
			t.Fatalf("flood request %d: %d %s, want 403", i, rep.status, rep.message)
		}
	}
	if cost, hotkeys := ta.srv.nonces.size(); cost != 0 || hotkeys != 0 {
		t.Errorf("nonce store holds %d entries of %d hotkeys after a blacklisted flood", cost, hotkeys)
	}
	if rep := send(t, ta.addr, first); rep.status != http.StatusForbidden {
		t.Errorf("replay of a blacklisted request: %d %s, want 403", rep.status, rep.message)
	}

	d := NewDendrite(alice)
	defer d.Close()
	if _, err := d.Call(context.Background(), ta.target, "Echo", echoRequest{Timeline: 1}, nil, 5*time.Second); err != nil {
		t.Errorf("validator refused after the flood: %v", err)
	}
}

// TestAdmittedFloodLockout: a key the blacklist lets through floods the
// axon past its nonce capacity with fresh uuids and nonces as far ahead as
// allowed. Every flood request is served once and never again, and
// another hotkey's fresh dendrite is still served although its nonces are
// older than the flood's.
func TestAdmittedFloodLockout(t *testing.T) {
	const capacity = 16
	ta := startAxon(t, Config{NonceCapacity: capacity}, Hooks{})
	eve := NewDendrite(mustKey(t, "//Eve"))
	ahead := time.Now().Add(MaxNonceSkew - time.Second).UnixNano()
	var sent []*rawRequest
	for i := range 3 * capacity {
		r := signedRequest(t, eve, ta.target, "Echo", echoRequest{}, DefaultMaxTimeout, floodUUID(i), ahead+int64(i))
		sent = append(sent, r.clone())
		if rep := send(t, ta.addr, r); rep.status != http.StatusOK {
			t.Fatalf("flood request %d: %d %s, want 200", i, rep.status, rep.message)
		}
	}
	for i, r := range sent {
		if rep := send(t, ta.addr, r); rep.status != http.StatusUnauthorized {
			t.Fatalf("replay of flood request %d: %d %s, want 401", i, rep.status, rep.message)
		}
	}
	if got := ta.runs.Load(); got != int64(len(sent)) {
		t.Errorf("handler ran %d times for %d distinct requests", got, len(sent))
	}

	d := NewDendrite(mustKey(t, "//Alice"))
	defer d.Close()
	for i := range 3 {
		if _, err := d.Call(context.Background(), ta.target, "Echo", echoRequest{Timeline: i}, nil, 5*time.Second); err != nil {
			t.Fatalf("other hotkey refused after the flood: %v", err)
		}
	}
}

// TestFarFutureNonce: a nonce further ahead than MaxNonceSkew is refused
// whatever the timeout the request asks for.
func TestFarFutureNonce(t *testing.T) {
	ta := startAxon(t, Config{}, Hooks{})
	d := NewDendrite(mustKey(t, "//Alice"))
	tests := []struct {
		name   string
		ahead  time.Duration
		status int
	}{
		{"within the skew", MaxNonceSkew - time.Second, http.StatusOK},
		{"beyond the skew", MaxNonceSkew + 10*time.Second, http.StatusUnauthorized},
		{"two minutes ahead", DefaultMaxTimeout, http.StatusUnauthorized},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nonce := time.Now().Add(tt.ahead).UnixNano()
			r := signedRequest(t, d, ta.target, "Echo", echoRequest{}, DefaultMaxTimeout, floodUUID(i), nonce)
			rep := send(t, ta.addr, r)
			if rep.status != tt.status {
				t.Errorf("status %d (%s), want %d", rep.status, rep.message, tt.status)
			}
		})
	}
}
