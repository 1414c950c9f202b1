package axon

import (
	"errors"
	"slices"
	"sync"
	"time"
)

// MaxNonceSkew is how far ahead of the axon's clock a request's nonce may
// be. Dendrites sign with their wall clock in ns (Bittensor's
// time.time_ns(), nicompute's time.Now), so only clock skew puts a nonce in
// the future; 5 s is beyond what NTP-synchronised clocks drift, and it is
// independent of the request's timeout so that nobody can sign a nonce that
// stays ahead of every honest one for minutes.
const MaxNonceSkew = 5 * time.Second

// DefaultMaxNonceAge bounds how old a request's nonce may be, whatever the
// timeout the request names. Bittensor's axon allows 4 s + the request's
// timeout, and the timeout header is not covered by the signature, so
// anyone holding a signed request could stretch that to 4 s + MaxTimeout
// (124 s) by rewriting one header — long enough to deliver a captured
// request after the axon restarted and forgot its nonces. Dendrites stamp
// the nonce just before sending (Bittensor's preprocess_synapse_for_request,
// nicompute's Call), so an honest nonce is only as old as the network delay
// plus clock skew, except in one case: Bittensor's dendrite shares one
// aiohttp session (at most 100 connections) across a broadcast, so when a
// validator queries more axons at once than that, the rest wait for a
// connection with their nonces already stamped, for at most the broadcast's
// timeout — 12 s by default (SN27's register_api broadcasts its "is it
// free?" checks that way). 4 s + 12 s keeps those requests and refuses
// anything older.
const DefaultMaxNonceAge = time.Duration(allowedDelta) + 12*time.Second

var (
	errNonceReplayed  = errors.New("nonce is not newer than the last one processed for this dendrite")
	errNonceStale     = errors.New("nonce is too old")
	errNonceFuture    = errors.New("nonce is too far in the future")
	errNonceStoreFull = errors.New("too many dendrite hotkeys seen recently")
)

// checkFresh applies the freshness window to a nonce (ns since the epoch):
// it must be newer than now − min(4 s + timeout, maxAge) — Bittensor's rule
// for a dendrite's first nonce, bounded independently of the timeout the
// request names (see DefaultMaxNonceAge) — and at most MaxNonceSkew ahead
// of now. Unlike the SDK, every request is checked, whatever its dendrite
// version and whether or not a nonce is stored: with the window always
// applied, forgetting a stored nonce once it has aged out of the window can
// never let its request be replayed.
func checkFresh(nonce int64, now time.Time, timeout, maxAge time.Duration) error {
	n := now.UnixNano()
	age := min(time.Duration(allowedDelta)+timeout, maxAge)
	if nonce <= n-int64(age) {
		return errNonceStale
	}
	if nonce > n+int64(MaxNonceSkew) {
		return errNonceFuture
	}
	return nil
}

// minPurgeInterval bounds how often a request from a hotkey the store has
// no room for may trigger a full purge.
const minPurgeInterval = time.Second

// nonceStore remembers the last nonce accepted from each endpoint (dendrite
// hotkey, uuid) so that each endpoint's nonces strictly increase. Only
// requests that passed verification and the blacklist are stored.
//
// It is bounded three ways, and every bound is enforced per hotkey, so that
// no caller's requests can make the store refuse another caller's:
//   - entries whose nonce has aged past the longest freshness window are
//     dropped (checkFresh refuses their requests anyway);
//   - a hotkey keeps at most perHotkey uuids: beyond, its entries with the
//     oldest nonces are evicted and its own floor rises to the newest of
//     them, so that no evicted request can be replayed while still fresh;
//   - the store's cost, one per uuid and one per hotkey with none, is at
//     most capacity: beyond, the hotkeys holding the most uuids are trimmed
//     to a common level (again raising only their own floors) until the
//     cost is at most 7/8 of capacity.
//
// A floor is one of the hotkey's own earlier nonces, so it never refuses a
// request that hotkey signed after its evicted ones. The one refusal that
// affects others: a hotkey not yet stored is refused (errNonceStoreFull)
// while 7/8 of capacity distinct hotkeys, all still within the freshness
// window, are stored, which takes that many hotkeys passing the blacklist
// within the freshness window (MaxNonceAge).
type nonceStore struct {
	retention time.Duration // longest freshness window plus a margin
	capacity  int
	perHotkey int

	// mu protects the fields below.
	mu        sync.Mutex
	hotkeys   map[string]*hotkeyNonces
	cost      int // Σ max(1, len(last)) over hotkeys
	lastPurge time.Time
}

// hotkeyNonces is what the store remembers of one dendrite hotkey.
type hotkeyNonces struct {
	last  map[string]int64 // uuid → last nonce accepted
	floor int64            // nonces ≤ floor are refused for uuids not in last
}

