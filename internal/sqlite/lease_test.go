package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

func openLeaseStore(tb testing.TB) (*LeaseStore, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "leases.db")
	db, err := Open(context.Background(), path, LeaseSchema)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return NewLeaseStore(db), path
}

func testLease(id string, port int, gpus ...string) market.Lease {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6789, time.UTC)
	return market.Lease{
		ID: id, Owner: market.LeaseOwner{Hotkey: "5Owner", KeyFingerprint: "fp-" + id}, State: market.LeaseCreating,
		Resources: market.Resources{CPUs: 2, MemoryBytes: 1 << 30, DiskBytes: 5 << 30, GPUs: gpus},
		SSHPort:   port, Image: "busybox:latest", Testing: true, Password: true,
		CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour),
	}
}

func wantCode(tb testing.TB, err error, code string) {
	tb.Helper()
	if got := market.ErrorCode(err); got != code {
		tb.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}

// TestLeaseLifecycle walks a lease through creating → active → ended and
// checks every field survives the round trip and a reopen.
func TestLeaseLifecycle(t *testing.T) {
	ctx := context.Background()
	s, path := openLeaseStore(t)
	l := testLease("l1", 4444, "GPU-a", "1")
	if err := s.InsertLease(ctx, l); err != nil {
		t.Fatal(err)
	}
	got, err := s.Lease(ctx, "l1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != l.ID || got.Owner != l.Owner || got.State != market.LeaseCreating || !slices.Equal(got.Resources.GPUs, l.Resources.GPUs) ||
		got.Resources.CPUs != 2 || got.SSHPort != 4444 || got.Image != l.Image || !got.Testing || !got.Password ||
		!got.CreatedAt.Equal(l.CreatedAt) || !got.ExpiresAt.Equal(l.ExpiresAt) || !got.EndedAt.IsZero() {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, l)
	}
	wantCode(t, s.ActivateLease(ctx, "nope"), market.ENOTFOUND)
	if err := s.SetLeaseContainer(ctx, "l1", "c0ffee"); err != nil {
		t.Fatal(err)
	}
	if err := s.ActivateLease(ctx, "l1"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.ActivateLease(ctx, "l1"), market.ECONFLICT)
	wantCode(t, s.SetLeaseContainer(ctx, "l1", "other"), market.ECONFLICT)

	live, err := s.LiveLeases(ctx)
	if err != nil || len(live) != 1 || live[0].State != market.LeaseActive || live[0].ContainerID != "c0ffee" {
		t.Fatalf("live = %+v, %v", live, err)
	}
	end := l.CreatedAt.Add(time.Hour)
	ended, err := s.EndLease(ctx, "l1", market.EndExpired, end)
	if err != nil || ended.State != market.LeaseEnded || ended.EndReason != market.EndExpired || !ended.EndedAt.Equal(end) {
		t.Fatalf("EndLease = %+v, %v", ended, err)
	}
	_, err = s.EndLease(ctx, "l1", market.EndDeallocated, end)
	wantCode(t, err, market.ECONFLICT)
	if live, _ := s.LiveLeases(ctx); len(live) != 0 {
		t.Fatalf("live after end: %+v", live)
	}

	// Reopen: history kept, resources free again.
	db, err := Open(ctx, path, LeaseSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s2 := NewLeaseStore(db)
	all, err := s2.Leases(ctx, 10)
	if err != nil || len(all) != 1 || all[0].State != market.LeaseEnded || !slices.Equal(all[0].Resources.GPUs, []string{"GPU-a", "1"}) {
		t.Fatalf("history = %+v, %v", all, err)
	}
	reuse := testLease("l2", 4444, "GPU-a", "1")
	reuse.Owner = l.Owner
	if err := s2.InsertLease(ctx, reuse); err != nil {
		t.Fatalf("reuse port, owner and gpus of an ended lease: %v", err)
	}
}

// TestLeaseConflicts checks the store refuses double bookings by itself.
func TestLeaseConflicts(t *testing.T) {
	ctx := context.Background()
	s, _ := openLeaseStore(t)
	if err := s.InsertLease(ctx, testLease("l1", 4444, "GPU-a")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		l    market.Lease
		code string
	}{
		{"same id", testLease("l1", 4445), market.ECONFLICT},
		{"same port", testLease("l2", 4444), market.ECONFLICT},
		{"same gpu", testLease("l3", 4446, "GPU-b", "GPU-a"), market.ECONFLICT},
		{"same owner", func() market.Lease { l := testLease("l4", 4447); l.Owner.KeyFingerprint = "fp-l1"; return l }(), market.ECONFLICT},
		{"ended", func() market.Lease { l := testLease("l5", 4448); l.State = market.LeaseEnded; return l }(), market.EINVALID},
		{"invalid", testLease("bad id", 4449), market.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, s.InsertLease(ctx, tc.l), tc.code)
		})
	}
	live, _ := s.LiveLeases(ctx)
	if len(live) != 1 {
		t.Fatalf("refused inserts left rows: %+v", live)
	}
}

