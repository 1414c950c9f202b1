package miner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
)

// testReq is a validator's Proof-of-GPU test lease request.
func testReq(r renter, sshKey string, req market.Requirement) *protocol.Allocate {
	a := allocReq(r, sshKey, req)
	a.DeviceRequirement.Testing = true
	return a
}

// TestPoGCache: a validator's test leases share its own worker cache,
// mounted at protocol.PoGCacheDir; its other leases and other validators'
// leases do not see it. The cache counts toward the test lease's disk
// size (a lease past it with its cache is paused); between tests a cache
// past its bound is emptied, an idle one removed, and no test lease
// starts with a cache past its bound.
func TestPoGCache(t *testing.T) {
	w := newWorld(t)
	root := t.TempDir()
	const limit = 1 << 20
	tm := startTestMiner(t, w, func(c *Config, _ *Deps) {
		c.PoGCacheDir, c.PoGCacheBytes = root, limit
		c.DiskCheckInterval = time.Hour // checked by hand
	})
	ctx := context.Background()
	m := tm.svc.leases
	_, key := sshPub(t)
	other := mustKey(t, "//OtherValidatorHot")
	w.register(t, mustKey(t, "//Alice"), other, 2000)

	alloc := func(signer *keys.Keypair, req *protocol.Allocate) ContainerSpec {
		t.Helper()
		out, st := tm.call(t, signer, req)
		if st != 200 || !out.Status {
			t.Fatalf("allocate: %d %+v", st, out)
		}
		return tm.rt.container(out.LeaseID).spec
	}
	v1, v1rent, v2 := newRenter(t), newRenter(t), newRenter(t)
	spec := alloc(nil, testReq(v1, key, market.Requirement{DiskBytes: 4 << 20}))
	dir := spec.CacheDir
	if dir == "" || filepath.Dir(dir) != root || spec.CacheTarget != protocol.PoGCacheDir {
		t.Fatalf("test lease cache %q at %q; want a directory of %s at %s", dir, spec.CacheTarget, root, protocol.PoGCacheDir)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache directory: %v, %v", fi, err)
	}
	if s := alloc(nil, allocReq(v1rent, key, market.Requirement{})); s.CacheDir != "" {
		t.Errorf("a rental of the same validator has the cache %s", s.CacheDir)
	}
	if s := alloc(other, testReq(v2, key, market.Requirement{})); s.CacheDir == "" || s.CacheDir == dir {
		t.Errorf("another validator's test lease has cache %q (first validator's: %s)", s.CacheDir, dir)
	}

	// The cache counts toward the test lease's disk size.
	write := func(name string, n int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("worker", 3<<20)
	tm.rt.write(spec.LeaseID, 512<<10)
	if p := m.checkDisk(ctx); len(p) != 0 {
		t.Fatalf("test lease within its size with its cache paused: %v", p)
	}
	write("more", 1<<20)
	if p := m.checkDisk(ctx); len(p) != 1 || p[0] != spec.LeaseID {
		t.Fatalf("test lease past its size with its cache: paused %v, want %s", p, spec.LeaseID)
	}
	out, _ := tm.call(t, nil, statusReq(v1))
	if !strings.Contains(out.Error, "more than its disk size of 4.0 MiB") {
		t.Errorf("status of the paused test lease: %+v", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "more")); err != nil {
		t.Errorf("the cache of a live lease was touched: %v", err)
	}

	// Once no lease mounts it, a cache past its bound is emptied...
	if out, st := tm.call(t, nil, deallocReq(v1)); st != 200 || !out.Status {
		t.Fatalf("deallocate: %d %+v", st, out)
	}
	m.checkDisk(ctx)
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Fatalf("cache past its bound after the test: %d entries, %v", len(entries), err)
	}
	// ... one within it is kept ...
	write("worker", limit/2)
	m.checkDisk(ctx)
	if _, err := os.Stat(filepath.Join(dir, "worker")); err != nil {
		t.Fatalf("cache within its bound: %v", err)
	}
	// ... a test lease never starts with one past it ...
	write("more", limit)
	if s := alloc(nil, testReq(v1, key, market.Requirement{DiskBytes: 4 << 20})); s.CacheDir != dir {
		t.Fatalf("second test lease has cache %q, want %s", s.CacheDir, dir)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Fatalf("cache past its bound at the start of a test: %d entries, %v", len(entries), err)
	}
	if out, st := tm.call(t, nil, deallocReq(v1)); st != 200 || !out.Status {
		t.Fatalf("deallocate: %d %+v", st, out)
	}
	// ... and an idle one is removed.
	old := time.Now().Add(-pogCacheIdle - time.Hour)
	if err := os.Chtimes(dir, old, old); err != nil {
		t.Fatal(err)
	}
	m.checkDisk(ctx)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("idle cache not removed: %v", err)
	}
}

// TestPoGCacheWithEngineQuota: where the engine holds a lease's layer to
// its size, the miner still holds the cache to the lease's size.
func TestPoGCacheWithEngineQuota(t *testing.T) {
	w := newWorld(t)
	tm := startTestMiner(t, w, func(c *Config, _ *Deps) {
		c.PoGCacheDir = t.TempDir()
		c.DiskCheckInterval = time.Hour
	})
	tm.rt.mu.Lock()
	tm.rt.quota = true
	tm.rt.mu.Unlock()
	_, key := sshPub(t)
	v := newRenter(t)
	out, st := tm.call(t, nil, testReq(v, key, market.Requirement{DiskBytes: 1 << 20}))
	if st != 200 || !out.Status {
		t.Fatalf("allocate: %d %+v", st, out)
	}
	dir := tm.rt.container(out.LeaseID).spec.CacheDir
	if err := os.WriteFile(filepath.Join(dir, "w"), make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if p := tm.svc.leases.checkDisk(context.Background()); len(p) != 1 {
		t.Fatalf("test lease whose cache is past its size: paused %v", p)
	}
}
