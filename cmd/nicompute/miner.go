package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/nicompute/nicompute/internal/docker"
	"github.com/nicompute/nicompute/internal/hostinfo"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/miner"
	"github.com/nicompute/nicompute/internal/sqlite"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/version"
)

// Defaults of the miner command.
const (
	defaultMinerImage = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
	defaultAxonPort   = 8091
	defaultSSHPort    = 4444
	// defaultSSHPorts is the size of the default --ssh.port-range.
	defaultSSHPorts = 100
	// failpointEnv names an allocation step at which `nicompute miner`
	// kills itself with SIGKILL (fault tests only; ignored when unset).
	failpointEnv = "NICOMPUTE_MINER_FAILPOINT"
)

// minerOptions configure one miner; `nicompute miner` fills them from its
// flags and devnet builds several.
type minerOptions struct {
	NetUID subnet.NetUID
	Hotkey subnet.Signer
	Chain  miner.Chain
	// DataDir holds leases.db and the lock that keeps a second miner off
	// it (required).
	DataDir string
	// AxonListen is the axon's address; ExternalIP/ExternalPort are
	// served on chain (ExternalPort 0: the bound port).
	AxonListen   string
	ExternalIP   string
	ExternalPort int
	// SSHPorts and SSHHostIP: where lease SSH servers are published.
	SSHPorts  miner.PortRange
	SSHHostIP string
	// LeasePorts and MaxLeasePorts: where renters' extra ports are
	// published (zero: none).
	LeasePorts    miner.PortRange
	MaxLeasePorts int
	// DisableSSHForwarding refuses ssh -L, -R and -D in leases.
	DisableSSHForwarding bool
	// Image is the default lease image, Images the others renters may pick.
	Image  string
	Images []string
	// BinaryPath is the static nicompute binary mounted into containers
	// (default: this executable).
	BinaryPath string
	// DockerHost and DockerNetwork select the engine and lease network
	// (defaults: DOCKER_HOST or the platform socket, docker's default).
	DockerHost    string
	DockerNetwork string
	// Instance names this miner's containers (default: minerInstance of
	// the hotkey and netuid).
	Instance string
	// GPUs probes GPUs (nil: NVML when nvidia-smi exists, else none).
	// SimulatedGPUs records leased GPUs without passing them to Docker
	// (devnet's hostinfo.Static GPUs do not exist).
	GPUs          hostinfo.GPUProbe
	SimulatedGPUs bool
	// LeaseFiles are written into every lease container before it starts
	// (devnet: the Proof-of-GPU simulation file).
	LeaseFiles  []docker.File
	Policy      miner.PolicyConfig
	Reserve     market.Reserve
	LeaseMemory int64
	// LeaseDisk is a lease's disk size when its request names none;
	// DiskCheck how often lease disks are measured where the engine cannot
	// limit them (zero: the miner's defaults).
	LeaseDisk int64
	DiskCheck time.Duration
	// PoGCacheBytes bounds each validator's worker cache in DataDir
	// (zero: the miner's default; negative: no caches).
	PoGCacheBytes int64
	// AllowCIDRs are ranges leases may reach besides the internet;
	// UnsafeUnconfined rents leases even without the packet filter.
	AllowCIDRs       []netip.Prefix
	UnsafeUnconfined bool
	// EgressLock is the packet filter's lock file (default
	// egress.DefaultLockPath); IPTables its binary (tests).
	EgressLock string
	IPTables   string
	Metrics    prometheus.Registerer
	Log        *slog.Logger
	// Test and devnet knobs; zero means the miner's defaults.
	LeaseUnit       time.Duration
	PollInterval    time.Duration
	SweepInterval   time.Duration
	OrphanGrace     time.Duration
	ReconcileDryRun bool
	// RequireBodySignature admits only dendrites that sign the body.
	RequireBodySignature bool
	Failpoint            func(string)
}

// runningMiner is a miner with the adapters it owns.
type runningMiner struct {
	*miner.Service
	db    *sqlite.DB
	rt    *docker.Runtime
	lock  *os.File
	close func() error // once
}

// Close stops the miner, then closes its store and engine connection and
// releases its data directory. Lease containers keep running. It is
// idempotent.
func (m *runningMiner) Close() error { return m.close() }

