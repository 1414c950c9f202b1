package doctor

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// checks, in the order they run.
var checks = []check{
	{"docker engine", "miner", checkDocker},
	{"nvidia runtime and gpus", "miner", checkGPUs},
	{"storage driver and disk quota", "miner", checkStorage},
	{"packet filter (lease isolation)", "miner", checkPacketFilter},
	{"ports listening", "miner validator api", checkPorts},
	{"firewall (ufw)", "miner validator api", checkUFW},
	{"registration and stake", "miner validator api", checkRegistration},
	{"axon on chain vs this machine", "miner", checkAxon},
	{"version vs the subnet's", "miner validator api", checkVersion},
	{"clock vs chain", "miner validator api", checkClock},
	{"free disk", "miner validator api", checkDisk},
	{"validator results", "api", checkValidatorResults},
	{"api listen address", "api", checkAPIListen},
	{"tls certificate", "api", checkCertificate},
	{"api state file", "api", checkAPIStore},
	{"admin token file", "api", checkTokenFile},
}

func pass(found string) Result { return Result{Status: Pass, Found: found} }

func res(s Status, found, meaning, remedy string) Result {
	return Result{Status: s, Found: found, Meaning: meaning, Remedy: remedy}
}

// minDocker is the oldest engine the runtime supports (API 1.41).
var minDocker = [2]int{20, 10}

func checkDocker(ctx context.Context, _ Config, p Probes) Result {
	d, err := p.Docker(ctx)
	if err != nil {
		return res(Fail, "engine unreachable: "+err.Error(), "the miner runs every lease as a Docker container; without the engine it rents nothing",
			"install Docker Engine and start it (systemctl enable --now docker); give the miner's user the docker group or set --miner.docker.host")
	}
	maj, min := majorMinor(d.ServerVersion)
	found := fmt.Sprintf("Docker %s (API %s)", d.ServerVersion, d.APIVersion)
	if maj < minDocker[0] || (maj == minDocker[0] && min < minDocker[1]) {
		return res(Fail, found, fmt.Sprintf("engines older than %d.%d lack the API (1.41) the miner uses", minDocker[0], minDocker[1]), "upgrade Docker Engine")
	}
	return pass(found)
}

func majorMinor(v string) (int, int) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return 0, 0
	}
	a, _ := strconv.Atoi(parts[0])
	b, _ := strconv.Atoi(strings.TrimLeft(parts[1], "0"))
	return a, b
}

func checkGPUs(ctx context.Context, _ Config, p Probes) Result {
	gpus, gerr := p.GPUs(ctx)
	d, derr := p.Docker(ctx)
	switch {
	case gerr != nil:
		return res(Fail, "no GPU found: "+gerr.Error(), "validators prove GPUs; a miner without one scores 0",
			"install the NVIDIA driver (nvidia-smi must list the GPUs)")
	case len(gpus) == 0:
		return res(Fail, "nvidia-smi lists no GPU", "validators prove GPUs; a miner without one scores 0", "check the driver and the GPUs (nvidia-smi)")
	case derr != nil:
		return res(Warn, fmt.Sprintf("%d GPU(s): %s; the engine did not answer", len(gpus), strings.Join(gpus, ", ")),
			"whether containers can use the GPUs is unknown", "start Docker, then run doctor again")
	case !d.NvidiaRuntime && !d.CDI:
		return res(Fail, fmt.Sprintf("%d GPU(s) but Docker has neither the nvidia runtime nor CDI", len(gpus)),
			"lease containers cannot see the GPUs, so every Proof-of-GPU fails",
			"install the NVIDIA Container Toolkit and run: nvidia-ctk runtime configure --runtime=docker && systemctl restart docker")
	}
	how := "nvidia runtime"
	if !d.NvidiaRuntime {
		how = "CDI"
	}
	return pass(fmt.Sprintf("%d GPU(s) (%s) visible to containers through the %s", len(gpus), strings.Join(gpus, ", "), how))
}

