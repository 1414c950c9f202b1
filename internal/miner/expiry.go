package miner

import (
	"context"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// runtimeRetry is how soon the loop tries again while the runtime is down
// or an expired lease could not be removed.
const runtimeRetry = 5 * time.Second

// run is the lease loop: it ends leases as their time runs out (a timer set
// to the next expiry, woken early when leases change) and reconciles with
// the runtime every SweepInterval, sooner while the runtime is down.
func (m *leaseManager) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var lastSweep time.Time
	if m.reconciled.Load() {
		lastSweep = m.cfg.Now() // New has just reconciled
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-m.poke:
		}
		retry := !m.expire(ctx)
		now := m.cfg.Now()
		if !m.reconciled.Load() || !m.runtimeUp.Load() || now.Sub(lastSweep) >= m.cfg.SweepInterval {
			if err := m.reconcile(ctx); err != nil {
				retry = true
				m.log.Debug("reconcile", "err", err)
			}
			lastSweep = now
			m.metrics.setLeases(ctx, m.store)
		}
		timer.Reset(m.nextWake(ctx, retry))
	}
}

// expire ends every active lease whose time is up. It reports whether all
// of them could be ended.
func (m *leaseManager) expire(ctx context.Context) bool {
	live, err := m.store.LiveLeases(ctx)
	if err != nil {
		m.log.Warn("read leases for expiry", "err", err)
		return false
	}
	ok := true
	for _, l := range live {
		if l.State != market.LeaseActive || !l.Expired(m.cfg.Now()) {
			continue
		}
		if !m.expireOne(ctx, l.ID) {
			ok = false
		}
	}
	return ok
}

func (m *leaseManager) expireOne(ctx context.Context, id string) bool {
	unlock := m.lock(id)
	defer unlock()
	l, err := m.store.Lease(ctx, id)
	if err != nil || l.State != market.LeaseActive || !l.Expired(m.cfg.Now()) {
		return err == nil
	}
	if _, err := m.endLocked(ctx, l, market.EndExpired); err != nil {
		if m.runtimeUp.Load() {
			m.log.Warn("expired lease not ended yet; retrying", "lease", id, "err", err)
		}
		return false
	}
	return true
}

// nextWake is how long the loop sleeps: until the next expiry, at most
// SweepInterval, and at most runtimeRetry when something must be retried.
func (m *leaseManager) nextWake(ctx context.Context, retry bool) time.Duration {
	wait := m.cfg.SweepInterval
	if retry {
		wait = min(wait, runtimeRetry)
	}
	live, err := m.store.LiveLeases(ctx)
	if err != nil {
		return min(wait, runtimeRetry)
	}
	now := m.cfg.Now()
	for _, l := range live {
		if l.State == market.LeaseActive {
			wait = min(wait, max(l.ExpiresAt.Sub(now), 0))
		}
	}
	if retry {
		// An expiry that failed must not spin the loop.
		wait = max(wait, min(time.Second, m.cfg.SweepInterval))
	}
	return wait
}
