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
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
