package axon

import (
	"errors"
	"slices"
	"sync"
	"time"
)

var (
	errNonceReplayed = errors.New("nonce is not newer than the last one processed for this dendrite")
	errNonceStale    = errors.New("nonce is too old")
	errNonceFuture   = errors.New("nonce is too far in the future")
)

// checkFresh applies the freshness window to a nonce (ns since the epoch):
// it must be newer than now − 4 s − timeout, as Bittensor requires of a
// dendrite's first nonce, and no further ahead of now than that window
// either. Unlike the SDK, every request is checked, whatever its dendrite
// version and whether or not a nonce is stored: with the window always
// applied, forgetting a stored nonce once it has aged out of the window can
// never let its request be replayed.
func checkFresh(nonce int64, now time.Time, timeout time.Duration) error {
	window := int64(allowedDelta) + int64(timeout)
	n := now.UnixNano()
	if nonce <= n-window {
		return errNonceStale
	}
	if nonce > n+window {
		return errNonceFuture
	}
	return nil
}

// nonceStore remembers the last nonce accepted from each endpoint
// ("{dendrite_hotkey}:{uuid}") so that nonces strictly increase. It is
// bounded: entries whose nonce has aged past the longest freshness window
// are dropped (checkFresh refuses their requests anyway), and when the map
// is still full the entries with the oldest nonces are evicted and floor
// rises to the newest of them, so that no evicted request can be replayed
// while its nonce is still fresh.
type nonceStore struct {
	retention time.Duration // longest freshness window plus a margin
	capacity  int

	// mu protects the fields below.
	mu        sync.Mutex
	last      map[string]int64
	floor     int64 // nonces ≤ floor are refused for endpoints not in last
	lastPurge time.Time
}

func newNonceStore(retention time.Duration, capacity int) *nonceStore {
	return &nonceStore{retention: retention, capacity: capacity, last: make(map[string]int64)}
}

// check reports whether nonce would be accepted for key, without storing
// it; commit decides atomically.
func (s *nonceStore) check(key string, nonce int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkLocked(key, nonce)
}

func (s *nonceStore) checkLocked(key string, nonce int64) error {
	prev, ok := s.last[key]
	if !ok {
		prev = s.floor
	}
	if nonce <= prev {
		return errNonceReplayed
	}
	return nil
}

// commit stores nonce for key if it is newer than the stored one.
func (s *nonceStore) commit(key string, nonce int64, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkLocked(key, nonce); err != nil {
		return err
	}
	s.last[key] = nonce
	if len(s.last) > s.capacity || now.Sub(s.lastPurge) > s.retention {
		s.purgeLocked(now)
	}
	return nil
}

func (s *nonceStore) purgeLocked(now time.Time) {
	s.lastPurge = now
	cutoff := now.Add(-s.retention).UnixNano()
	for k, n := range s.last {
		if n <= cutoff {
			delete(s.last, k)
		}
	}
	if len(s.last) <= s.capacity {
		return
	}
	// Still full of fresh entries: evict the oldest quarter.
	nonces := make([]int64, 0, len(s.last))
	for _, n := range s.last {
		nonces = append(nonces, n)
	}
	slices.Sort(nonces)
	keep := s.capacity - s.capacity/4
	floor := nonces[len(nonces)-keep-1]
	for k, n := range s.last {
		if n <= floor {
			delete(s.last, k)
		}
	}
	s.floor = max(s.floor, floor)
}

func (s *nonceStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.last)
}