// TestLeaseConcurrentInserts races inserts of leases wanting the same GPU
// and port: exactly one wins.
func TestLeaseConcurrentInserts(t *testing.T) {
	ctx := context.Background()
	s, _ := openLeaseStore(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.InsertLease(ctx, testLease(fmt.Sprintf("l%d", i), 5000+i, "GPU-x"))
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if market.ErrorCode(err) != market.ECONFLICT {
				t.Errorf("insert %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d inserts won the same gpu", wins)
	}
}

// TestLeasePortsAndExtend checks that a live lease's extra host ports are
// exclusive (against other extra ports and SSH ports), freed when it ends,
// kept in its record, and that ExtendLease only ever moves expiry later.
func TestLeasePortsAndExtend(t *testing.T) {
	ctx := context.Background()
	s, _ := openLeaseStore(t)
	a := testLease("a", 4444)
	a.Ports = []market.PortMap{{Container: 8888, Host: 5000}, {Container: 6006, Host: 5001}}
	if err := s.InsertLease(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := s.Lease(ctx, "a")
	if err != nil || !slices.Equal(got.Ports, a.Ports) {
		t.Fatalf("ports round trip: %+v, %v", got.Ports, err)
	}
	b := testLease("b", 4445)
	b.Ports = []market.PortMap{{Container: 80, Host: 5001}}
	wantCode(t, s.InsertLease(ctx, b), market.ECONFLICT)
	c := testLease("c", 5000) // an ssh port held as an extra port
	wantCode(t, s.InsertLease(ctx, c), market.ECONFLICT)
	d := testLease("d", 4446)
	d.Ports = []market.PortMap{{Container: 80, Host: 4444}} // an extra port held as an ssh port
	wantCode(t, s.InsertLease(ctx, d), market.ECONFLICT)

	later := a.ExpiresAt.Add(48 * time.Hour)
	if l, err := s.ExtendLease(ctx, "a", later); err != nil || !l.ExpiresAt.Equal(later) {
		t.Fatalf("extend: %+v, %v", l.ExpiresAt, err)
	}
	if l, err := s.ExtendLease(ctx, "a", a.ExpiresAt); err != nil || !l.ExpiresAt.Equal(later) {
		t.Fatalf("an earlier expiry shortened the lease: %v, %v", l.ExpiresAt, err)
	}
	if _, err := s.EndLease(ctx, "a", market.EndDeallocated, a.CreatedAt); err != nil {
		t.Fatal(err)
	}
	_, err = s.ExtendLease(ctx, "a", later.Add(time.Hour))
	wantCode(t, err, market.ECONFLICT)
	_, err = s.ExtendLease(ctx, "zz", later)
	wantCode(t, err, market.ENOTFOUND)
	if err := s.InsertLease(ctx, b); err != nil {
		t.Fatalf("port of an ended lease still held: %v", err)
	}
	if got, _ := s.Lease(ctx, "a"); !slices.Equal(got.Ports, a.Ports) {
		t.Fatalf("an ended lease lost its port record: %+v", got.Ports)
	}
}

// TestLeaseSchemaUpgrade opens a lease store written before extra ports
// existed: its leases read back whole, without ports, and hold their SSH
// port exclusively as before.
func TestLeaseSchemaUpgrade(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "leases.db")
	old := Schema{Name: LeaseSchema.Name, Migrations: LeaseSchema.Migrations[:1]}
	db, err := Open(ctx, path, old)
	if err != nil {
		t.Fatal(err)
	}
	l := testLease("l1", 4444, "GPU-a")
	if _, err := db.SQL().ExecContext(ctx, `INSERT INTO leases (id, owner_hotkey, owner_key, state, gpus, cpus, memory_bytes, disk_bytes, ssh_port,
		image, container_id, testing, password, created_at, expires_at) VALUES (?, ?, ?, 'active', '["GPU-a"]', 2, ?, ?, 4444, ?, 'c1', 1, 1, ?, ?)`,
		l.ID, l.Owner.Hotkey, l.Owner.KeyFingerprint, l.Resources.MemoryBytes, l.Resources.DiskBytes, l.Image, leaseTime(l.CreatedAt), leaseTime(l.ExpiresAt)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = Open(ctx, path, LeaseSchema)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	defer db.Close()
	if v, _ := db.Version(ctx, LeaseSchema.Name); v != len(LeaseSchema.Migrations) {
		t.Fatalf("version %d after the upgrade", v)
	}
	s := NewLeaseStore(db)
	got, err := s.Lease(ctx, "l1")
	if err != nil || got.Ports != nil || got.SSHPort != 4444 || got.ContainerID != "c1" || !slices.Equal(got.Resources.GPUs, []string{"GPU-a"}) {
		t.Fatalf("the old lease after the upgrade: %+v, %v", got, err)
	}
	clash := testLease("l2", 5000)
	clash.Ports = []market.PortMap{{Container: 80, Host: 4444}}
	wantCode(t, s.InsertLease(ctx, clash), market.ECONFLICT)
}
