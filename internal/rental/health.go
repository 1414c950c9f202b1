package rental

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nicompute/nicompute/internal/allocator"
	"github.com/nicompute/nicompute/internal/market"
)

// workers bounds the miners the background loops talk to at once.
const workers = 16

// each runs fn on every item, at most workers at a time, and waits.
func each[T any](items []T, fn func(T)) {
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for _, it := range items {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(it)
		}()
	}
	wg.Wait()
}

// every runs fn at once, then each d and whenever wake fires (nil: never),
// until ctx ends.
func every(ctx context.Context, d time.Duration, wake <-chan struct{}, fn func(context.Context)) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		fn(ctx)
		t.Reset(d)
	}
}

// backoff is the wait after attempt n: base doubling, up to limit.
func backoff(base, limit time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// live reads the live allocations; a failure is logged (unless the
// service is stopping) and reads as none.
func (s *Service) live(ctx context.Context) []market.Allocation {
	live, err := s.deps.Store.LiveAllocations(ctx)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("read allocations", "err", err)
	}
	return live
}

// healthLoop checks every running allocation each HealthInterval.
func (s *Service) healthLoop(ctx context.Context) {
	every(ctx, s.cfg.HealthInterval, nil, s.CheckHealth)
}

// CheckHealth checks every running allocation once, now (the health loop
// calls it every HealthInterval).
func (s *Service) CheckHealth(ctx context.Context) {
	var run []market.Allocation
	for _, a := range s.live(ctx) {
		if !a.Orphan && a.State.Running() {
			run = append(run, a)
		}
	}
	each(run, func(a market.Allocation) { s.checkOne(ctx, a.ID) })
}

