// Package miner is the miner daemon: it rents out a machine as containers
// reachable over SSH, one per lease, answering SN27's Allocate synapse and a
// Specs synapse on its axon.
//
// Leases. A lease is reserved atomically: one mutex serialises the decision
// (read the live leases, pick free resources and a port, insert the lease as
// "creating") and the store refuses a double booking on its own, so a
// request can never disturb a running lease. The lease is persisted before
// its container exists and its container id right after creation; it turns
// "active" only once the container runs and just before the renter is
// answered. A lease whose request ended (the axon answers 408), or has too
// little time left to carry the answer, is rolled back instead, even after
// activation: a renter never holds an active lease whose credentials it did
// not get. Only its owner — the same hotkey with the same RSA public key —
// may query, act on or deallocate it. The miner enforces each lease's
// expiry itself (a timer for the next expiry plus a periodic sweep).
//
// Restarts. Containers do not depend on the miner process. On start, and
// periodically, the miner reconciles the store with the runtime: a lease
// caught mid-creation is rolled back (its renter was never answered), an
// active lease whose container vanished is ended, a stopped one restarted,
// and containers of ended or unknown leases are removed (unknown ones only
// after a grace period, and never in dry-run mode).
//
// Policy. Requests pass the blacklist hook before any handler runs: the
// whitelist always passes; blacklisted hotkeys and coldkeys, unregistered
// hotkeys, stake below the validator permit and outdated validators (once
// most validators are up to date) are refused with 403 and the reason.
// Decisions use a metagraph refreshed in the background once per block, so
// a slow or unreachable chain never delays a request.
//
// Limits. Every lease has a disk size, held by the engine where its
// storage driver can and otherwise by the miner, which pauses a lease past
// it (disk.go); free disk is the free space less a reserve. Leases reach
// the internet only: the miner refuses to allocate unless its
// NetworkGuard confines the lease network (guard.go). Specs report both.
//
// Renter input. SN27's "ubuntu" placeholder or an empty base_image means the
// operator's default image; other images must be in the operator's list
// (SN27Images by default, at the command level). A missing image is pulled
// once, in the background, and reused (see imagePuller); a request waits
// for it only as long as its own deadline allows.
// Password login is enabled when docker_requirement.password is true or no
// ssh_key is given (SN27 validators send none for Proof-of-GPU and could not
// log in otherwise); the password is random, returned once inside the
// encrypted credentials and never logged or stored. A dockerfile is refused.
// SN27's default volume_path "/tmp" means no volume; any other volume_path
// is a directory of the container's own filesystem (not a Docker volume),
// so the lease's disk size covers it.
package miner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/subnet"
)

// Defaults of Config fields left zero.
const (
	DefaultMinStake         = 1024 * subnet.RaoPerTAO
	DefaultUpdatedThreshold = 60
	DefaultLeaseUnit        = 24 * time.Hour
	DefaultMemory           = 1 << 30
	DefaultDisk             = 20 << 30
	DefaultDiskReservePct   = 10
	DefaultDiskCheck        = 5 * time.Second
	DefaultPollInterval     = 12 * time.Second
	DefaultSweepInterval    = 30 * time.Second
	DefaultOrphanGrace      = 2 * time.Minute
	DefaultSpecsInterval    = time.Minute
	DefaultCreateTimeout    = 5 * time.Minute
	DefaultMaxLeasePorts    = 4
	// placeholderImage is SN27's default base_image, sent by validators
	// that do not care: it means the operator's default.
	placeholderImage = "ubuntu"
	// placeholderVolume is SN27's default volume_path, which SN27 miners
	// ignore: it means no volume.
	placeholderVolume = "/tmp"
)

// PortRange is an inclusive range of host ports for lease SSH servers.
type PortRange struct {
	First, Last int
}

// Len is the number of ports in the range.
func (r PortRange) Len() int { return r.Last - r.First + 1 }

// ParsePortRange parses "4444-4543" or a single port "4444".
func ParsePortRange(s string) (PortRange, error) {
	a, b, found := cutDash(s)
	first, err := strconv.Atoi(a)
	if err != nil {
		return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
	}
	last := first
	if found {
		if last, err = strconv.Atoi(b); err != nil {
			return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
		}
	}
	r := PortRange{first, last}
	return r, r.validate()
}

