package miner

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
)

// TestDiskPausedPastSize: where the engine cannot hold a lease to its
// size, a lease found past it is paused, its renter reads why, may resume
// it and delete files but not grow, and is held to its size again once
// back under it. A lease that asks for no disk gets the default size.
func TestDiskPausedPastSize(t *testing.T) {
	w := newWorld(t)
	tm := startTestMiner(t, w, func(c *Config, _ *Deps) { c.DefaultDisk = 2 << 30 })
	ctx := context.Background()
	r := newRenter(t)
	_, key := sshPub(t)
	out, st := tm.call(t, nil, allocReq(r, key, market.Requirement{DiskBytes: 64 << 20}))
	if st != 200 || !out.Status {
		t.Fatalf("allocate: %d %+v", st, out)
	}
	id := out.LeaseID
	m := tm.svc.leases
	state := func() string { return tm.rt.container(id).State }

	tm.rt.write(id, 64<<20)
	if p := m.checkDisk(ctx); len(p) != 0 || state() != ContainerRunning {
		t.Fatalf("lease at exactly its size paused: %v, %s", p, state())
	}
	tm.rt.write(id, 70<<20)
	if p := m.checkDisk(ctx); len(p) != 1 || state() != ContainerPaused {
		t.Fatalf("lease past its size: paused %v, state %s", p, state())
	}
	out, st = tm.call(t, nil, statusReq(r))
	if st != 200 || out.State != ContainerPaused || !strings.Contains(out.Error, "more than its disk size of 64.0 MiB") {
		t.Fatalf("status of a lease paused for its disk: %d %+v", st, out)
	}

	// Resumed, it may delete but not grow.
	if out, st := tm.call(t, nil, actionReq(r, "resume", "")); st != 200 || !out.Status {
		t.Fatalf("resume: %d %+v", st, out)
	}
	tm.rt.write(id, 68<<20)
	if p := m.checkDisk(ctx); len(p) != 0 || state() != ContainerRunning {
		t.Fatalf("resumed lease deleting files paused again: %v, %s", p, state())
	}
	tm.rt.write(id, 71<<20)
	if p := m.checkDisk(ctx); len(p) != 1 || state() != ContainerPaused {
		t.Fatalf("resumed lease growing: paused %v, state %s", p, state())
	}
	tm.call(t, nil, actionReq(r, "resume", ""))
	tm.rt.write(id, 10<<20)
	m.checkDisk(ctx)
	tm.rt.write(id, 65<<20) // back under once: its size applies again
	if p := m.checkDisk(ctx); len(p) != 1 {
		t.Fatalf("lease past its size after getting under it: paused %v", p)
	}
	if out, st := tm.call(t, nil, deallocReq(r)); st != 200 || !out.Status {
		t.Fatalf("deallocate a paused lease: %d %+v", st, out)
	}

	// No disk asked: the default size.
	r2 := newRenter(t)
	out, st = tm.call(t, nil, allocReq(r2, key, market.Requirement{}))
	if st != 200 || !out.Status {
		t.Fatalf("allocate: %d %+v", st, out)
	}
	if got := tm.rt.container(out.LeaseID).spec.Resources.DiskBytes; got != 2<<30 {
		t.Fatalf("lease without a disk requirement has %d bytes, want the default", got)
	}
	tm.rt.write(out.LeaseID, 3<<30)
	if p := m.checkDisk(ctx); len(p) != 1 {
		t.Fatalf("lease past the default size not paused: %v", p)
	}

	// Where the engine holds the writable layer to its size, the miner
	// still measures: a lease also writes outside its layer (Docker's
	// /etc/hosts), which the runtime's measure counts and no quota bounds.
	tm.rt.mu.Lock()
	tm.rt.quota = true
	tm.rt.mu.Unlock()
	tm.call(t, nil, actionReq(r2, "resume", ""))
	tm.rt.write(out.LeaseID, 1<<30)
	if p := m.checkDisk(ctx); len(p) != 0 {
		t.Fatalf("lease under its size paused on a quota driver: %v", p)
	}
	tm.rt.write(out.LeaseID, 5<<30)
	if p := m.checkDisk(ctx); len(p) != 1 {
		t.Fatalf("lease past its size on a quota driver not paused: %v", p)
	}

	// A lease whose files the runtime cannot measure (a tree too deep to
	// walk) is held past any size, and its renter reads why.
	tm.call(t, nil, actionReq(r2, "resume", ""))
	tm.rt.write(out.LeaseID, 0)
	m.checkDisk(ctx)
	tm.rt.write(out.LeaseID, market.DiskUnmeasured)
	if p := m.checkDisk(ctx); len(p) != 1 {
		t.Fatalf("unmeasurable lease not paused: %v", p)
	}
	if out, st := tm.call(t, nil, statusReq(r2)); st != 200 || !strings.Contains(out.Error, "could not be measured") {
		t.Fatalf("status of a lease paused as unmeasurable: %d %+v", st, out)
	}
}

