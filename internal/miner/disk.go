package miner

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"github.com/nicompute/nicompute/internal/market"
)

// Disk. Every lease has a disk size (its request's hard_disk, or
// Config.DefaultDisk). Where the storage driver can hold a container to a
// size (overlay2 on xfs with pquota, btrfs, zfs), the runtime passes it to
// the engine and writes past it fail with ENOSPC inside the lease. Where
// it cannot (fuse-overlayfs, vfs, overlay2 on ext4) — and, for the files a
// lease writes outside its writable layer, everywhere — the miner measures
// every DiskCheckInterval what each lease holds, as the runtime reports it
// (see Runtime.DiskUsage), and pauses —
// freezes — a running lease found past its size: its processes stop
// writing at once, nothing is deleted, and the renter reads why in the
// lease's status. Pausing rather than stopping keeps the lease from being
// restarted by reconciliation, loses no data and is undone by the renter's
// own resume action; after a resume the lease may not grow past what it
// held when paused until it is back under its size, so the renter can
// delete files but not write more. Between two measurements a lease can
// write past its size (at most what the disk writes in DiskCheckInterval),
// which the disk reserve absorbs. A validator's test lease counts its
// worker cache as written (cache.go).

// diskWatch remembers the last measurement and the leases paused for
// their disk. It is not persisted: after a restart the next measurement
// finds the same leases past their size.
type diskWatch struct {
	// mu protects the following.
	mu   sync.Mutex
	used map[string]int64 // bytes written, by lease, as last measured
	over map[string]int64 // leases paused for their disk: bytes held then
}

func newDiskWatch() *diskWatch {
	return &diskWatch{used: map[string]int64{}, over: map[string]int64{}}
}

// usage returns a copy of the last measurement.
func (d *diskWatch) usage() map[string]int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.used)
}

func (d *diskWatch) setUsage(u map[string]int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.used = u
}

// limit is what lease id may hold now: its size, or, once paused for its
// disk and resumed, what it held when paused, until it is back under its
// size.
func (d *diskWatch) limit(id string, size, used int64) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	held, ok := d.over[id]
	if !ok {
		return size
	}
	if used <= size {
		delete(d.over, id)
		return size
	}
	return max(size, held)
}

// paused records that lease id was paused holding used bytes; a lease
// paused again keeps its first allowance.
func (d *diskWatch) paused(id string, used int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.over[id]; !ok {
		d.over[id] = used
	}
}

// pausedFor reports what lease id held when it was paused for its disk.
func (d *diskWatch) pausedFor(id string) (int64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	used, ok := d.over[id]
	return used, ok
}

func (d *diskWatch) forget(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.over, id)
	delete(d.used, id)
}

// watchDisk measures the leases every DiskCheckInterval until ctx ends.
func (m *leaseManager) watchDisk(ctx context.Context) {
	every(ctx, m.cfg.DiskCheckInterval, func(ctx context.Context) { m.checkDisk(ctx) })
}

// checkDisk measures every lease and every worker cache, and pauses the
// active leases past their size, a test lease's cache counting toward it
// (cache.go). It runs where the engine holds leases to their size too: a
// lease also writes outside its writable layer (Docker keeps its
// /etc/hosts, /etc/resolv.conf and /etc/hostname in the engine's own
// directory), which no storage quota bounds and the runtime's measure
// counts. It returns the ids of the leases it paused.
func (m *leaseManager) checkDisk(ctx context.Context) []string {
	caches, err := m.cache.check(ctx, m.store.LiveLeases)
	if err != nil {
		m.log.Warn("measure worker caches", "err", err)
	}
	usage, err := m.rt.DiskUsage(ctx)
	if err != nil {
		m.log.Debug("measure lease disks", "err", err)
		return nil
	}
	if usage == nil {
		usage = map[string]int64{}
	}
	for id, b := range caches {
		usage[id] += b
	}
	m.disk.setUsage(usage)
	live, err := m.store.LiveLeases(ctx)
	if err != nil {
		m.log.Warn("read leases for the disk check", "err", err)
		return nil
	}
	var paused []string
	for _, l := range live {
		size, used := l.Resources.DiskBytes, usage[l.ID]
		if l.State != market.LeaseActive || size <= 0 || m.isInflight(l.ID) {
			continue
		}
		if _, ok := usage[l.ID]; !ok {
			continue // not measured (the engine holds it to its size)
		}
		if used <= m.disk.limit(l.ID, size, used) {
			continue
		}
		if m.pauseForDisk(ctx, l.ID, used) {
			paused = append(paused, l.ID)
		}
	}
	return paused
}

// pauseForDisk pauses lease id, found holding used bytes, under its
// operation lock; it reports whether it paused it.
func (m *leaseManager) pauseForDisk(ctx context.Context, id string, used int64) bool {
	unlock := m.lock(id)
	defer unlock()
	l, err := m.store.Lease(ctx, id)
	if err != nil || l.State != market.LeaseActive {
		return false
	}
	c, err := m.rt.Inspect(ctx, id)
	if err != nil {
		m.log.Warn("inspect lease past its disk size", "lease", id, "err", err)
		return false
	}
	if c.State != ContainerRunning {
		m.disk.paused(id, used) // paused or stopped already: nothing writes
		return false
	}
	if err := m.rt.Pause(ctx, id); err != nil {
		m.log.Warn("pause lease past its disk size", "lease", id, "err", err)
		return false
	}
	m.disk.paused(id, used)
	m.metrics.diskPaused()
	m.log.Warn("lease wrote past its disk size; paused", "lease", id, "owner", l.Owner.Hotkey,
		"used_bytes", used, "disk_bytes", l.Resources.DiskBytes)
	return true
}

// diskReason is what a renter reads about lease l, paused for its disk,
// or "".
func (m *leaseManager) diskReason(l market.Lease) string {
	// A pause for the disk records its reason under the lease's operation
	// lock, after the container is paused: wait for it, or a status read
	// in between sees the pause without its reason.
	unlock := m.lock(l.ID)
	used, ok := m.disk.pausedFor(l.ID)
	unlock()
	if !ok {
		return ""
	}
	if used == market.DiskUnmeasured {
		return "paused by the miner: the lease's files could not be measured (a directory tree too deep to walk); " +
			"resume it and flatten or delete that tree, or deallocate it"
	}
	return fmt.Sprintf("paused by the miner: the lease's files took %s, more than its disk size of %s; "+
		"resume it and delete files (until it is back under its size it may not grow), or deallocate it",
		market.FormatBytes(used), market.FormatBytes(l.Resources.DiskBytes))
}