// minerInstance is the default container label of a miner: its hotkey and
// netuid, so that one hotkey mining several subnets on one engine runs
// miners that never see (or remove) each other's containers. An SS58
// address is 48 characters, so the result fits docker.MaxInstanceLen.
func minerInstance(hotkey string, netuid subnet.NetUID) string {
	return fmt.Sprintf("%s-n%d", hotkey, netuid)
}

// dataDirLock is the file in a miner's data directory that a running miner
// holds an exclusive flock on.
const dataDirLock = "miner.lock"

// lockDataDir creates dir (0700) and takes an exclusive, non-blocking flock
// on its lock file, so that a second miner on the same data directory — the
// same lease store and containers — refuses to start. The lock lasts until
// the returned file is closed or the process exits.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create miner data directory: %w", err)
	}
	p := filepath.Join(dir, dataDirLock)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open miner lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("miner data directory %s is in use by another miner (it holds %s); run one miner per data directory (--miner.data)", dir, p)
		}
		return nil, fmt.Errorf("lock miner data directory %s: %w", dir, err)
	}
	return f, nil
}

// startMiner wires the adapters into a miner service: the lease store in
// DataDir (locked against a second miner), the Docker runtime (one instance
// per miner hotkey and netuid, so several miners share an engine), hostinfo
// specs and the given chain. The caller keeps ownership of the chain.
func startMiner(ctx context.Context, o minerOptions) (rm *runningMiner, err error) {
	if o.Hotkey == nil || o.Chain == nil {
		return nil, errors.New("start miner: hotkey and chain are required")
	}
	if o.DataDir == "" {
		return nil, errors.New("start miner: a data directory is required")
	}
	lock, err := lockDataDir(o.DataDir)
	if err != nil {
		return nil, fmt.Errorf("start miner: %w", err)
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin := o.BinaryPath
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("start miner: find own binary: %w", err)
		}
		if bin, err = filepath.EvalSymlinks(exe); err != nil {
			return nil, fmt.Errorf("start miner: find own binary: %w", err)
		}
	}
	instance := o.Instance
	if instance == "" {
		instance = minerInstance(o.Hotkey.SS58(), o.NetUID)
	}
	rt, err := docker.New(docker.Config{
		Instance:     instance,
		BinaryPath:   bin,
		DefaultImage: o.Image,
		Network:      o.DockerNetwork,
		HostIP:       o.SSHHostIP,
		Host:         o.DockerHost,
		Logger:       log,

		DisableSSHForwarding: o.DisableSSHForwarding,
	})
	if err != nil {
		return nil, fmt.Errorf("start miner: %w", err)
	}
	guard, err := newLeaseGuard(ctx, rt, o, log)
	if err != nil {
		rt.Close()
		return nil, fmt.Errorf("start miner: %w", err)
	}
	db, err := sqlite.Open(ctx, filepath.Join(o.DataDir, "leases.db"), sqlite.LeaseSchema)
	if err != nil {
		rt.Close()
		return nil, fmt.Errorf("start miner: open lease store: %w", err)
	}
	cacheDir := ""
	if o.PoGCacheBytes >= 0 {
		if cacheDir, err = filepath.Abs(filepath.Join(o.DataDir, "pog-cache")); err != nil {
			db.Close()
			rt.Close()
			return nil, fmt.Errorf("start miner: %w", err)
		}
	}
	gpus := o.GPUs
	if gpus == nil && (hostinfo.NVML{}).Available() {
		gpus = hostinfo.NVML{}
	}
	svc, err := miner.New(ctx, miner.Deps{
		Chain:   o.Chain,
		Runtime: dockerRuntime{rt: rt, simulatedGPUs: o.SimulatedGPUs, files: o.LeaseFiles},
		Store:   sqlite.NewLeaseStore(db),
		Specs:   &hostinfo.Collector{GPUs: gpus, DiskPath: dockerDiskPath(ctx, rt)},
		Guard:   guard,
	}, miner.Config{
		NetUID:                o.NetUID,
		Hotkey:                o.Hotkey,
		Listen:                o.AxonListen,
		ExternalIP:            o.ExternalIP,
		ExternalPort:          o.ExternalPort,
		Version:               version.Int(),
		Policy:                o.Policy,
		DefaultImage:          o.Image,
		Images:                o.Images,
		SSHPorts:              o.SSHPorts,
		SSHHostIP:             o.SSHHostIP,
		LeasePorts:            o.LeasePorts,
		MaxLeasePorts:         o.MaxLeasePorts,
		Reserve:               o.Reserve,
		DefaultMemory:         o.LeaseMemory,
		DefaultDisk:           o.LeaseDisk,
		DiskCheckInterval:     o.DiskCheck,
		PoGCacheDir:           cacheDir,
		PoGCacheBytes:         max(o.PoGCacheBytes, 0),
		AllowUnconfinedLeases: o.UnsafeUnconfined,
		LeaseUnit:             o.LeaseUnit,
		PollInterval:          o.PollInterval,
		SweepInterval:         o.SweepInterval,
		OrphanGrace:           o.OrphanGrace,
		ReconcileDryRun:       o.ReconcileDryRun,
		RequireBodySignature:  o.RequireBodySignature,
		Log:                   log,
		Metrics:               o.Metrics,
		Failpoint:             o.Failpoint,
	})
	if err != nil {
		db.Close()
		rt.Close()
		return nil, err
	}
	rm = &runningMiner{Service: svc, db: db, rt: rt, lock: lock}
	rm.close = sync.OnceValue(func() error {
		return errors.Join(rm.Service.Close(), rm.db.Close(), rm.rt.Close(), rm.lock.Close())
	})
	return rm, nil
}