// TestDiskFreeSpace: check and allocate count the free space of the
// filesystem holding the containers less the reserve, not its size, and a
// lease's unwritten size stays promised to it.
func TestDiskFreeSpace(t *testing.T) {
	w := newWorld(t)
	tm := startTestMiner(t, w, nil) // 80 GiB free of 100, 10 % reserved: 70 GiB
	r := newRenter(t)
	_, key := sshPub(t)
	check := func(disk int64) protocol.Output {
		t.Helper()
		a := allocReq(r, key, market.Requirement{DiskBytes: disk})
		a.Checking = true
		out, st := tm.call(t, nil, a)
		if st != 200 {
			t.Fatalf("check: %d %+v", st, out)
		}
		return out
	}
	if out := check(71 << 30); out.Status || !strings.Contains(out.Error, "70.0 GiB free") {
		t.Fatalf("check of 71 GiB: %+v, want a no naming 70 GiB free", out)
	}
	if out := check(70 << 30); !out.Status {
		t.Fatalf("check of 70 GiB: %+v", out)
	}
	out, st := tm.call(t, nil, allocReq(r, key, market.Requirement{DiskBytes: 50 << 30}))
	if st != 200 || !out.Status {
		t.Fatalf("allocate: %d %+v", st, out)
	}
	free, err := tm.svc.Free(context.Background())
	if err != nil || free.DiskBytes != 20<<30 {
		t.Fatalf("free disk %v, %v; want 20 GiB", free.DiskBytes, err)
	}
	// Once the lease has written 30 GiB (which the free space no longer
	// holds — the fake's does not move), only its unwritten 20 GiB stay
	// promised.
	tm.rt.write(out.LeaseID, 30<<30)
	tm.svc.leases.checkDisk(context.Background())
	if free, _ := tm.svc.Free(context.Background()); free.DiskBytes != 50<<30 {
		t.Fatalf("free disk %d GiB after the lease wrote 30 GiB of a fixed free space, want 50", free.DiskBytes>>30)
	}
	specs := tm.specs(t)
	if e := specs.Enforcement; e == nil || e.Disk != market.DiskByMiner || e.DiskReserveBytes != 10<<30 || e.DiskCheckSeconds != DefaultDiskCheck.Seconds() {
		t.Fatalf("specs enforcement %+v", specs.Enforcement)
	}
}