// checkOne asks the miner about one allocation and tries its SSH port,
// then records what changed.
func (s *Service) checkOne(ctx context.Context, id string) {
	unlock := s.lock(id)
	defer unlock()
	a, err := s.deps.Store.Allocation(ctx, id)
	if err != nil || !a.State.Running() {
		return
	}
	key, err := leaseKey(a)
	if err != nil {
		s.log.Error("health check", "allocation", id, "err", err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ProbeTimeout)
	defer cancel()
	st, err := s.deps.Miners.Status(cctx, s.miner(cctx, a), key)
	now := s.cfg.Now().UTC()
	a.CheckedAt = now
	if allocator.Absent(err) {
		// The miner proves the lease is gone: nothing is left to release.
		a.State, a.EndedAt, a.EndReason = market.AllocEnded, now, market.EndReasonLost
		a.Note = "the miner no longer holds the lease"
		s.save(ctx, a, market.EventEnded)
		s.m.checked(checkLost, "")
		s.log.Warn("allocation lost: the miner holds no lease for it", "allocation", a.ID, "miner", a.MinerHotkey)
		return
	}
	ok, note := true, ""
	switch {
	case err != nil:
		ok, note = false, "the miner does not answer: "+market.ErrorMessage(err)
		var r *allocator.Refusal
		if errors.As(err, &r) {
			note = "the miner refused a status check: " + r.Message
		}
	case !st.Alive:
		ok, note = false, fmt.Sprintf("the miner reports the lease's container %s", st.State)
	case st.State == "paused":
		note = "paused"
	default:
		addr := net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
		if perr := s.deps.Probe(cctx, addr); perr != nil {
			ok, note = false, fmt.Sprintf("the ssh port %s does not answer: %v", addr, perr)
		}
	}
	if err == nil && !st.ExpiresAt.IsZero() {
		a.MinerExpiresAt = st.ExpiresAt
	}
	a.Note = note
	var events []string
	var flipped market.AllocationState
	switch {
	case ok && a.State == market.AllocOffline:
		a.State, a.OfflineSince = market.AllocOnline, time.Time{}
		events, flipped = append(events, market.EventOnline), market.AllocOnline
		s.log.Info("allocation back online", "allocation", a.ID)
	case !ok && a.State == market.AllocOnline:
		a.State, a.OfflineSince = market.AllocOffline, now
		events, flipped = append(events, market.EventOffline), market.AllocOffline
		s.log.Warn("allocation offline", "allocation", a.ID, "why", note)
	case !ok && now.Sub(a.OfflineSince) >= s.cfg.GoneAfter:
		a.State, a.EndReason, a.NextTry = market.AllocEnding, market.EndReasonGone, now
		a.Note = fmt.Sprintf("offline for more than %s (%s); ending it", s.cfg.GoneAfter, note)
		s.log.Warn("allocation gone past the limit; ending it", "allocation", a.ID, "offline_since", a.OfflineSince)
		poke(s.wakeEnd)
	}
	result := checkOK
	if !ok {
		result = checkFailing
	}
	s.m.checked(result, flipped)
	s.save(ctx, a, events...)
}

// save stores a with events of the given types.
func (s *Service) save(ctx context.Context, a market.Allocation, types ...string) {
	events := make([]market.Event, 0, len(types))
	for _, t := range types {
		if !a.Orphan {
			events = append(events, s.event(a, t))
		}
	}
	if err := s.deps.Store.UpdateAllocation(ctx, a, events...); err != nil {
		s.log.Error("record allocation", "allocation", a.ID, "err", err)
		return
	}
	if a.State == market.AllocEnded && !a.Orphan {
		s.m.endedAllocation(a.EndReason)
	}
	if len(events) > 0 {
		poke(s.wakeHook)
	}
}

// endLoop ends allocations whose time is up, sends expiring notices, and
// releases ending allocations when their next try is due.
func (s *Service) endLoop(ctx context.Context) {
	every(ctx, min(time.Second, s.cfg.RetryBase), s.wakeEnd, s.sweep)
}

// sweep is one pass of the end loop.
func (s *Service) sweep(ctx context.Context) {
	now := s.cfg.Now()
	var due []market.Allocation
	for _, a := range s.live(ctx) {
		switch {
		case a.State == market.AllocEnding && !now.Before(a.NextTry):
			due = append(due, a)
		case a.State.Running() && !now.Before(a.ExpiresAt):
			due = append(due, a)
		case a.State.Running() && !a.ExpiringSent && !now.Before(a.ExpiresAt.Add(-s.notice(a))):
			s.expiring(ctx, a.ID)
		}
	}
	each(due, func(a market.Allocation) {
		unlock := s.lock(a.ID)
		defer unlock()
		cur, err := s.deps.Store.Allocation(ctx, a.ID)
		if err != nil {
			return
		}
		now := s.cfg.Now()
		if cur.State.Running() && !now.Before(cur.ExpiresAt) {
			cur.State, cur.EndReason, cur.NextTry = market.AllocEnding, market.EndReasonExpired, now
			s.log.Info("allocation expired; ending it", "allocation", cur.ID)
		}
		if cur.State == market.AllocEnding && !now.Before(cur.NextTry) {
			s.release(ctx, cur)
		}
	})
}

// notice is how long before a's end its expiring event goes out.
func (s *Service) notice(a market.Allocation) time.Duration {
	return min(s.cfg.ExpiringNotice, a.ExpiresAt.Sub(a.CreatedAt)/4)
}

// expiring sends allocation id's expiring notice once.
func (s *Service) expiring(ctx context.Context, id string) {
	unlock := s.lock(id)
	defer unlock()
	a, err := s.deps.Store.Allocation(ctx, id)
	if err != nil || !a.State.Running() || a.ExpiringSent {
		return
	}
	a.ExpiringSent = true
	s.save(ctx, a, market.EventExpiring)
}

// releaseTimeout bounds one deallocation attempt.
func (s *Service) releaseTimeout() time.Duration { return 2 * s.cfg.ProbeTimeout }

// release tells the miner to end ending allocation a (its lock held): a
// confirmation, or proof the lease is gone, ends it; otherwise the next
// try is scheduled with backoff. It returns a as recorded.
func (s *Service) release(ctx context.Context, a market.Allocation) market.Allocation {
	key, err := leaseKey(a)
	if err != nil {
		s.log.Error("release allocation", "allocation", a.ID, "err", err)
		return a
	}
	cctx, cancel := context.WithTimeout(ctx, s.releaseTimeout())
	defer cancel()
	_, gone, err := s.deps.Miners.Deallocate(cctx, s.miner(cctx, a), key)
	now := s.cfg.Now().UTC()
	if err == nil {
		a.State, a.EndedAt = market.AllocEnded, now
		if gone {
			a.Note = "the miner held no lease for it"
		} else {
			a.Note = ""
		}
		s.save(ctx, a, market.EventEnded)
		s.log.Info("allocation ended", "allocation", a.ID, "reason", a.EndReason, "already_gone", gone, "orphan", a.Orphan)
		return a
	}
	a.Tries++
	a.NextTry = now.Add(backoff(s.cfg.RetryBase, s.cfg.RetryMax, a.Tries))
	a.Note = "the miner has not confirmed the end yet (" + market.ErrorMessage(minerErr(err)) + "); retrying"
	s.save(ctx, a)
	s.log.Warn("deallocation not confirmed; retrying", "allocation", a.ID, "tries", a.Tries, "next", a.NextTry, "err", err)
	return a
}

// probeSSH dials addr and reads the first bytes of the server's banner:
// an SSH server answers "SSH-".
func probeSSH(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetReadDeadline(dl)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil {
		return fmt.Errorf("no ssh banner: %w", err)
	}
	if string(b) != "SSH-" {
		return fmt.Errorf("not an ssh server")
	}
	return nil
}
