package main

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/docker"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/miner"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/version"
)

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