func (h *hotkeyNonces) cost() int { return max(1, len(h.last)) }

// expire drops the entries whose nonce is ≤ cutoff.
func (h *hotkeyNonces) expire(cutoff int64) {
	for u, n := range h.last {
		if n <= cutoff {
			delete(h.last, u)
		}
	}
}

// trim evicts the entries with the oldest nonces until at most keep (≥ 1)
// remain, raising floor to the newest evicted nonce.
func (h *hotkeyNonces) trim(keep int) {
	if len(h.last) <= keep {
		return
	}
	nonces := make([]int64, 0, len(h.last))
	for _, n := range h.last {
		nonces = append(nonces, n)
	}
	slices.Sort(nonces)
	floor := nonces[len(nonces)-keep-1]
	for u, n := range h.last {
		if n <= floor {
			delete(h.last, u)
		}
	}
	h.floor = max(h.floor, floor)
}

func newNonceStore(retention time.Duration, capacity, perHotkey int) *nonceStore {
	return &nonceStore{
		retention: retention,
		capacity:  max(capacity, 1),
		perHotkey: max(perHotkey, 1),
		hotkeys:   make(map[string]*hotkeyNonces),
	}
}

// target is the cost a trim brings the store down to, and the number of
// hotkeys it may hold: with at most that many, trimming every hotkey to one
// uuid always reaches it.
func (s *nonceStore) target() int { return max(s.capacity-s.capacity/8, 1) }

// check reports whether nonce would be accepted for (hotkey, uuid), without
// storing it; commit decides atomically.
func (s *nonceStore) check(hotkey, uuid string, nonce int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkLocked(hotkey, uuid, nonce)
}

func (s *nonceStore) checkLocked(hotkey, uuid string, nonce int64) error {
	h := s.hotkeys[hotkey]
	if h == nil {
		return nil
	}
	prev, ok := h.last[uuid]
	if !ok {
		prev = h.floor
	}
	if nonce <= prev {
		return errNonceReplayed
	}
	return nil
}

// commit stores nonce for (hotkey, uuid) if it is newer than the stored
// one. It returns errNonceReplayed if not, and errNonceStoreFull if the
// hotkey is not stored and there is no room for it.
func (s *nonceStore) commit(hotkey, uuid string, nonce int64, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkLocked(hotkey, uuid, nonce); err != nil {
		return err
	}
	h := s.hotkeys[hotkey]
	if h == nil {
		if len(s.hotkeys) >= s.target() && now.Sub(s.lastPurge) >= minPurgeInterval {
			s.purgeLocked(now)
		}
		if len(s.hotkeys) >= s.target() {
			return errNonceStoreFull
		}
		h = &hotkeyNonces{last: make(map[string]int64, 1)}
		s.hotkeys[hotkey] = h
		s.cost += h.cost()
	}
	before := h.cost()
	h.last[uuid] = nonce
	if len(h.last) > s.perHotkey {
		h.expire(s.cutoff(now))
		h.trim(s.perHotkey - s.perHotkey/4)
	}
	s.cost += h.cost() - before
	if s.cost > s.capacity || now.Sub(s.lastPurge) > s.retention {
		s.purgeLocked(now)
		if s.cost > s.capacity {
			s.shrinkLocked(s.target())
		}
	}
	return nil
}

func (s *nonceStore) cutoff(now time.Time) int64 { return now.Add(-s.retention).UnixNano() }

// purgeLocked drops expired entries, and hotkeys left with no entry whose
// floor has expired too.
func (s *nonceStore) purgeLocked(now time.Time) {
	s.lastPurge = now
	cutoff := s.cutoff(now)
	s.cost = 0
	for k, h := range s.hotkeys {
		h.expire(cutoff)
		if len(h.last) == 0 && h.floor <= cutoff {
			delete(s.hotkeys, k)
			continue
		}
		s.cost += h.cost()
	}
}

// shrinkLocked trims the hotkeys holding the most uuids to the highest
// common level at which the store's cost is at most target (at least one
// uuid each).
func (s *nonceStore) shrinkLocked(target int) {
	if len(s.hotkeys) == 0 {
		return
	}
	sizes := make([]int, 0, len(s.hotkeys))
	for _, h := range s.hotkeys {
		sizes = append(sizes, len(h.last))
	}
	costAt := func(level int) int {
		c := 0
		for _, n := range sizes {
			c += max(1, min(n, level))
		}
		return c
	}
	// The highest level in [1, max size] whose cost is ≤ target, or 1.
	lo, hi := 1, slices.Max(sizes)
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if costAt(mid) <= target {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	s.cost = 0
	for _, h := range s.hotkeys {
		h.trim(lo)
		s.cost += h.cost()
	}
}

// size returns the store's cost and the number of hotkeys stored.
func (s *nonceStore) size() (cost, hotkeys int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cost, len(s.hotkeys)
}