// TestNetworkGuard: a miner whose packet filter cannot be installed
// refuses to allocate, with a reason and nothing left behind, unless the
// operator opted out; with a working filter it confines the network
// before the lease starts and releases it when the last lease ends.
func TestNetworkGuard(t *testing.T) {
	w := newWorld(t)
	tm := startTestMiner(t, w, nil)
	r := newRenter(t)
	_, key := sshPub(t)

	if e := tm.specs(t).Enforcement; e == nil || e.Network != market.NetworkFiltered || e.NetworkDetail != "fake packet filter" || len(e.AllowedRanges) != 1 {
		t.Fatalf("specs enforcement %+v", e)
	}
	out, st := tm.call(t, nil, allocReq(r, key, market.Requirement{}))
	if st != 200 || !out.Status {
		t.Fatalf("allocate: %d %+v", st, out)
	}
	if installed, confines, _ := tm.guard.state(); !installed || confines == 0 {
		t.Fatalf("filter installed %v after %d confines", installed, confines)
	}
	if out, st := tm.call(t, nil, deallocReq(r)); st != 200 || !out.Status {
		t.Fatalf("deallocate: %d %+v", st, out)
	}
	if installed, _, releases := tm.guard.state(); installed || releases == 0 {
		t.Fatalf("filter still installed after the last lease ended (%d releases)", releases)
	}

	tm.guard.set(errors.New("egress: the lease packet filter needs root"))
	out, st = tm.call(t, nil, allocReq(r, key, market.Requirement{}))
	if st != http.StatusServiceUnavailable || out.Status || !strings.Contains(out.Error, "cannot keep leases off its host") {
		t.Fatalf("allocate without a packet filter: %d %+v", st, out)
	}
	if strings.Contains(out.Error, "root") {
		t.Errorf("renter sees the internal reason: %q", out.Error)
	}
	// "Is it free?" says no while an allocation would be refused.
	chk := allocReq(r, key, market.Requirement{})
	chk.Checking = true
	if out, st := tm.call(t, nil, chk); out.Status || !strings.Contains(out.Error, "cannot keep leases off its host") {
		t.Fatalf("check without a packet filter: %d %+v", st, out)
	}
	if n := tm.rt.count(); n != 0 || len(tm.live(t)) != 0 {
		t.Fatalf("refused allocation left %d containers, leases %s", n, describe(tm.live(t)))
	}
	tm.svc.specs.refreshEnforcement(context.Background())
	if e := tm.specs(t).Enforcement; e.Network != market.NetworkUnavailable {
		t.Fatalf("specs network %q, want %q", e.Network, market.NetworkUnavailable)
	}

	// The filter breaks between the check and the start: rolled back.
	tm.guard.set(nil)
	tm.rt.createHook = func(ContainerSpec) error {
		tm.guard.set(errors.New("iptables: gone"))
		return nil
	}
	if out, st := tm.call(t, nil, allocReq(r, key, market.Requirement{})); st != http.StatusServiceUnavailable || out.Status {
		t.Fatalf("allocate with the filter failing after create: %d %+v", st, out)
	}
	if n := tm.rt.count(); n != 0 {
		t.Fatalf("%d containers left", n)
	}
	tm.rt.createHook = nil

	// The operator accepts unconfined leases.
	tm2 := startTestMiner(t, w, func(c *Config, _ *Deps) {
		c.AllowUnconfinedLeases = true
		c.SSHPorts = PortRange{First: 21000, Last: 21099}
	})
	tm2.guard.set(errors.New("egress: no iptables"))
	tm2.svc.specs.refreshEnforcement(context.Background())
	if out, st := tm2.call(t, nil, allocReq(r, key, market.Requirement{})); st != 200 || !out.Status {
		t.Fatalf("allocate with unconfined leases allowed: %d %+v", st, out)
	}
	if e := tm2.specs(t).Enforcement; e.Network != market.NetworkUnfiltered {
		t.Fatalf("specs network %q, want %q", e.Network, market.NetworkUnfiltered)
	}
}

// specs asks the miner's Specs synapse.
func (tm *testMiner) specs(tb testing.TB) market.Specs {
	tb.Helper()
	var out protocol.Specs
	if _, err := tm.d.Call(context.Background(), tm.target(), protocol.SpecsName, protocol.Specs{}, &out, 5*time.Second); err != nil {
		tb.Fatal(err)
	}
	s, err := protocol.DecodeSpecs(out.SpecsOutput)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