func checkStorage(ctx context.Context, _ Config, p Probes) Result {
	d, err := p.Docker(ctx)
	if err != nil {
		return res(Warn, "engine unreachable", "the storage driver could not be checked", "start Docker, then run doctor again")
	}
	found := "storage driver " + d.StorageDriver
	if d.BackingFS != "" {
		found += " on " + d.BackingFS
	}
	if !d.DiskQuota {
		return res(Warn, found+": no per-container disk quota",
			"the miner measures each lease every --miner.disk.check-interval and pauses one past its size; between two measurements a lease can overshoot by what the disk writes meanwhile, which --miner.disk.reserve must absorb",
			"for writes that fail at the limit instead, put Docker's data root on xfs mounted with pquota (overlay2), or use btrfs or zfs")
	}
	return pass(found + ": per-container disk quotas enforced")
}

func checkPacketFilter(ctx context.Context, _ Config, p Probes) Result {
	for _, w := range dockerWarnings(ctx, p) {
		if strings.Contains(w, "bridge-nf-call-iptables is disabled") {
			return res(Fail, w, "bridged traffic bypasses the packet filter, so leases are not isolated from each other",
				"modprobe br_netfilter && sysctl -w net.bridge.bridge-nf-call-iptables=1 (and persist it in /etc/sysctl.d)")
		}
	}
	pf, err := p.PacketFilter(ctx)
	switch {
	case err != nil:
		return res(Warn, "packet filter not readable: "+err.Error(), "lease isolation could not be verified",
			"run doctor as root (it reads the iptables or nft ruleset)")
	case !pf.DockerChains:
		return res(Fail, "no Docker chains in the "+orUnknown(pf.Backend)+" ruleset",
			"Docker is not managing the packet filter (\"iptables\": false?), so lease networks are not isolated",
			"remove \"iptables\": false from /etc/docker/daemon.json and restart Docker")
	case !pf.RawTable && pf.Backend != "nft":
		return res(Warn, "no raw table in the "+orUnknown(pf.Backend)+" ruleset",
			"a lease can forge the source of its packets so that they pass for replies, to the host and private networks",
			"modprobe iptable_raw ip6table_raw (and list them in /etc/modules-load.d)")
	case !pf.SecurityTable && pf.Backend != "nft":
		return res(Warn, "no security table in the "+orUnknown(pf.Backend)+" ruleset",
			"leases are confined by DOCKER-USER alone, which the engine skips for a moment whenever it creates or removes a network",
			"modprobe iptable_security ip6table_security (and list them in /etc/modules-load.d)")
	}
	found := "Docker manages the " + orUnknown(pf.Backend) + " ruleset (lease networks isolated)"
	if pf.SecurityTable && pf.RawTable {
		found += "; security and raw tables present for the miner's guard chains"
	}
	return pass(found)
}

func dockerWarnings(ctx context.Context, p Probes) []string {
	d, err := p.Docker(ctx)
	if err != nil {
		return nil
	}
	return d.Warnings
}

func orUnknown(s string) string {
	if s == "" {
		return "packet filter"
	}
	return s
}

func checkPorts(ctx context.Context, c Config, p Probes) Result {
	type port struct {
		name string
		n    int
	}
	var ports []port
	if c.Role == "miner" {
		ports = append(ports, port{"axon", c.AxonPort})
	}
	for name, n := range c.Ports {
		ports = append(ports, port{name, n})
	}
	if len(ports) == 0 {
		return pass("no inbound port to check")
	}
	var up, down []string
	for _, x := range ports {
		s := fmt.Sprintf("%s %d", x.name, x.n)
		if p.Listening(ctx, x.n) {
			up = append(up, s)
		} else {
			down = append(down, s)
		}
	}
	if len(down) > 0 {
		flags := map[string]string{"miner": "--axon.port/--metrics.listen", "api": "--api.listen/--metrics.listen"}[c.Role]
		if flags == "" {
			flags = "--metrics.listen"
		}
		return res(Warn, "not listening: "+strings.Join(down, ", "),
			"nothing accepts connections there: the "+c.Role+" is not running, or binds another address",
			"start the "+c.Role+" (doctor checks a running node best) or check its "+flags)
	}
	return pass("listening: " + strings.Join(up, ", "))
}

