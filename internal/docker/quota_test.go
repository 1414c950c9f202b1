package docker

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
)

// TestDiskQuotaFallback makes the runtime believe the storage driver takes
// a size (as overlay2 on xfs would) on an engine whose driver refuses it:
// the create must succeed without the quota, and the runtime must remember
// and report that disk is not enforced.
func TestDiskQuotaFallback(t *testing.T) {
	t.Parallel()
	cli := nictest.RequireDocker(t)
	instance := "tq" + strconv.FormatInt(time.Now().UnixNano(), 36)
	network := "nicompute-test-" + instance
	nictest.CleanupLabel(t, cli, LabelMiner+"="+instance, network)
	r, err := New(Config{
		Instance:     instance,
		BinaryPath:   nictest.BuildNicompute(t),
		DefaultImage: nictest.BuildTestImage(t, cli, ""),
		Network:      network,
		HostIP:       "127.0.0.1",
		Logger:       nictest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := t.Context()
	info, err := r.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.DiskQuota {
		t.Skipf("storage driver %s enforces disk quotas; the fallback cannot be exercised", info.StorageDriver)
	}
	r.mu.Lock()
	r.driverInfo = &Info{DiskQuota: true} // pretend: a quota-capable driver
	r.mu.Unlock()

	s := Spec{
		LeaseID:        "q",
		Resources:      market.Resources{CPUs: 1, MemoryBytes: 128 << 20, DiskBytes: 2 << 30},
		SSHPort:        nictest.FreePort(t),
		AuthorizedKeys: []ssh.PublicKey{nictest.SSHKey(t).PublicKey()},
	}
	c, err := r.Create(ctx, s)
	if err != nil {
		t.Fatalf("Create with a refused disk quota: %v", err)
	}
	if c.DiskQuota {
		t.Errorf("container reports a disk quota the driver refused")
	}
	if q, err := r.DiskQuota(ctx); err != nil || q {
		t.Errorf("DiskQuota after fallback = %v, %v; want false", q, err)
	}
	if info, err := r.Info(ctx); err != nil || info.DiskQuota {
		t.Errorf("Info.DiskQuota after fallback = %v, %v; want false", info.DiskQuota, err)
	}
	// The next lease goes straight to the no-quota create.
	s.LeaseID, s.SSHPort = "q2", nictest.FreePort(t)
	if _, err := r.Create(ctx, s); err != nil {
		t.Fatalf("second Create: %v", err)
	}
}

// TestDiskQuotaWarning: on a storage driver that cannot limit a
// container's disk, the runtime says so once, the first time it learns it.
func TestDiskQuotaWarning(t *testing.T) {
	t.Parallel()
	nictest.RequireDocker(t)
	var buf bytes.Buffer
	r, err := New(Config{
		Instance:   "tw" + strconv.FormatInt(time.Now().UnixNano(), 36),
		BinaryPath: nictest.BuildNicompute(t),
		Logger:     slog.New(slog.NewTextHandler(&buf, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for range 2 {
		if _, err := r.DiskQuota(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Info(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	info, _ := r.Info(t.Context())
	n := strings.Count(buf.String(), "storage driver cannot limit a container's disk")
	switch {
	case info.DiskQuota && n != 0:
		t.Errorf("driver %s with quotas logged the warning:\n%s", info.StorageDriver, buf.String())
	case !info.DiskQuota && n != 1:
		t.Errorf("driver %s without quotas logged the warning %d times, want once:\n%s", info.StorageDriver, n, buf.String())
	}
}
