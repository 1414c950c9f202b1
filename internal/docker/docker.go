// Package docker is the lease runtime on the Docker Engine API: it creates,
// starts, stops, pauses and removes one container per lease, injects the
// nicompute SSH server into it, enforces the lease's limits, and lists the
// containers a miner owns so the miner can reconcile them on start.
//
// A lease container runs the requested (or the operator's default) image
// with the static nicompute binary bind-mounted read-only at
// sshd.BinaryPath as its entrypoint. Everything the server reads from
// sshd.Dir is copied into the created container as files (a tar built in
// Go), never through an image layer, a Dockerfile or a shell, and replaces
// whatever the image put there: the renter's authorized_keys, the password
// file (a hash for SN27 password mode, empty otherwise, so a password baked
// into the image never logs in) and a host key generated for the lease (so
// no lease uses a host key the image author knows). A renter's volume path
// is a plain directory created by the same tar in the container's own
// filesystem: no named volume, so the disk quota covers it.
//
// Limits, all visible in `docker inspect`:
//   - CPU: NanoCPUs = Resources.CPUs × 10⁹, a CFS quota. A quota needs no
//     host-wide CPU bookkeeping and cannot collide between leases the way
//     overlapping cpusets can; the price is no core pinning.
//   - Memory = MemorySwap = Resources.MemoryBytes (no swap).
//   - PidsLimit: Config.PidsLimit (default 4096).
//   - ShmSize: min(memory/2, Config.MaxShm) (default cap 8 GiB). /dev/shm
//     pages are charged to the container's memory cgroup, so the cap keeps a
//     tenant from spending all its memory limit on tmpfs by accident.
//   - GPUs: one nvidia device request for exactly Resources.GPUs, none for a
//     CPU lease, never Count -1; NVIDIA_VISIBLE_DEVICES is set to the same
//     ids ("void" for a CPU lease) so an image's own NVIDIA_VISIBLE_DEVICES=all
//     cannot widen the set on hosts whose default runtime is nvidia.
//   - Disk: StorageOpt size = Resources.DiskBytes where the storage driver
//     supports quotas (overlay2 on xfs with pquota, btrfs, zfs,
//     devicemapper): writes past it fail with ENOSPC. Elsewhere the engine
//     cannot limit a container's disk (DiskQuota says so, and the runtime
//     logs it once). On every driver DiskUsage reports what each lease
//     holds on the host's disk — what the engine's own measure misses
//     included (diskuse.go) — so the miner can hold leases to their size.
//     An image that declares volumes is refused: the engine would give the
//     container anonymous volumes outside its layer and any quota.
//   - No privileged mode, no host network/pid/ipc namespaces, no mounts
//     except the read-only binary and, in a validator's test lease, its
//     worker cache (Spec.Cache; no volumes), no-new-privileges, NET_RAW and MKNOD
//     dropped (no ARP/IP spoofing of neighbours), docker-init as PID 1 to
//     reap zombies. On a lease network without IPv6 the container turns
//     IPv6 off (net.ipv6.conf.all/default.disable_ipv6), so that no engine
//     leaves it a link-local address to reach the host or its neighbours. The server runs as root (0:0) whatever USER the image
//     sets, since it must read its root-only files; the renter is root in
//     the container and nowhere else.
//   - Logs: json-file, 3 × 10 MB, so login noise cannot fill the disk.
//   - Restart policy unless-stopped: the container does not depend on the
//     miner process, and after a daemon or host restart Docker brings back
//     every lease that was running (a lease the miner stopped stays stopped).
//
// Lease containers join one bridge network created by the runtime with
// inter-container communication disabled, so tenants cannot reach each
// other; LeaseNetwork names its bridge for the host packet filter that
// keeps leases off the host and private networks (internal/egress). Containers carry the labels nicompute.managed=true,
// nicompute.lease=<lease id> and nicompute.miner=<instance>, and are named
// nicompute-<instance>-<lease id>; a runtime only sees its own instance's
// containers, so several miners can share one engine.
//
// Every error the runtime returns carries a *market.Error (find it with
// market.ErrorCode / market.ErrorMessage): ENOTFOUND, ECONFLICT, EINVALID,
// EUNAVAILABLE when the engine cannot be reached or does not answer in time,
// EINTERNAL otherwise. The error's full text adds the engine's own message
// for the log; the market message is safe to show a renter.
package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/nicompute/nicompute/internal/market"
)