func checkUFW(ctx context.Context, c Config, p Probes) Result {
	u, err := p.UFW(ctx)
	switch {
	case err != nil:
		return res(Warn, "ufw state not readable: "+err.Error(), "whether the firewall admits validators is unknown", "run doctor as root")
	case !u.Installed:
		return pass("ufw not installed")
	case !u.Active:
		return pass("ufw inactive")
	}
	if c.Role != "miner" {
		return pass("ufw active; this role needs no inbound port from the internet")
	}
	want := strconv.Itoa(c.AxonPort)
	for _, a := range u.Allowed {
		if ruleCovers(a, c.AxonPort) {
			return pass("ufw active and allows the axon port " + want)
		}
	}
	return res(Fail, "ufw active without a rule for the axon port "+want,
		"validators cannot reach the axon, so the miner is never tested and scores 0 (lease SSH ports are published by Docker, which bypasses ufw)",
		"ufw allow "+want+"/tcp")
}

// ruleCovers reports whether a ufw rule ("8091/tcp", "8091", "8000:9000/tcp") admits TCP port.
func ruleCovers(rule string, port int) bool {
	spec, proto, _ := strings.Cut(rule, "/")
	if proto != "" && proto != "tcp" {
		return false
	}
	lo, hi, isRange := strings.Cut(spec, ":")
	a, err := strconv.Atoi(lo)
	if err != nil {
		return false
	}
	b := a
	if isRange {
		if b, err = strconv.Atoi(hi); err != nil {
			return false
		}
	}
	return port >= a && port <= b
}

func checkRegistration(ctx context.Context, c Config, p Probes) Result {
	ch, err := p.Chain(ctx)
	if err != nil {
		return res(Fail, "chain unreachable: "+err.Error(), "registration, axon, version and clock cannot be checked, and the "+c.Role+" cannot start",
			"check --subtensor.network/--subtensor.chain_endpoint and the network")
	}
	n, ok := ch.Metagraph.ByHotkey(c.Hotkey)
	if !ok {
		return res(Fail, fmt.Sprintf("hotkey %s has no uid on subnet %d", c.Hotkey, c.NetUID), "the "+c.Role+" refuses to start",
			fmt.Sprintf("nicompute subnet register --netuid %d --wallet.name … --wallet.hotkey …", c.NetUID))
	}
	found := fmt.Sprintf("uid %d, stake %s", n.UID, n.Stake)
	if c.Role == "miner" {
		return pass(found)
	}
	if n.Stake < c.MinStake {
		return res(Warn, found, fmt.Sprintf("miners refuse validators with less than %s of stake", c.MinStake),
			"nicompute stake add --amount … (or have delegators stake to the hotkey)")
	}
	if !n.ValidatorPermit {
		return res(Warn, found+", no validator permit", "the weights it sets are ignored by consensus", "stake more: permits go to the top stakes")
	}
	return pass(found + ", validator permit held")
}

func checkAxon(ctx context.Context, c Config, p Probes) Result {
	ch, err := p.Chain(ctx)
	if err != nil {
		return res(Warn, "chain unreachable", "the axon on chain could not be checked", "see the registration check")
	}
	n, ok := ch.Metagraph.ByHotkey(c.Hotkey)
	if !ok {
		return res(Warn, "not registered", "there is no axon to compare", "register first")
	}
	ip, how := c.ExternalIP, "--axon.external_ip"
	if ip == "" {
		if ip, err = p.OutboundIP(); err != nil {
			return res(Warn, "this machine's address is unknown: "+err.Error(), "the axon could not be compared", "set --axon.external_ip")
		}
		how = "the default route's address (behind NAT set --axon.external_ip to the public one)"
	}
	if !n.Axon.Served() {
		return res(Warn, "no axon served on chain yet", "validators do not call a miner without an axon; the miner serves it when it starts",
			"start the miner; it serves "+ip+":"+strconv.Itoa(c.AxonPort))
	}
	if same, _ := sameIP(n.Axon.IP, ip); !same || int(n.Axon.Port) != c.AxonPort {
		return res(Fail, fmt.Sprintf("chain has %s, this machine would serve %s:%d (%s)", n.Axon.Addr(), ip, c.AxonPort, how),
			"validators call the address on chain, which is not this miner",
			"restart the miner with the right --axon.external_ip/--axon.external_port (it serves the axon again)")
	}
	// One IP per uid: validators test the uid registered first on an IP.
	for _, o := range ch.Metagraph.Neurons {
		if o.UID == n.UID || !o.Axon.Served() {
			continue
		}
		if same, _ := sameIP(o.Axon.IP, n.Axon.IP); same && (o.RegisteredAt < n.RegisteredAt || (o.RegisteredAt == n.RegisteredAt && o.UID < n.UID)) {
			return res(Fail, fmt.Sprintf("uid %d also serves %s and registered first", o.UID, o.Axon.IP),
				"validators test one uid per IP address, the one registered first: this miner is never tested",
				"run one miner per public IP")
		}
	}
	return pass("chain has " + n.Axon.Addr() + ", this machine's address; no other uid serves it")
}