// dockerAvailable reports why the Docker engine at host (empty: the
// default) cannot be used, or nil when it answers.
func dockerAvailable(ctx context.Context, host string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	rt, err := docker.New(docker.Config{Instance: "probe", BinaryPath: exe, Host: host})
	if err != nil {
		return err
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return rt.Ping(ctx)
}

// dockerRuntime adapts docker.Runtime to miner.Runtime.
type dockerRuntime struct {
	rt            *docker.Runtime
	simulatedGPUs bool
	files         []docker.File
}

var _ miner.Runtime = dockerRuntime{}

func fromDocker(c docker.Container) miner.Container {
	return miner.Container{ID: c.ID, LeaseID: c.LeaseID, Image: c.Image, State: string(c.State), SSHPort: c.SSHPort, Created: c.Created}
}

func (d dockerRuntime) Create(ctx context.Context, s miner.ContainerSpec) (miner.Container, error) {
	res := s.Resources
	if d.simulatedGPUs {
		res.GPUs = nil // recorded on the lease, absent from the host
	}
	spec := docker.Spec{
		LeaseID: s.LeaseID, Image: s.Image, Resources: res, SSHPort: s.SSHPort, Ports: s.Ports,
		AuthorizedKeys: s.AuthorizedKeys, Password: s.Password, VolumePath: s.VolumePath,
	}
	if s.CacheDir != "" {
		spec.Cache = &docker.BindMount{Source: s.CacheDir, Target: s.CacheTarget}
	}
	c, err := d.rt.Create(ctx, spec)
	if err == nil && len(d.files) > 0 {
		if err = d.rt.CopyFiles(ctx, s.LeaseID, d.files); err != nil {
			_ = d.rt.Remove(context.WithoutCancel(ctx), s.LeaseID)
			return miner.Container{}, err
		}
	}
	return fromDocker(c), err
}

func (d dockerRuntime) Start(ctx context.Context, lease string) error { return d.rt.Start(ctx, lease) }
func (d dockerRuntime) Restart(ctx context.Context, lease string) error {
	return d.rt.Restart(ctx, lease)
}
func (d dockerRuntime) Pause(ctx context.Context, lease string) error { return d.rt.Pause(ctx, lease) }
func (d dockerRuntime) Unpause(ctx context.Context, lease string) error {
	return d.rt.Unpause(ctx, lease)
}
func (d dockerRuntime) Remove(ctx context.Context, lease string) error {
	return d.rt.Remove(ctx, lease)
}
func (d dockerRuntime) Ping(ctx context.Context) error { return d.rt.Ping(ctx) }

func (d dockerRuntime) HasImage(ctx context.Context, image string) (bool, error) {
	return d.rt.HasImage(ctx, image)
}

func (d dockerRuntime) PullImage(ctx context.Context, image string, progress func(miner.PullProgress)) error {
	return d.rt.PullImage(ctx, image, func(p docker.PullProgress) {
		if progress != nil {
			progress(miner.PullProgress(p))
		}
	})
}

func (d dockerRuntime) SetAuthorizedKeys(ctx context.Context, lease string, keys []ssh.PublicKey) error {
	return d.rt.SetAuthorizedKeys(ctx, lease, keys)
}

func (d dockerRuntime) Inspect(ctx context.Context, lease string) (miner.Container, error) {
	c, err := d.rt.Inspect(ctx, lease)
	return fromDocker(c), err
}

func (d dockerRuntime) List(ctx context.Context) ([]miner.Container, error) {
	cs, err := d.rt.List(ctx)
	out := make([]miner.Container, 0, len(cs))
	for _, c := range cs {
		out = append(out, fromDocker(c))
	}
	return out, err
}

func (d dockerRuntime) DiskQuota(ctx context.Context) (bool, error) { return d.rt.DiskQuota(ctx) }
func (d dockerRuntime) DiskUsage(ctx context.Context) (map[string]int64, error) {
	return d.rt.DiskUsage(ctx)
}

func (d dockerRuntime) EngineVersion(ctx context.Context) (string, error) {
	info, err := d.rt.Info(ctx)
	return info.ServerVersion, err
}

func (dockerRuntime) ValidateImage(ref string) (string, error) { return docker.ValidateImage(ref) }
func (dockerRuntime) ParseSSHKeys(text string) ([]ssh.PublicKey, error) {
	return docker.ParseSSHKeys(text)
}
func (dockerRuntime) ValidateVolumePath(p string) error { return docker.ValidateVolumePath(p) }
func (dockerRuntime) CheckDockerfile(text string) error { return docker.CheckDockerfile(text) }

// minerFlags are `nicompute miner`'s flags, named as SN27's.
type minerFlags struct {
	w              walletFlags
	sf             subtensorFlags
	netuid         uint16
	axonPort       int
	axonIP         string
	externalIP     string
	externalPort   int
	sshPort        int
	sshPortRange   string
	sshIP          string
	portsRange     string
	portsMax       int
	sshForwarding  bool
	notEnough      bool
	requireBodySig bool
	notUpdated     bool
	threshold      int
	minValidator   string
	blackHotkeys   []string
	blackColdkeys  []string
	whiteHotkeys   []string
	image          string
	images         []string
	dataDir        string
	reserveCPUs    int
	reserveRAM     string
	reserveGPUs    []string
	limits         limitFlags
	leaseMemory    string
	dockerHost     string
	dockerNetwork  string
	binary         string
	dryRun         bool
	daemon         daemonFlags
	leaseUnit      time.Duration
	poll           time.Duration
	sweep          time.Duration
}

func newMinerCmd(a *app) *cobra.Command {
	var f minerFlags
	cmd := &cobra.Command{
		Use:   "miner",
		Short: "Rent out this machine: serve Allocate and Specs on an axon, run leases as Docker containers reachable over SSH",
		Long: `Rent out this machine as Docker containers reachable over SSH.

The miner checks its hotkey is registered, serves its axon on chain (and
again whenever the chain's ip, port or version differ), and answers SN27's
Allocate synapse (check, allocate, status, docker actions, deallocate) and a
Specs synapse. Leases live in --miner.data/leases.db, which one miner at a
time may use (a second one on the same directory refuses to start);
containers, labelled with the hotkey and netuid, keep running when the
miner stops and are reconciled with the lease records when it starts.

Renters get --miner.image unless they name one of --miner.images ("*" allows
any image the engine can pull); SN27's placeholder "ubuntu" means the
default. --miner.images offers by default the PyTorch images SN27's Python
validators and register_api ask for. The miner pulls the offered images
that are missing in the background when it starts (progress in the log) and
reuses them; a request for an image still being pulled, or that the engine
cannot pull, is refused with the reason. Password login is enabled only
when the request sets docker_requirement.password or sends no ssh_key.
Renters may forward ports over SSH inside their lease (ssh -L, -R, -D)
unless --ssh.forwarding=false, and ask for extra TCP ports
(docker_requirement.ports, a nicompute extension) when --miner.ports.range
is set: each is published on a host port of that range, at most
--miner.ports.max per lease.

Every lease has a disk size (hard_disk, or --miner.lease.disk): the storage
driver enforces it where it can; elsewhere the miner pauses a lease past it.
Free disk is the free space less --miner.disk.reserve. A validator's
Proof-of-GPU test leases share a worker cache of that validator's own
(--miner.data/pog-cache), which counts toward the test lease's disk size and
holds at most --miner.pog-cache.size between tests. Leases reach the
internet but not this host or its private networks: the miner installs rules
in the host packet filter (root needed) and refuses to allocate when it
cannot, unless --` + unsafeUnconfinedFlag + ` is set.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runMiner(cmd.Context(), f) },
	}
	fs := cmd.Flags()
	f.w.register(fs)
	f.sf.register(fs)
	fs.Uint16Var(&f.netuid, "netuid", 27, "subnet id")
	fs.IntVar(&f.axonPort, "axon.port", defaultAxonPort, "axon port")
	fs.StringVar(&f.axonIP, "axon.ip", "", "address the axon binds (default: all)")
	fs.StringVar(&f.externalIP, "axon.external_ip", "", "IP served on chain (default: --axon.ip when specific, else the address of the default route)")
	fs.IntVar(&f.externalPort, "axon.external_port", 0, "port served on chain (default: --axon.port)")
	fs.IntVar(&f.sshPort, "ssh.port", defaultSSHPort, "SSH port of the first lease")
	fs.StringVar(&f.sshPortRange, "ssh.port-range", "", "SSH ports for leases, FIRST-LAST (default: --ssh.port and the next 99)")
	fs.StringVar(&f.sshIP, "ssh.ip", "0.0.0.0", "address lease SSH ports are published on")
	fs.StringVar(&f.portsRange, "miner.ports.range", "", "host ports for renters' extra container ports, FIRST-LAST (default: none offered)")
	fs.IntVar(&f.portsMax, "miner.ports.max", miner.DefaultMaxLeasePorts, "extra ports one lease may ask for")
	fs.BoolVar(&f.sshForwarding, "ssh.forwarding", true, "let renters forward ports over SSH inside their lease (ssh -L, -R on its loopback, -D); false refuses it in leases created from now on")
	fs.BoolVar(&f.notEnough, "miner.whitelist.not.enough.stake", false, "admit registered callers whose stake is below the validator permit")
	fs.BoolVar(&f.requireBodySig, "miner.require.body.signature", false, "admit only callers that also sign the request body (nicompute validators); Bittensor's signature does not cover SN27 bodies, so this refuses SN27's Python validators")
	fs.BoolVar(&f.notUpdated, "miner.whitelist.not.updated", false, "admit validators whose axon version is below the minimum")
	fs.IntVar(&f.threshold, "miner.whitelist.updated.threshold", miner.DefaultUpdatedThreshold, "refuse outdated validators only once more than this percentage of validators is up to date")
	fs.StringVar(&f.minValidator, "miner.validator.min_version", "", "lowest validator version accepted, MAJOR.MINOR.PATCH (default: this miner's MAJOR.MINOR.0; \"0\" disables the check)")
	fs.StringSliceVar(&f.blackHotkeys, "blacklist.hotkeys", nil, "hotkeys always refused")
	fs.StringSliceVar(&f.blackColdkeys, "blacklist.coldkeys", nil, "coldkeys whose hotkeys are always refused")
	fs.StringSliceVar(&f.whiteHotkeys, "whitelist.hotkeys", nil, "hotkeys always admitted")
	fs.StringVar(&f.image, "miner.image", defaultMinerImage, "default lease image (also used for SN27's placeholder \"ubuntu\")")
	fs.StringSliceVar(&f.images, "miner.images", miner.SN27Images(), "other images renters may ask for (the default: the ones SN27's validators and register_api ask for); setting it replaces the list: \"\" for none, \"*\" for any")
	fs.StringVar(&f.dataDir, "miner.data", "", "state directory for leases.db (default ~/.nicompute/miner/WALLET-HOTKEY-netuidN)")
	fs.IntVar(&f.reserveCPUs, "miner.reserve.cpus", 0, "CPUs kept for the host, never leased")
	fs.StringVar(&f.reserveRAM, "miner.reserve.ram", "2GiB", "memory kept for the host")
	f.limits.register(fs)
	fs.StringSliceVar(&f.reserveGPUs, "miner.reserve.gpus", nil, "GPU indexes or UUIDs never leased")
	fs.StringVar(&f.leaseMemory, "miner.lease.ram", "1GiB", "memory of a lease whose request names none")
	fs.StringVar(&f.dockerHost, "miner.docker.host", "", "Docker engine address (default: DOCKER_HOST or the local socket)")
	fs.StringVar(&f.dockerNetwork, "miner.docker.network", "", "bridge network for lease containers (default "+docker.DefaultNetwork+")")
	fs.StringVar(&f.binary, "miner.binary", "", "static nicompute binary mounted into lease containers (default: this executable)")
	fs.BoolVar(&f.dryRun, "miner.reconcile.dry-run", false, "log what reconciling leases with Docker would remove instead of removing it")
	fs.DurationVar(&f.leaseUnit, "miner.lease-unit", 0, "length of one timeline day (testing)")
	fs.DurationVar(&f.poll, "miner.chain-poll", 0, "how often the chain head is read (default 12s)")
	fs.DurationVar(&f.sweep, "miner.sweep", 0, "how often leases are reconciled with Docker (default 30s)")
	f.daemon.register(fs, true)
	for _, h := range []string{"miner.lease-unit", "miner.chain-poll", "miner.sweep"} {
		_ = fs.MarkHidden(h)
	}
	return cmd
}

// minerOptionsFromFlags validates the flags into minerOptions (without
// hotkey and chain).
func (f minerFlags) options() (minerOptions, error) {
	o := minerOptions{
		NetUID:               subnet.NetUID(f.netuid),
		SSHHostIP:            f.sshIP,
		DisableSSHForwarding: !f.sshForwarding,
		Image:                f.image,
		Images:               f.images,
		BinaryPath:           f.binary,
		DockerHost:           f.dockerHost,
		DockerNetwork:        f.dockerNetwork,
		Policy: miner.PolicyConfig{
			AllowLowStake:     f.notEnough,
			AllowOutdated:     f.notUpdated,
			UpdatedThreshold:  f.threshold,
			BlacklistHotkeys:  f.blackHotkeys,
			BlacklistColdkeys: f.blackColdkeys,
			WhitelistHotkeys:  f.whiteHotkeys,
		},
		ExternalPort:         f.externalPort,
		ReconcileDryRun:      f.dryRun,
		RequireBodySignature: f.requireBodySig,
		LeaseUnit:            f.leaseUnit,
		PollInterval:         f.poll,
		SweepInterval:        f.sweep,
	}
	if f.axonPort < 1 || f.axonPort > 65535 {
		return o, usageErr("--axon.port %d out of range", f.axonPort)
	}
	if f.threshold < 0 || f.threshold > 100 {
		return o, usageErr("--miner.whitelist.updated.threshold %d out of [0, 100]", f.threshold)
	}
	bind := f.axonIP
	if bind != "" {
		ip, err := netip.ParseAddr(strings.Trim(bind, "[]"))
		if err != nil {
			return o, usageErr("--axon.ip %q is not an IP address", f.axonIP)
		}
		bind = ip.String()
		if !ip.IsUnspecified() && f.externalIP == "" {
			o.ExternalIP = bind
		}
	}
	o.AxonListen = net.JoinHostPort(bind, strconv.Itoa(f.axonPort))
	if f.externalIP != "" {
		ip, err := netip.ParseAddr(f.externalIP)
		if err != nil {
			return o, usageErr("--axon.external_ip %q is not an IP address", f.externalIP)
		}
		o.ExternalIP = ip.String()
	}
	if o.ExternalPort == 0 {
		o.ExternalPort = f.axonPort
	}
	if f.sshPortRange != "" {
		r, err := miner.ParsePortRange(f.sshPortRange)
		if err != nil {
			return o, usageErr("--ssh.port-range: %v", err)
		}
		o.SSHPorts = r
	} else {
		if f.sshPort < 1 || f.sshPort > 65535 {
			return o, usageErr("--ssh.port %d out of range", f.sshPort)
		}
		o.SSHPorts = miner.PortRange{First: f.sshPort, Last: min(f.sshPort+defaultSSHPorts-1, 65535)}
	}
	if f.portsRange != "" {
		r, err := miner.ParsePortRange(f.portsRange)
		if err != nil {
			return o, usageErr("--miner.ports.range: %v", err)
		}
		o.LeasePorts = r
	}
	if f.portsMax < 0 || f.portsMax > market.MaxLeasePorts {
		return o, usageErr("--miner.ports.max must be 1 to %d", market.MaxLeasePorts)
	}
	o.MaxLeasePorts = f.portsMax
	if _, err := netip.ParseAddr(f.sshIP); err != nil {
		return o, usageErr("--ssh.ip %q is not an IP address", f.sshIP)
	}
	switch v := f.minValidator; v {
	case "":
		o.Policy.MinValidatorVersion = version.Int() / 1000 * 1000
	case "0":
	default:
		n, err := parseVersionInt(v)
		if err != nil {
			return o, usageErr("--miner.validator.min_version: %v", err)
		}
		o.Policy.MinValidatorVersion = n
	}
	var err error
	if o.Reserve.MemoryBytes, err = parseBytes("--miner.reserve.ram", f.reserveRAM); err != nil {
		return o, err
	}
	if err := f.limits.apply(&o); err != nil {
		return o, err
	}
	if o.LeaseMemory, err = parseBytes("--miner.lease.ram", f.leaseMemory); err != nil {
		return o, err
	}
	if f.reserveCPUs < 0 {
		return o, usageErr("--miner.reserve.cpus must not be negative")
	}
	o.Reserve.CPUs = f.reserveCPUs
	o.Reserve.GPUs = f.reserveGPUs
	return o, nil
}

// parseBytes parses a size such as 4GiB, 512m or 1073741824.
func parseBytes(flag, s string) (int64, error) {
	n, err := units.RAMInBytes(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return 0, usageErr("%s: %q is not a size (e.g. 4GiB, 512MiB)", flag, s)
	}
	return n, nil
}

// parseVersionInt parses MAJOR.MINOR.PATCH as Bittensor's version_as_int.
func parseVersionInt(s string) (uint32, error) {
	parts := strings.Split(strings.TrimPrefix(s, "v"), ".")
	if len(parts) != 3 {
		return 0, fmt.Errorf("%q is not MAJOR.MINOR.PATCH", s)
	}
	var n [3]uint64
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, 32)
		if err != nil || (i > 0 && v > 999) || v > 4000 {
			return 0, fmt.Errorf("%q is not MAJOR.MINOR.PATCH", s)
		}
		n[i] = v
	}
	return uint32(n[0]*1_000_000 + n[1]*1_000 + n[2]), nil
}

// outboundIP is the local address of the default route, found without
// sending a packet.
func outboundIP() (string, error) {
	c, err := net.Dial("udp", "192.0.2.1:9") // TEST-NET-1; UDP connect sends nothing
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

func (a *app) runMiner(ctx context.Context, f minerFlags) error {
	o, err := f.options()
	if err != nil {
		return err
	}
	if o.ExternalIP == "" {
		ip, err := outboundIP()
		if err != nil {
			return usageErr("cannot tell this machine's address (%v); set --axon.external_ip", err)
		}
		o.ExternalIP = ip
		a.logger().Info("external ip from the default route; set --axon.external_ip to override", "ip", ip)
	}
	if o.DataDir = f.dataDir; o.DataDir == "" {
		o.DataDir = filepath.Join("~", ".nicompute", "miner", fmt.Sprintf("%s-%s-netuid%d", f.w.name, f.w.hotkey, f.netuid))
	}
	if o.DataDir, err = expandHome(o.DataDir); err != nil {
		return err
	}
	hotkey, err := a.loadHotkey(f.w)
	if err != nil {
		return err
	}
	o.Hotkey = hotkey
	up, obs, err := a.startOps("miner", f.daemon)
	if err != nil {
		return err
	}
	defer obs.Close()
	o.Metrics = obs.registerer()
	if obs != nil && (hostinfo.NVML{}).Available() {
		obs.reg.MustRegister(hostinfo.NewGPUCollector(hostinfo.NVML{}))
	}
	ch, err := a.dialChain(ctx, f.sf)
	if err != nil {
		return err
	}
	defer ch.Close()
	o.Chain = ch
	o.Log = a.logger()
	if fp := os.Getenv(failpointEnv); fp != "" {
		o.Log.Warn("fault injection enabled: the miner kills itself at an allocation step", "env", failpointEnv, "step", fp)
		o.Failpoint = func(name string) {
			if name == fp {
				if p, err := os.FindProcess(os.Getpid()); err == nil {
					_ = p.Kill() // SIGKILL: no deferred cleanup runs
				}
				select {} // the signal is on its way
			}
		}
	}
	m, err := startMiner(ctx, o)
	if errors.Is(err, miner.ErrNotRegistered) {
		return chainErr("%w; register it first: %s", err, commandLine("subnet register", f.netuid, f.w, f.sf))
	}
	if err != nil {
		return a.restartIf(up, up.failed(a, err))
	}
	if obs != nil && f.daemon.obs.dashboard {
		minerDashboard(obs, m)
	}
	return a.serveDaemon(ctx, "miner (lease containers keep running)", m, obs, up, f.daemon, m.Quiesce)
}
