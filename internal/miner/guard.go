package miner

import (
	"context"
	"errors"
	"fmt"

	"github.com/nicompute/nicompute/internal/market"
)

// Network. A lease must reach the internet and nothing else of the host's:
// not the host itself, its private networks, link-local addresses (the
// cloud metadata service) or other tenants. The NetworkGuard enforces that
// with the host's packet filter. The miner checks the guard before it
// reserves anything and confines the network after a lease's container is
// created — so that a miner releasing the filter at the same moment sees
// the network in use — and before it starts; it repairs the filter at
// every reconciliation while leases live and releases it once none is
// left. When the filter cannot be installed (not root, no iptables, a
// remote engine) the miner refuses to allocate, unless the operator set
// AllowUnconfinedLeases.

// Outcomes of the last guard call (leaseManager.confined).
const (
	confineUnknown int32 = iota
	confineOK
	confineFailed
)

// errUnconfined is what a renter reads when the miner refuses a lease for
// want of a packet filter.
var errUnconfined = market.Errorf(market.EUNAVAILABLE, "this miner cannot keep leases off its host and private networks right now, so it accepts no lease")

// confine runs op (the guard's Check or Confine) and returns nil when the
// filter works or the operator allowed unconfined leases, logging changes
// of state once. An error of the runtime (a *market.Error: the engine is
// down, the lease network cannot be read) is returned as it is: the
// filter is not at fault.
func (m *leaseManager) confine(ctx context.Context, op func(context.Context) error) error {
	err := op(ctx)
	var me *market.Error
	if errors.As(err, &me) {
		if me.Code == market.EUNAVAILABLE {
			m.setRuntimeUp(false, err)
		}
		return err
	}
	if err == nil {
		if m.confined.Swap(confineOK) == confineFailed {
			m.log.Info("lease network packet filter works again; allocations resume")
		}
		return nil
	}
	if m.confined.Swap(confineFailed) != confineFailed {
		m.logUnconfined(err)
	}
	if m.cfg.AllowUnconfinedLeases {
		return nil
	}
	return fmt.Errorf("%w (%w)", errUnconfined, err)
}

func (m *leaseManager) logUnconfined(err error) {
	if m.cfg.AllowUnconfinedLeases {
		m.log.Warn("lease network NOT confined: renters can reach this host, its private networks and the cloud metadata service; the operator allowed it",
			"err", err)
		return
	}
	m.log.Error("lease network cannot be confined; allocations are refused until it can",
		"err", err, "remedy", "run the miner as root on the Docker engine's host, with iptables")
}

// releaseNetwork removes the packet filter when this miner has no live
// lease (the guard keeps it while any miner's container is on the network).
// A miner whose filter does not work has none to remove.
func (m *leaseManager) releaseNetwork(ctx context.Context) {
	if m.confined.Load() == confineFailed {
		return
	}
	live, err := m.store.LiveLeases(ctx)
	if err != nil || len(live) > 0 {
		return
	}
	if err := m.guard.Release(ctx); err != nil {
		m.log.Warn("remove the lease network packet filter", "err", err)
	}
}

// guardNetwork repairs the filter while leases live and releases it once
// none is left; reconciliation runs it.
func (m *leaseManager) guardNetwork(ctx context.Context, live int) {
	if live == 0 {
		m.releaseNetwork(ctx)
		return
	}
	_ = m.confine(ctx, m.guard.Confine) // logged; leases already run
}

// logEnforcement logs, at start, how leases are held to their disk size
// and network.
func (m *leaseManager) logEnforcement(ctx context.Context) {
	e := m.enforcement(ctx)
	switch e.Disk {
	case market.DiskByEngine:
		m.log.Info("lease disk: the storage driver holds each lease's writable layer to its size (writes past it fail with ENOSPC); the miner measures what leases write outside it and pauses one past its size",
			"every", m.cfg.DiskCheckInterval, "default_disk_bytes", m.cfg.DefaultDisk, "reserve_bytes", e.DiskReserveBytes)
	default:
		m.log.Warn("lease disk: the storage driver cannot hold a lease to its size; the miner measures each lease and pauses one past its size",
			"every", m.cfg.DiskCheckInterval, "default_disk_bytes", m.cfg.DefaultDisk, "reserve_bytes", e.DiskReserveBytes)
	}
	if e.Network == market.NetworkFiltered {
		m.log.Info("lease network: leases reach the internet only; the host packet filter refuses the host, private, link-local and multicast addresses",
			"filter", e.NetworkDetail, "allowed", e.AllowedRanges)
	}
	// A failing filter was logged by confine.
}

// enforcement reports how leases are held to their limits now.
func (m *leaseManager) enforcement(ctx context.Context) *market.Enforcement {
	e := &market.Enforcement{Disk: market.DiskByMiner, DiskCheckSeconds: m.cfg.DiskCheckInterval.Seconds()}
	if q, err := m.rt.DiskQuota(ctx); err == nil && q {
		e.Disk = market.DiskByEngine // files outside the layer are measured still
	}
	if disk, err := m.specs.Disk(ctx); err == nil {
		e.DiskReserveBytes = market.DiskReserve(disk, m.cfg.Reserve)
	}
	switch err := m.confine(ctx, m.guard.Check); {
	case errors.Is(err, errUnconfined):
		e.Network, e.NetworkDetail = market.NetworkUnavailable, "the host packet filter cannot be installed; no lease is allocated"
	case err != nil:
		e.Network, e.NetworkDetail = market.NetworkUnavailable, "the container engine cannot be reached"
	case m.confined.Load() == confineFailed:
		e.Network, e.NetworkDetail = market.NetworkUnfiltered, "the host packet filter cannot be installed; the operator rents leases anyway"
	default:
		e.Network = market.NetworkFiltered
		e.NetworkDetail, e.AllowedRanges = m.guard.Describe(ctx)
	}
	return e
}