// Label keys on every container and network the runtime creates.
const (
	LabelManaged = "nicompute.managed"
	LabelLease   = "nicompute.lease"
	LabelMiner   = "nicompute.miner"
	// LabelSSHPort records the published host port, so List can report it
	// for stopped containers too.
	LabelSSHPort = "nicompute.ssh-port"
)

// Defaults for Config fields left zero.
const (
	DefaultNetwork     = "nicompute-leases"
	DefaultPidsLimit   = 4096
	DefaultMaxShm      = 8 << 30
	DefaultCallTimeout = 30 * time.Second
	DefaultPullTimeout = 15 * time.Minute
	DefaultStopTimeout = 10 * time.Second
	// MaxInstanceLen bounds Config.Instance (it is part of container names).
	MaxInstanceLen = 64
)

// Config configures a Runtime. Instance and BinaryPath are required.
type Config struct {
	// Instance identifies the miner that owns the containers (its hotkey
	// or a devnet instance id): [A-Za-z0-9_.-], at most MaxInstanceLen.
	Instance string
	// BinaryPath is the host path of the static nicompute binary that is
	// bind-mounted read-only into every lease container. The engine must
	// run on the same host (the path is resolved by the daemon).
	BinaryPath string
	// DefaultImage is used when a Spec names no image.
	DefaultImage string
	// Network is the isolated bridge network for lease containers
	// (default DefaultNetwork); created on first use.
	Network string
	// HostIP is the default address the SSH port is published on
	// (default 0.0.0.0).
	HostIP string
	// PidsLimit is the per-container process limit (default 4096).
	PidsLimit int64
	// MaxShm caps /dev/shm (default 8 GiB); the size is min(memory/2, MaxShm).
	MaxShm int64
	// CallTimeout bounds ordinary engine calls (default 30 s).
	CallTimeout time.Duration
	// PullTimeout bounds an image pull (default 15 min).
	PullTimeout time.Duration
	// DisableSSHForwarding starts lease SSH servers with port forwarding
	// refused (by default renters may use ssh -L, -R and -D inside their
	// lease).
	DisableSSHForwarding bool
	// StopTimeout is the grace period between SIGTERM and SIGKILL on stop
	// and restart (default 10 s).
	StopTimeout time.Duration
	// Host overrides the engine address (e.g. unix:///run/docker.sock);
	// empty means DOCKER_HOST or the platform default.
	Host string
	// Logger receives state transitions; nil discards.
	Logger *slog.Logger
}

// Runtime runs lease containers on one Docker engine. It is safe for
// concurrent use; it holds no state that outlives the process except what
// it puts in Docker.
type Runtime struct {
	cli *client.Client
	cfg Config
	log *slog.Logger

	// netMu serializes ensureNetwork, so one runtime never races itself
	// into creating the lease network twice. Never held with mu.
	netMu sync.Mutex

	// mu protects the following.
	mu          sync.Mutex
	diskQuota   quotaState // learned from the first create with a disk size
	driverInfo  *Info      // cached Info for quota decisions; nil until fetched
	quotaWarned bool       // the missing quota was logged
	// diskFallbackLogged: a layer could not be walked and that was logged.
	diskFallbackLogged bool
}

type quotaState int

const (
	quotaUnknown quotaState = iota
	quotaSupported
	quotaUnsupported
)