func cutDash(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '-' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func (r PortRange) validate() error {
	if r.First < 1 || r.Last > 65535 || r.First > r.Last {
		return fmt.Errorf("port range %d-%d: want 1 ≤ first ≤ last ≤ 65535", r.First, r.Last)
	}
	return nil
}

// PolicyConfig says who may call the miner.
type PolicyConfig struct {
	// MinStake is the validator permit stake (default 1,024 τ).
	MinStake subnet.Balance
	// AllowLowStake admits registered callers below MinStake
	// (--miner.whitelist.not.enough.stake).
	AllowLowStake bool
	// AllowOutdated admits validators whose axon version is below
	// MinValidatorVersion (--miner.whitelist.not.updated).
	AllowOutdated bool
	// UpdatedThreshold (percent, default 60): outdated validators are
	// refused only once more than this share of validators is up to date.
	UpdatedThreshold int
	// MinValidatorVersion is the lowest validator axon version on chain
	// accepted; 0 disables the check.
	MinValidatorVersion uint32
	// BlacklistHotkeys and BlacklistColdkeys are always refused;
	// WhitelistHotkeys always pass (stake, registration and version are not
	// checked for them).
	BlacklistHotkeys  []string
	BlacklistColdkeys []string
	WhitelistHotkeys  []string
}

// Config configures a Service. NetUID, Hotkey, Listen, ExternalIP,
// DefaultImage and SSHPorts are required.
type Config struct {
	NetUID subnet.NetUID
	// Hotkey is the miner's hotkey: it must be registered on NetUID, it
	// signs the axon's answers and serves the axon on chain.
	Hotkey subnet.Signer
	// Listen is the axon's TCP address ("0.0.0.0:8091", "127.0.0.2:0").
	Listen string
	// ExternalIP and ExternalPort are served on chain; ExternalPort
	// defaults to the port Listen bound.
	ExternalIP   string
	ExternalPort int
	// Version is the version served on chain and returned in credentials.
	Version uint32
	Policy  PolicyConfig

	// DefaultImage is the image leases run unless the renter picks one of
	// Images ("*" among them: any image). The miner pulls the ones missing
	// in the background when it starts, and any other on first request.
	DefaultImage string
	Images       []string
	// PullRetry is how long a failed image pull is answered from memory
	// before another is tried (default DefaultPullRetry).
	PullRetry time.Duration
	// SSHPorts are the host ports leases are published on; SSHHostIP the
	// address they are published on (default 0.0.0.0), where a candidate
	// port is checked to be free.
	SSHPorts  PortRange
	SSHHostIP string
	// LeasePorts are the host ports a lease's extra ports (the
	// docker_requirement.ports a renter asks for) are published on, on
	// SSHHostIP; zero offers none. MaxLeasePorts bounds them per lease
	// (default 4).
	LeasePorts    PortRange
	MaxLeasePorts int
	// Reserve is kept for the host and never leased. A reserve of disk
	// neither in bytes nor in percent keeps DefaultDiskReservePct of the
	// filesystem holding the containers free, so that the miner's own
	// state stays writable.
	Reserve market.Reserve
	// DefaultMemory is a lease's memory when the request names none
	// (default 1 GiB).
	DefaultMemory int64
	// DefaultDisk is a lease's disk size when the request names none
	// (default 20 GiB): every lease has one.
	DefaultDisk int64
	// DiskCheckInterval is how often the writable layer of each lease is
	// measured where the engine cannot hold it to its size (default 5 s);
	// a lease found past its size is paused. Worker caches are measured
	// as often (cache.go).
	DiskCheckInterval time.Duration
	// PoGCacheDir, when set, is the host directory under which each
	// validator's test leases share a Proof-of-GPU worker cache, mounted
	// at protocol.PoGCacheDir; PoGCacheBytes bounds each cache between
	// tests (default DefaultPoGCacheBytes). See cache.go.
	PoGCacheDir   string
	PoGCacheBytes int64
	// AllowUnconfinedLeases rents out leases even when the NetworkGuard
	// cannot confine them, so renters may reach this host, its private
	// networks and the cloud metadata service. Off, the miner refuses to
	// allocate until the filter works.
	AllowUnconfinedLeases bool
	// LeaseUnit is the length of one timeline day (default 24 h; tests
	// shorten it).
	LeaseUnit time.Duration
	// CreateTimeout bounds creating one container, image pull included.
	CreateTimeout time.Duration

	// PollInterval is how often the chain head is read; the metagraph is
	// fetched again when it moved (default 12 s).
	PollInterval time.Duration
	// SweepInterval is how often leases are reconciled with the runtime
	// (default 30 s); expiries are timed exactly.
	SweepInterval time.Duration
	// OrphanGrace is how old a container of an unknown lease must be
	// before it is removed (default 2 min).
	OrphanGrace time.Duration
	// ReconcileDryRun logs what reconciliation would remove or end
	// instead of doing it.
	ReconcileDryRun bool
	// SpecsInterval is how often specs and the engine version are measured
	// again (default 1 min).
	SpecsInterval time.Duration

	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log receives state transitions; nil discards.
	Log *slog.Logger
	// Metrics, when set, receives the nicompute_miner_* metrics.
	Metrics prometheus.Registerer
	// Failpoint, when set, is called at named points of an allocation
	// ("reserved", "created", "recorded", "started", "activated"); the
	// fault tests kill the process there.
	Failpoint func(name string)
	// AxonWorkers bounds concurrently running handlers (axon default).
	AxonWorkers int
	// RequireBodySignature refuses requests whose body is not signed:
	// Bittensor's own signature does not cover SN27's synapse bodies, so
	// only dendrites that also sign the body (nicompute's) are admitted.
	// It locks out SN27's Python validators.
	RequireBodySignature bool
}

func (c *Config) setDefaults() error {
	var errs []error
	if c.Hotkey == nil {
		errs = append(errs, errors.New("no hotkey"))
	}
	if c.Listen == "" {
		errs = append(errs, errors.New("no axon listen address"))
	}
	if _, err := netip.ParseAddr(c.ExternalIP); err != nil {
		errs = append(errs, fmt.Errorf("external ip %q is not an IP address", c.ExternalIP))
	}
	if c.ExternalPort < 0 || c.ExternalPort > 65535 {
		errs = append(errs, fmt.Errorf("external port %d out of range", c.ExternalPort))
	}
	if c.DefaultImage == "" {
		errs = append(errs, errors.New("no default image"))
	}
	if err := c.SSHPorts.validate(); err != nil {
		errs = append(errs, fmt.Errorf("ssh ports: %w", err))
	}
	if c.SSHHostIP == "" {
		c.SSHHostIP = "0.0.0.0"
	}
	if c.LeasePorts != (PortRange{}) {
		if err := c.LeasePorts.validate(); err != nil {
			errs = append(errs, fmt.Errorf("lease ports: %w", err))
		} else if c.LeasePorts.First <= c.SSHPorts.Last && c.SSHPorts.First <= c.LeasePorts.Last {
			errs = append(errs, fmt.Errorf("lease ports %d-%d overlap the ssh ports %d-%d", c.LeasePorts.First, c.LeasePorts.Last, c.SSHPorts.First, c.SSHPorts.Last))
		}
		if c.MaxLeasePorts == 0 {
			c.MaxLeasePorts = DefaultMaxLeasePorts
		}
		if c.MaxLeasePorts < 0 || c.MaxLeasePorts > market.MaxLeasePorts {
			errs = append(errs, fmt.Errorf("max lease ports %d out of [0, %d]", c.MaxLeasePorts, market.MaxLeasePorts))
		}
	}
	if _, err := netip.ParseAddr(c.SSHHostIP); err != nil {
		errs = append(errs, fmt.Errorf("ssh host ip %q is not an IP address", c.SSHHostIP))
	}
	if c.Policy.MinStake == 0 {
		c.Policy.MinStake = DefaultMinStake
	}
	if c.Policy.UpdatedThreshold == 0 {
		c.Policy.UpdatedThreshold = DefaultUpdatedThreshold
	}
	if c.Policy.UpdatedThreshold < 0 || c.Policy.UpdatedThreshold > 100 {
		errs = append(errs, fmt.Errorf("updated threshold %d%% out of [0, 100]", c.Policy.UpdatedThreshold))
	}
	def(&c.DefaultMemory, DefaultMemory)
	def(&c.DefaultDisk, DefaultDisk)
	def(&c.DiskCheckInterval, DefaultDiskCheck)
	def(&c.PoGCacheBytes, DefaultPoGCacheBytes)
	if c.Reserve.DiskBytes == 0 && c.Reserve.DiskPercent == 0 {
		c.Reserve.DiskPercent = DefaultDiskReservePct
	}
	if c.Reserve.DiskBytes < 0 || c.Reserve.DiskPercent < 0 || c.Reserve.DiskPercent > 100 {
		errs = append(errs, fmt.Errorf("disk reserve %d bytes or %d%% out of range", c.Reserve.DiskBytes, c.Reserve.DiskPercent))
	}
	def(&c.LeaseUnit, DefaultLeaseUnit)
	def(&c.CreateTimeout, DefaultCreateTimeout)
	def(&c.PollInterval, DefaultPollInterval)
	def(&c.SweepInterval, DefaultSweepInterval)
	def(&c.OrphanGrace, DefaultOrphanGrace)
	def(&c.SpecsInterval, DefaultSpecsInterval)
	def(&c.PullRetry, DefaultPullRetry)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Failpoint == nil {
		c.Failpoint = func(string) {}
	}
	return errors.Join(errs...)
}

func def[T int64 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Service is a running miner.
type Service struct {
	cfg     Config
	log     *slog.Logger
	deps    Deps
	metrics *metrics
	chain   *chainSync
	leases  *leaseManager
	specs   *specsCache
	images  *imagePolicy
	pulls   *imagePuller
	axon    *axon.Server
	ln      net.Listener

	// requests and gate serve Requests and Quiesce (status.go).
	requests *requestLog
	gate     gate

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	done      chan struct{}
	closeOnce sync.Once

	// errMu protects err.
	errMu sync.Mutex
	err   error
}

// New starts a miner: it measures the machine, reads the metagraph and
// refuses to start unless the hotkey is registered (EFORBIDDEN-free plain
// error), binds the axon, reconciles leases with the runtime (when the
// runtime is down it starts anyway and retries), serves the axon on chain
// when the chain's record differs, and starts the background loops. The
// service runs until Close or until its axon fails; ctx only bounds
// startup.
func New(ctx context.Context, deps Deps, cfg Config) (*Service, error) {
	if deps.Chain == nil || deps.Runtime == nil || deps.Store == nil || deps.Specs == nil || deps.Guard == nil {
		return nil, errors.New("miner: chain, runtime, store, specs source and network guard are required")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("miner config: %w", err)
	}
	s := &Service{cfg: cfg, deps: deps, done: make(chan struct{})}
	s.log = cfg.Log.With("component", "miner", "hotkey", cfg.Hotkey.SS58())
	var err error
	if s.images, err = newImagePolicy(deps.Runtime, cfg.DefaultImage, cfg.Images); err != nil {
		return nil, fmt.Errorf("miner images: %w", err)
	}

	s.specs = newSpecsCache(deps.Specs, deps.Runtime, s.log)
	specs, err := s.specs.refresh(ctx)
	if err != nil {
		return nil, fmt.Errorf("measure machine: %w", err)
	}
	capacity := market.CapacityOf(specs, cfg.Reserve)
	s.log.Info("capacity", "gpus", len(capacity.GPUs), "cpus", capacity.CPUs,
		"memory_bytes", capacity.MemoryBytes, "disk_free_bytes", capacity.DiskBytes,
		"disk_reserve_bytes", market.DiskReserve(specs.Disk, cfg.Reserve), "disk_path", specs.Disk.Path)

	s.chain = newChainSync(cfg, deps.Chain, s.log)
	s.requests = newRequestLog(cfg.Now)
	if s.metrics, err = newMetrics(cfg.Metrics, s.block); err != nil {
		return nil, fmt.Errorf("miner metrics: %w", err)
	}
	if err := s.chain.start(ctx); err != nil {
		return nil, err
	}
	cache, err := newPoGCache(cfg, s.log)
	if err != nil {
		return nil, err
	}
	s.leases = newLeaseManager(cfg, deps, capacity, cache, s.metrics, s.log)
	s.specs.free = s.leases.free
	s.specs.enforcement = s.leases.enforcement

	s.axon, err = axon.NewServer(axon.Config{
		Hotkey:               cfg.Hotkey,
		Version:              int64(cfg.Version),
		MaxWorkers:           cfg.AxonWorkers,
		RequireBodySignature: cfg.RequireBodySignature,
		MaxBodyBytes:         protocol.MaxBodyBytes,
		ExternalIP:           cfg.ExternalIP,
		ExternalPort:         cfg.ExternalPort,
		Observe:              s.metrics.observeAxon,
	}, s.log.With("component", "axon"))
	if err != nil {
		return nil, fmt.Errorf("miner axon: %w", err)
	}
	hooks := axon.Hooks{Blacklist: s.chain.blacklist, Priority: s.chain.priority}
	s.axon.Attach(protocol.AllocateName, s.handleAllocate, hooks)
	s.axon.Attach(protocol.SpecsName, s.handleSpecs, hooks)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("miner axon: listen: %w", err)
	}
	s.ln = ln
	if s.cfg.ExternalPort == 0 {
		s.cfg.ExternalPort = ln.Addr().(*net.TCPAddr).Port
		s.chain.cfg.ExternalPort = s.cfg.ExternalPort
	}

	if err := s.leases.reconcile(ctx); err != nil {
		s.log.Warn("leases not reconciled at start; allocations wait for the runtime", "err", err)
	}
	s.pulls = newImagePuller(deps.Runtime, cfg.PullRetry, cfg.Now, s.log)
	s.pulls.prefetch(ctx, s.images.allowed)
	s.leases.logEnforcement(ctx)
	s.specs.refreshEnforcement(ctx)
	s.chain.serveIfNeeded(ctx)

	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.goLoop(func() {
		if err := s.axon.Serve(runCtx, ln); err != nil {
			s.fail(err)
		}
	})
	s.goLoop(func() { s.chain.run(runCtx) })
	s.goLoop(func() { s.leases.run(runCtx) })
	s.goLoop(func() { s.leases.watchDisk(runCtx) })
	s.goLoop(func() { s.specs.run(runCtx, cfg.SpecsInterval) })
	go func() {
		s.wg.Wait()
		close(s.done)
	}()
	s.log.Info("miner started", "axon", ln.Addr().String(), "external", net.JoinHostPort(cfg.ExternalIP, strconv.Itoa(s.cfg.ExternalPort)),
		"netuid", cfg.NetUID, "uid", s.chain.uid(), "ssh_ports", fmt.Sprintf("%d-%d", cfg.SSHPorts.First, cfg.SSHPorts.Last))
	return s, nil
}

// every runs fn every d until ctx ends (the first run after d).
func every(ctx context.Context, d time.Duration, fn func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fn(ctx)
	}
}

