package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/nicompute/nicompute/internal/docker"
	"github.com/nicompute/nicompute/internal/egress"
	"github.com/nicompute/nicompute/internal/miner"
)

// unsafeUnconfinedFlag rents out leases when the packet filter cannot be
// installed; its name says what renters can then reach.
const unsafeUnconfinedFlag = "miner.lease.unsafe-allow-host-and-private-network-access"

// limitFlags are the flags of how leases are held to their disk and
// network.
type limitFlags struct {
	diskReserve    string
	oldDiskReserve string // --miner.reserve.disk, deprecated
	leaseDisk      string
	diskCheck      time.Duration
	pogCache       string
	allowCIDRs     []string
	unconfined     bool
}

func (f *limitFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.diskReserve, "miner.disk.reserve", "10%", "free disk never leased, so the host and the miner's own state stay writable: a size (50GiB) or a share of the filesystem holding the containers (10%)")
	fs.StringVar(&f.oldDiskReserve, "miner.reserve.disk", "", "free disk never leased (use --miner.disk.reserve)")
	_ = fs.MarkDeprecated("miner.reserve.disk", "use --miner.disk.reserve")
	fs.StringVar(&f.leaseDisk, "miner.lease.disk", "20GiB", "disk size of a lease whose request names none")
	fs.DurationVar(&f.diskCheck, "miner.disk.check-interval", miner.DefaultDiskCheck, "how often each lease's disk use is measured where the storage driver cannot limit it (a lease past its size is paused)")
	fs.StringVar(&f.pogCache, "miner.pog-cache.size", "512MiB", "bound of each validator's Proof-of-GPU worker cache, shared by its test leases so it uploads its worker once per version (0: no caches, the worker is uploaded into every test lease)")
	fs.StringSliceVar(&f.allowCIDRs, "miner.lease.allow-cidr", nil, "private or link-local ranges leases may reach besides the internet (CIDR, repeatable); a range holding an address of this host opens this host's services on it to leases")
	fs.BoolVar(&f.unconfined, unsafeUnconfinedFlag, false, "UNSAFE: rent out leases even when the host packet filter cannot be installed, letting renters reach this host, its private networks and the cloud metadata service")
}

// apply validates the flags into o.
func (f limitFlags) apply(o *minerOptions) error {
	reserve := f.diskReserve
	if f.oldDiskReserve != "" {
		reserve = f.oldDiskReserve
	}
	var err error
	if o.Reserve.DiskBytes, o.Reserve.DiskPercent, err = parseReserve("--miner.disk.reserve", reserve); err != nil {
		return err
	}
	if o.LeaseDisk, err = parseBytes("--miner.lease.disk", f.leaseDisk); err != nil {
		return err
	}
	if o.LeaseDisk == 0 {
		return usageErr("--miner.lease.disk must be more than 0: every lease has a disk size")
	}
	if f.diskCheck < 0 {
		return usageErr("--miner.disk.check-interval must not be negative")
	}
	o.DiskCheck = f.diskCheck
	if o.PoGCacheBytes, err = parseBytes("--miner.pog-cache.size", f.pogCache); err != nil {
		return err
	}
	if o.PoGCacheBytes == 0 {
		o.PoGCacheBytes = -1
	}
	for _, c := range f.allowCIDRs {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return usageErr("--miner.lease.allow-cidr: %q is not a CIDR range (e.g. 10.1.0.0/16)", c)
		}
		o.AllowCIDRs = append(o.AllowCIDRs, p.Masked())
	}
	o.UnsafeUnconfined = f.unconfined
	return nil
}

// parseReserve parses a disk reserve: "10%" or a size.
func parseReserve(flag, s string) (bytes int64, percent int, err error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 || n > 100 {
			return 0, 0, usageErr("%s: %q is not a percentage from 0%% to 100%%", flag, s)
		}
		return 0, n, nil
	}
	n, err := parseBytes(flag, s)
	return n, 0, err
}

// leaseGuard confines a miner's lease network with the host packet filter:
// it adapts egress.Filter to the runtime's lease network for the miner.
type leaseGuard struct {
	rt     *docker.Runtime
	filter *egress.Filter
}

var _ miner.NetworkGuard = leaseGuard{}

func netOf(ln docker.LeaseNetwork) egress.Network {
	return egress.Network{Bridge: ln.Bridge, IPv6: ln.IPv6}
}

func (g leaseGuard) Check(ctx context.Context) error {
	ln, err := g.rt.LeaseNetwork(ctx)
	if err != nil {
		return err
	}
	return g.filter.Check(ctx, netOf(ln))
}

func (g leaseGuard) Confine(ctx context.Context) error {
	ln, err := g.rt.LeaseNetwork(ctx)
	if err != nil {
		return err
	}
	return g.filter.Install(ctx, netOf(ln))
}

func (g leaseGuard) Release(ctx context.Context) error {
	ln, found, err := g.rt.FindLeaseNetwork(ctx)
	if err != nil || !found {
		return err
	}
	_, err = g.filter.Release(ctx, netOf(ln), func(ctx context.Context) (bool, error) {
		return g.rt.NetworkInUse(ctx, ln.ID)
	})
	return err
}

func (g leaseGuard) Describe(ctx context.Context) (string, []string) {
	backend, err := g.filter.Backend(ctx)
	if err != nil {
		backend = "iptables"
	}
	detail := backend + ", chains NICOMPUTE-F-/I-<bridge> from DOCKER-USER and INPUT, NICOMPUTE-S-<bridge> from security FORWARD, NICOMPUTE-R-<bridge> from raw PREROUTING"
	if ln, found, err := g.rt.FindLeaseNetwork(ctx); err == nil && found {
		detail = fmt.Sprintf("%s, chains NICOMPUTE-F-%s and NICOMPUTE-I-%s from DOCKER-USER and INPUT, NICOMPUTE-S-%s from security FORWARD, NICOMPUTE-R-%s from raw PREROUTING", backend, ln.Bridge, ln.Bridge, ln.Bridge, ln.Bridge)
	}
	var allowed []string
	for _, p := range g.filter.Allowed() {
		allowed = append(allowed, p.String())
	}
	return detail, allowed
}

// newLeaseGuard builds the packet filter of a miner and removes rules left
// for lease networks that no longer exist.
func newLeaseGuard(ctx context.Context, rt *docker.Runtime, o minerOptions, log *slog.Logger) (leaseGuard, error) {
	f, err := egress.New(egress.Config{Allow: o.AllowCIDRs, LockPath: o.EgressLock, IPTables: o.IPTables, Logger: log})
	if err != nil {
		return leaseGuard{}, err
	}
	if os.Geteuid() == 0 {
		if gone, err := f.Prune(ctx); err != nil {
			log.Warn("remove packet filter rules of deleted lease networks", "err", err)
		} else if len(gone) > 0 {
			log.Info("removed packet filter rules of deleted lease networks", "bridges", gone)
		}
	}
	return leaseGuard{rt: rt, filter: f}, nil
}

// dockerDiskPath is the directory whose filesystem holds the engine's
// containers, when the engine runs on this host; "/" otherwise.
func dockerDiskPath(ctx context.Context, rt *docker.Runtime) string {
	info, err := rt.Info(ctx)
	if err != nil || info.RootDir == "" {
		return "/"
	}
	if _, err := os.Stat(info.RootDir); err != nil {
		return "/"
	}
	return info.RootDir
}