// New returns a Runtime for cfg. It does not contact the engine, so a
// miner can start (and report itself unhealthy) while Docker is down; use
// Ping to check. Errors are EINVALID for a bad Config.
func New(cfg Config) (*Runtime, error) {
	if !validName(cfg.Instance, MaxInstanceLen) {
		return nil, market.Errorf(market.EINVALID, "docker runtime: instance must be 1 to %d characters of letters, digits, '_', '.', '-'", MaxInstanceLen)
	}
	if cfg.BinaryPath == "" {
		return nil, market.Errorf(market.EINVALID, "docker runtime: the nicompute binary path is required")
	}
	if !filepath.IsAbs(cfg.BinaryPath) {
		return nil, market.Errorf(market.EINVALID, "docker runtime: nicompute binary path %s is not absolute", cfg.BinaryPath)
	}
	if fi, err := os.Stat(cfg.BinaryPath); err != nil || !fi.Mode().IsRegular() {
		return nil, market.Errorf(market.EINVALID, "docker runtime: nicompute binary %s is not a regular file", cfg.BinaryPath)
	}
	if cfg.DefaultImage != "" {
		img, err := ValidateImage(cfg.DefaultImage)
		if err != nil {
			return nil, fmt.Errorf("docker runtime: default image: %w", err)
		}
		cfg.DefaultImage = img
	}
	if cfg.Network == "" {
		cfg.Network = DefaultNetwork
	}
	if !validName(cfg.Network, 128) {
		return nil, market.Errorf(market.EINVALID, "docker runtime: invalid network name %q", cfg.Network)
	}
	if cfg.HostIP == "" {
		cfg.HostIP = "0.0.0.0"
	}
	if _, err := parseHostIP(cfg.HostIP); err != nil {
		return nil, err
	}
	if cfg.PidsLimit <= 0 {
		cfg.PidsLimit = DefaultPidsLimit
	}
	if cfg.MaxShm <= 0 {
		cfg.MaxShm = DefaultMaxShm
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.PullTimeout <= 0 {
		cfg.PullTimeout = DefaultPullTimeout
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []client.Opt{client.FromEnv}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	cli, err := client.New(opts...)
	if err != nil {
		return nil, market.Errorf(market.EINVALID, "docker runtime: engine address: %v", err)
	}
	return &Runtime{cli: cli, cfg: cfg, log: log.With("component", "docker", "instance", cfg.Instance)}, nil
}

// Close releases the engine connection. Containers keep running.
func (r *Runtime) Close() error {
	return r.cli.Close()
}

// call returns a context bounded by the ordinary call timeout.
func (r *Runtime) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.cfg.CallTimeout)
}

// Ping checks that the engine answers. Errors: EUNAVAILABLE.
func (r *Runtime) Ping(ctx context.Context) error {
	ctx, cancel := r.call(ctx)
	defer cancel()
	if _, err := r.cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return wrap(ctx, "ping docker engine", "docker engine", err)
	}
	return nil
}

// wrap classifies a Docker client error into a *market.Error whose message
// names subject ("lease 42", "image ubuntu:22.04") and keeps the engine's
// text next to it for the log. ctx is the context the failed call ran
// under: its deadline expiring means the engine did not answer.
func wrap(ctx context.Context, op, subject string, err error) error {
	if err == nil {
		return nil
	}
	var me *market.Error
	if errors.As(err, &me) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w (%w)", op, classify(ctx, subject, err), err)
}

// classify maps a Docker client error to a market error kind by type,
// never by text.
func classify(ctx context.Context, subject string, err error) *market.Error {
	switch {
	case client.IsErrConnectionFailed(err):
		return market.Errorf(market.EUNAVAILABLE, "docker engine unreachable")
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		return market.Errorf(market.EUNAVAILABLE, "docker engine did not answer in time")
	case cerrdefs.IsCanceled(err):
		return market.Errorf(market.EUNAVAILABLE, "request canceled")
	case cerrdefs.IsNotFound(err):
		return market.Errorf(market.ENOTFOUND, "%s not found", subject)
	case cerrdefs.IsConflict(err), cerrdefs.IsAlreadyExists(err), cerrdefs.IsFailedPrecondition(err):
		return market.Errorf(market.ECONFLICT, "%s: conflicts with its current state", subject)
	case cerrdefs.IsInvalidArgument(err):
		return market.Errorf(market.EINVALID, "%s: refused by the docker engine as invalid", subject)
	case cerrdefs.IsUnavailable(err), cerrdefs.IsDeadlineExceeded(err):
		return market.Errorf(market.EUNAVAILABLE, "docker engine unavailable")
	default:
		return market.Errorf(market.EINTERNAL, "%s: docker engine error", subject)
	}
}