// goLoop runs fn as one of the service's goroutines; the first to return
// stops the others.
func (s *Service) goLoop(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.cancel()
		fn()
	}()
}

func (s *Service) fail(err error) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.err == nil {
		s.err = err
		s.log.Error("miner stopping", "err", err)
	}
}

// AxonAddr is the address the axon listens on.
func (s *Service) AxonAddr() string { return s.ln.Addr().String() }

// Hotkey is the miner's hotkey address.
func (s *Service) Hotkey() string { return s.cfg.Hotkey.SS58() }

// Done is closed once the service has stopped.
func (s *Service) Done() <-chan struct{} { return s.done }

// Err returns why the service stopped on its own, or nil.
func (s *Service) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// Close stops the axon and the loops and waits for them. Lease containers
// keep running. It is idempotent.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.done
		s.axon.Close()
		s.pulls.close()
		s.log.Info("miner stopped; lease containers keep running")
	})
	return s.Err()
}

// Leases returns the live leases (creating and active).
func (s *Service) Leases(ctx context.Context) ([]market.Lease, error) {
	return s.deps.Store.LiveLeases(ctx)
}

// Free returns the capacity not held by live leases.
func (s *Service) Free(ctx context.Context) (market.Capacity, error) {
	return s.leases.free(ctx)
}