func sameIP(a, b string) (bool, error) {
	x, err := netip.ParseAddr(a)
	if err != nil {
		return false, err
	}
	y, err := netip.ParseAddr(b)
	if err != nil {
		return false, err
	}
	return x.Unmap() == y.Unmap(), nil
}

func checkVersion(ctx context.Context, c Config, p Probes) Result {
	ch, err := p.Chain(ctx)
	if err != nil {
		return res(Warn, "chain unreachable", "the subnet's version could not be read", "see the registration check")
	}
	want := ch.Hyper.WeightsVersionKey
	found := fmt.Sprintf("this build %s, the subnet's weights_version %d", versionString(uint64(c.Version)), want)
	if uint64(c.Version) < want {
		return res(Warn, found, "the subnet owner has moved to a newer release; validators may refuse or skip older nodes",
			"upgrade nicompute (or run with --auto-update)")
	}
	if c.Role == "miner" {
		if n, ok := ch.Metagraph.ByHotkey(c.Hotkey); ok && n.Axon.Served() && n.Axon.Version != c.Version {
			return res(Warn, found+fmt.Sprintf("; the axon on chain announces %s", versionString(uint64(n.Axon.Version))),
				"validators see the version on chain, not this binary's", "restart the miner: it serves its axon with its own version")
		}
	}
	return pass(found)
}

func versionString(v uint64) string {
	return fmt.Sprintf("%d.%d.%d", v/1_000_000, v/1000%1000, v%1000)
}

// Clock skew beyond maxSkew breaks signed requests (axons refuse nonces
// more than 5 s in the future).
const warnSkew, maxSkew = 2 * time.Second, 5 * time.Second

func checkClock(ctx context.Context, _ Config, p Probes) Result {
	ch, err := p.Chain(ctx)
	if err != nil || ch.Time.IsZero() {
		return res(Warn, "chain time unavailable", "clock skew could not be measured", "keep the clock synchronised (timedatectl set-ntp true)")
	}
	skew := p.Now().Sub(ch.Time)
	excess := max(skew.Abs()-ch.Uncertainty, 0)
	found := fmt.Sprintf("local clock %+.1fs from the chain's (±%s)", skew.Seconds(), ch.Uncertainty.Round(10*time.Millisecond))
	switch {
	case excess > maxSkew:
		return res(Fail, found, "signed requests carry time-based nonces: axons refuse them beyond 5 s of skew",
			"synchronise the clock: timedatectl set-ntp true (or chrony/ntpd)")
	case excess > warnSkew:
		return res(Warn, found, "close to the 5 s beyond which axons refuse signed requests", "synchronise the clock: timedatectl set-ntp true")
	}
	return pass(found)
}

// Free disk thresholds per role: a miner pulls images and hosts leases.
var diskLimits = map[string][2]uint64{
	"miner":     {10 << 30, 50 << 30},
	"validator": {1 << 30, 5 << 30},
	"api":       {1 << 30, 5 << 30},
}

func checkDisk(_ context.Context, c Config, p Probes) Result {
	free, total, err := p.DiskFree(c.DataDir)
	if err != nil {
		return res(Warn, "free space of "+c.DataDir+" unknown: "+err.Error(), "the disk could not be checked", "check the path exists")
	}
	lim := diskLimits[c.Role]
	found := fmt.Sprintf("%s free of %s on %s", gib(free), gib(total), c.DataDir)
	switch {
	case free < lim[0]:
		return res(Fail, found, fmt.Sprintf("below %s the %s cannot work reliably (images, leases, its database)", gib(lim[0]), c.Role), "free disk space or move the data directory")
	case free < lim[1]:
		return res(Warn, found, fmt.Sprintf("below %s; the %s may run out", gib(lim[1]), c.Role), "free disk space")
	}
	return pass(found)
}

func gib(b uint64) string { return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30)) }
