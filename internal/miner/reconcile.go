package miner

import (
	"context"
	"fmt"

	"github.com/nicompute/nicompute/internal/market"
)

// reconcile makes the store and the runtime agree. It runs at start (when
// nothing is in flight) and then periodically:
//
//   - a lease still "creating" that this process is not creating was
//     interrupted (the miner died mid-allocation, before answering): its
//     container is removed and the lease ends as interrupted;
//   - an active lease whose container is gone ends as container_missing;
//     one whose container stopped is started again;
//   - a container whose lease has ended is removed; one whose lease the
//     store does not know is removed once older than OrphanGrace;
//   - the lease network's packet filter is repaired while leases live and
//     removed once none is left (see guard.go).
//
// Every decision about a lease is taken again under the lease's operation
// lock against a fresh read, so a lease that finished creating or ended
// meanwhile is left alone. In dry-run mode nothing is changed; the
// decisions are logged. Errors: the runtime or store could not be read.
func (m *leaseManager) reconcile(ctx context.Context) error {
	m.recMu.Lock()
	defer m.recMu.Unlock()
	containers, err := m.rt.List(ctx)
	if err != nil {
		m.setRuntimeUp(false, err)
		return fmt.Errorf("list containers: %w", err)
	}
	m.setRuntimeUp(true, nil)
	// Read leases after listing containers: a container's lease is
	// inserted before the container is created, so every listed container
	// of a live lease finds it here.
	live, err := m.store.LiveLeases(ctx)
	if err != nil {
		return fmt.Errorf("read leases: %w", err)
	}
	byLease := make(map[string]Container, len(containers))
	for _, c := range containers {
		byLease[c.LeaseID] = c
	}
	isLive := make(map[string]bool, len(live))
	for _, l := range live {
		isLive[l.ID] = true
		if m.isInflight(l.ID) {
			continue
		}
		c, has := byLease[l.ID]
		if l.State == market.LeaseActive && has && c.State != ContainerExited && c.State != ContainerCreated && c.State != ContainerDead {
			continue // the usual case: nothing to do
		}
		m.reconcileLease(ctx, l.ID)
	}
	for _, c := range containers {
		if isLive[c.LeaseID] {
			continue
		}
		m.reconcileOrphan(ctx, c)
	}
	m.reconciled.Store(true)
	if !m.cfg.ReconcileDryRun {
		m.guardNetwork(ctx, len(live))
	}
	return nil
}

// reconcileLease settles one live lease that looked wrong in the snapshot.
func (m *leaseManager) reconcileLease(ctx context.Context, id string) {
	unlock := m.lock(id)
	defer unlock()
	if m.isInflight(id) {
		return
	}
	l, err := m.store.Lease(ctx, id)
	if err != nil || !l.State.Live() {
		return
	}
	dry := m.cfg.ReconcileDryRun
	if l.State == market.LeaseCreating {
		m.log.Warn("lease was interrupted while being created; rolling it back", "lease", id, "owner", l.Owner.Hotkey, "dry_run", dry)
		if dry {
			return
		}
		if err := m.rt.Remove(ctx, id); err != nil {
			m.log.Warn("remove container of interrupted lease", "lease", id, "err", err)
			return
		}
		if _, err := m.store.EndLease(ctx, id, market.EndInterrupted, m.cfg.Now()); err != nil {
			m.log.Error("end interrupted lease", "lease", id, "err", err)
		}
		m.metrics.leaseEnded(market.EndInterrupted)
		return
	}
	c, err := m.rt.Inspect(ctx, id)
	switch {
	case market.ErrorCode(err) == market.ENOTFOUND:
		m.log.Warn("container of active lease is gone; ending the lease", "lease", id, "owner", l.Owner.Hotkey, "dry_run", dry)
		if dry {
			return
		}
		if _, err := m.store.EndLease(ctx, id, market.EndContainerMissing, m.cfg.Now()); err != nil {
			m.log.Error("end lease without container", "lease", id, "err", err)
			return
		}
		m.metrics.leaseEnded(market.EndContainerMissing)
	case err != nil:
		m.log.Warn("inspect container of lease", "lease", id, "err", err)
	case c.State == ContainerExited || c.State == ContainerCreated || c.State == ContainerDead:
		m.log.Warn("container of active lease is not running; starting it", "lease", id, "state", c.State, "dry_run", dry)
		if dry {
			return
		}
		if err := m.rt.Start(ctx, id); err != nil {
			m.log.Warn("start container of lease", "lease", id, "err", err)
		}
	}
}

// reconcileOrphan removes a container no live lease owns.
func (m *leaseManager) reconcileOrphan(ctx context.Context, c Container) {
	unlock := m.lock(c.LeaseID)
	defer unlock()
	l, err := m.store.Lease(ctx, c.LeaseID)
	switch {
	case err == nil && l.State.Live():
		return // created meanwhile
	case err == nil:
		m.log.Warn("removing container of ended lease", "lease", c.LeaseID, "container", shortID(c.ID), "ended", l.EndReason, "dry_run", m.cfg.ReconcileDryRun)
	case market.ErrorCode(err) == market.ENOTFOUND:
		if age := m.cfg.Now().Sub(c.Created); age < m.cfg.OrphanGrace {
			m.log.Debug("container of unknown lease is young; leaving it for now", "lease", c.LeaseID, "age", age)
			return
		}
		m.log.Warn("removing container of unknown lease", "lease", c.LeaseID, "container", shortID(c.ID), "dry_run", m.cfg.ReconcileDryRun)
	default:
		m.log.Warn("read lease of container", "lease", c.LeaseID, "err", err)
		return
	}
	if m.cfg.ReconcileDryRun {
		return
	}
	if err := m.rt.Remove(ctx, c.LeaseID); err != nil {
		m.log.Warn("remove orphan container", "lease", c.LeaseID, "err", err)
	}
}

func (m *leaseManager) isInflight(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inflight[id]
}

// setRuntimeUp records the engine's state, logging transitions.
func (m *leaseManager) setRuntimeUp(up bool, err error) {
	if m.runtimeUp.Swap(up) == up {
		return
	}
	if up {
		m.log.Info("container runtime reachable")
	} else {
		m.log.Warn("container runtime unreachable; allocations are refused until it returns", "err", err)
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
