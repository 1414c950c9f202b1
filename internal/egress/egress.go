// Package egress confines the network traffic of lease containers with the
// host's packet filter, so that a renter reaches the internet but not the
// host, its private networks, the cloud metadata service or other tenants.
//
// For each lease network (a Docker bridge) it installs two chains of its
// own in the filter table, named NICOMPUTE-F-<bridge> and
// NICOMPUTE-I-<bridge>, and one jump to each, matched on the bridge
// interface:
//
//   - from DOCKER-USER (FORWARD where the engine has no DOCKER-USER) to
//     the F chain, for what a lease sends through the host: replies to
//     connections made to the lease (RELATED,ESTABLISHED in the reply
//     direction, so a connection the lease itself opened while no filter
//     was in force is cut once it is) pass, so do the
//     operator's allowed ranges and DNS (port 53) to the host's name
//     servers, which the engine's resolver queries from inside the
//     container; private, link-local (169.254.0.0/16, the metadata
//     address), loopback, carrier-grade NAT, multicast and reserved
//     destinations are rejected; the rest returns to the engine's rules;
//   - from INPUT to the I chain, for what a lease sends to the host itself
//     (the gateway and every other address of the host): replies, allowed
//     ranges and DNS pass, everything else is rejected.
//
// Rejections answer with ICMP administratively-prohibited, so a tenant's
// connection fails at once ("No route to host") rather than hanging.
//
// A third chain, NICOMPUTE-S-<bridge> in the security table, jumped to
// from its FORWARD chain, drops forwarded packets to the blocked
// destinations once more. The engine deletes and re-inserts its FORWARD →
// DOCKER-USER jump whenever it creates or removes a network, so for a
// moment forwarded packets skip DOCKER-USER; the security table, which the
// engine never touches, is judged after the filter table and holds through
// that moment. A kernel without the security table (rare) gets a warning
// and the two filter chains alone.
//
// A fourth, NICOMPUTE-R-<bridge> in the raw table, jumped to from its
// PREROUTING, drops packets from the bridge whose source address the host
// would not route back through it (the rpfilter match): a lease that
// forged its source could otherwise make conntrack take a packet to a
// refused address for the reply to a connection it opened to the internet
// (see spoofScript).
// IPv6 gets the same rules with ip6tables whenever the host has IPv6, even
// for a lease network without IPv6 addresses: engines from Docker 26 on
// leave an IPv6 link-local address on every container interface, through
// which the host's own link-local address and neighbouring containers
// would answer.
//
// The chains' contents are replaced atomically with iptables-restore
// --noflush, so installing again (to repair, or with a new allow list)
// never opens a gap; jumps are inserted only when missing. Nothing else is
// flushed or rewritten: not DOCKER-USER, not INPUT, not other chains.
// Installing and removing take an exclusive lock on a file
// (/run/nicompute/egress.lock), so miners sharing a host and a lease
// network never remove the rules another is about to rely on: Release
// removes a bridge's rules only when its caller, holding the lock, finds
// no lease container left on the network. The rules live in the kernel:
// they outlive the miner and are reinstalled when it starts (after a
// reboot they are gone until then).
//
// It runs the iptables binaries (iptables-nft or iptables-legacy, whichever
// `iptables` is, as the Docker engine does) with argument vectors, never a
// shell, and needs root (CAP_NET_ADMIN) on the engine's host.
package egress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultLockPath is the lock file of Config.LockPath.
const DefaultLockPath = "/run/nicompute/egress.lock"

// Config configures a Filter.
type Config struct {
	// Allow are destination ranges leases may reach although they are
	// blocked by default (a private service the operator offers renters).
	Allow []netip.Prefix
	// Nameservers are reachable on port 53; nil means those of the host's
	// /etc/resolv.conf (or systemd-resolved's upstream list when that
	// only names the local stub), which the engine forwards containers'
	// DNS queries to.
	Nameservers []netip.Addr
	// LockPath is the lock file shared by every miner on the host
	// (default DefaultLockPath).
	LockPath string
	// IPTables and IP6Tables name the binaries (default "iptables" and
	// "ip6tables", found in PATH, /usr/sbin or /sbin).
	IPTables, IP6Tables string
	// Logger receives installs and removals; nil discards.
	Logger *slog.Logger
}

// Network is a lease network as the packet filter sees it.
type Network struct {
	// Bridge is the host interface of the network's bridge.
	Bridge string
	// IPv6 is true when the network gives containers IPv6 addresses.
	IPv6 bool
}

// Filter installs and removes the chains confining lease networks. It is
// safe for concurrent use.
type Filter struct {
	cfg   Config
	rules ruleSet
	log   *slog.Logger

	// mu serialises this process's installs and removals; the lock file
	// serialises them with other processes.
	mu sync.Mutex
}

// New returns a Filter for cfg. It changes nothing on the host; Install
// reports whether the filter can be installed.
func New(cfg Config) (*Filter, error) {
	if cfg.LockPath == "" {
		cfg.LockPath = DefaultLockPath
	}
	if cfg.IPTables == "" {
		cfg.IPTables = "iptables"
	}
	if cfg.IP6Tables == "" {
		cfg.IP6Tables = "ip6tables"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rs := ruleSet{nameservers: cfg.Nameservers}
	for _, p := range cfg.Allow {
		if !p.IsValid() {
			return nil, errors.New("egress: invalid allowed range")
		}
		rs.allow = append(rs.allow, p.Masked())
	}
	if rs.nameservers == nil {
		rs.nameservers = hostNameservers()
	}
	f := &Filter{cfg: cfg, rules: rs, log: log.With("component", "egress")}
	if open := hostAddrsIn(rs.allow); len(open) > 0 {
		f.log.Warn("allowed ranges hold addresses of this host: leases reach every service this host offers on them",
			"addresses", open, "allowed", rs.allow)
	}
	return f, nil
}

// hostAddrsIn returns the addresses of this host inside the prefixes.
func hostAddrsIn(prefixes []netip.Prefix) []netip.Addr {
	if len(prefixes) == 0 {
		return nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		for _, allowed := range prefixes {
			if allowed.Contains(p.Addr().Unmap()) && !slices.Contains(out, p.Addr()) {
				out = append(out, p.Addr())
			}
		}
	}
	return out
}

// hostNameservers reads the name servers the Docker engine forwards to.
func hostNameservers() []netip.Addr {
	var out []netip.Addr
	for _, p := range []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, a := range parseNameservers(b) {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// Allowed returns the ranges leases may reach besides the internet.
func (f *Filter) Allowed() []netip.Prefix { return slices.Clone(f.rules.allow) }

// Install makes sure the packet filter confines n. It is idempotent and
// cheap to repeat (the chains are rewritten in one transaction, jumps are
// inserted only when missing), so callers run it before every lease
// starts and periodically, which also repairs rules someone removed.
// Errors say why it cannot be installed: not root, no iptables, no bridge
// of that name on this host (the engine is remote), no netfilter.
func (f *Filter) Install(ctx context.Context, n Network) error {
	unlock, err := f.begin(ctx, n.Bridge)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := net.InterfaceByName(n.Bridge); err != nil {
		return fmt.Errorf("egress: lease network bridge %s is not an interface of this host (is the Docker engine remote?): %w", n.Bridge, err)
	}
	fams := []family{ipv4}
	if n.IPv6 || hostHasIPv6() {
		fams = append(fams, ipv6)
	}
	for _, fam := range fams {
		t, err := f.tables(fam)
		if err != nil {
			return err
		}
		hook, inserted, err := f.install(ctx, t, n.Bridge)
		if err != nil {
			return fmt.Errorf("egress: install %s filter for %s: %w", fam.name, n.Bridge, err)
		}
		if inserted {
			f.log.Info("lease network filter installed", "bridge", n.Bridge, "family", fam.name, "hooks", hook+",INPUT,security FORWARD,raw PREROUTING",
				"allowed", f.rules.allow, "nameservers", f.rules.nameservers)
		}
	}
	return nil
}

// install writes bridge's chains and jumps in t's family; it returns the
// forward hook and whether a jump had to be inserted (the filter was not
// in force before).
func (f *Filter) install(ctx context.Context, t *tables, bridge string) (string, bool, error) {
	if err := t.restoreNoFlush(ctx, restoreScript(t.fam, bridge, f.rules)); err != nil {
		return "", false, err
	}
	fwd, in := chainNames(bridge)
	hook, err := forwardHook(ctx, t)
	if err != nil {
		return "", false, err
	}
	i1, err := t.ensureJump(ctx, "filter", hook, bridge, fwd)
	if err != nil {
		return "", false, err
	}
	i2, err := t.ensureJump(ctx, "filter", "INPUT", bridge, in)
	if err != nil {
		return "", false, err
	}
	inserted := i1 || i2
	for _, x := range extraTables {
		ok, err := t.hasTable(ctx, x.table, x.hook)
		if err != nil {
			return "", false, err
		}
		if !ok {
			if inserted {
				f.log.Warn(x.missing, "bridge", bridge, "family", t.fam.name)
			}
			continue
		}
		if err := t.restoreNoFlush(ctx, x.script(t.fam, bridge, f.rules)); err != nil {
			return "", false, fmt.Errorf("chain %s in the %s table: %w", x.chain(bridge), x.table, err)
		}
		i, err := t.ensureJump(ctx, x.table, x.hook, bridge, x.chain(bridge))
		if err != nil {
			return "", false, err
		}
		inserted = inserted || i
	}
	return hook, inserted, nil
}

// Check reports, without changing anything, why the filter could not be
// installed for n: not root, no iptables, no netfilter, or no such bridge
// on this host.
func (f *Filter) Check(ctx context.Context, n Network) error {
	if !validBridge(n.Bridge) {
		return fmt.Errorf("egress: invalid bridge name %q", n.Bridge)
	}
	if _, err := net.InterfaceByName(n.Bridge); err != nil {
		return fmt.Errorf("egress: lease network bridge %s is not an interface of this host (is the Docker engine remote?): %w", n.Bridge, err)
	}
	t, err := f.tables(ipv4)
	if err != nil {
		return err
	}
	if _, err := t.run(ctx, "-t", "filter", "-S", "INPUT"); err != nil {
		return fmt.Errorf("egress: read the packet filter: %w", err)
	}
	return nil
}

// hostHasIPv6 reports whether the kernel has IPv6 (the file lists the
// host's IPv6 addresses and exists whenever IPv6 is enabled); containers
// may then hold IPv6 link-local addresses whatever their network says.
func hostHasIPv6() bool {
	_, err := os.Stat("/proc/net/if_inet6")
	return err == nil
}

// forwardHook is the chain forwarded lease traffic is judged in:
// DOCKER-USER, which the engine keeps for its operator's rules ahead of
// its own, or FORWARD when the engine does not manage the packet filter.
func forwardHook(ctx context.Context, t *tables) (string, error) {
	ok, err := t.chainExists(ctx, "filter", "DOCKER-USER")
	if err != nil {
		return "", err
	}
	if ok {
		return "DOCKER-USER", nil
	}
	return "FORWARD", nil
}

func (f *Filter) tables(fam family) (*tables, error) {
	name := f.cfg.IPTables
	if fam.v6 {
		name = f.cfg.IP6Tables
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("egress: the lease packet filter needs root (CAP_NET_ADMIN); this miner runs as uid %d", os.Geteuid())
	}
	t, err := findTables(fam, name)
	if err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	return t, nil
}

// Installed reports whether the chains of bridge exist and are jumped to
// (IPv4; the guard chain where the kernel has the security table).
func (f *Filter) Installed(ctx context.Context, bridge string) (bool, error) {
	if !validBridge(bridge) {
		return false, fmt.Errorf("egress: invalid bridge name %q", bridge)
	}
	t, err := f.tables(ipv4)
	if err != nil {
		return false, err
	}
	fwd, in := chainNames(bridge)
	hook, err := forwardHook(ctx, t)
	if err != nil {
		return false, err
	}
	jumps := [][3]string{{"filter", hook, fwd}, {"filter", "INPUT", in}}
	for _, x := range extraTables {
		ok, err := t.hasTable(ctx, x.table, x.hook)
		if err != nil {
			return false, err
		}
		if ok {
			jumps = append(jumps, [3]string{x.table, x.hook, x.chain(bridge)})
		}
	}
	for _, j := range jumps {
		if ok, err := t.chainExists(ctx, j[0], j[2]); err != nil || !ok {
			return false, err
		}
		_, err := t.check(ctx, "-t", j[0], "-C", j[1], "-i", bridge, "-j", j[2])
		if errors.Is(err, errAbsent) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

// Backend describes the packet filter for logs and specs, e.g.
// "iptables v1.8.9 (nf_tables)".
func (f *Filter) Backend(ctx context.Context) (string, error) {
	t, err := f.tables(ipv4)
	if err != nil {
		return "", err
	}
	return t.backend(ctx)
}

// Release removes the rules of n once no lease uses it: holding the lock,
// it calls inUse (which reports whether any container, of any miner, is
// still attached to the network) and removes the rules only when it says
// no. It reports whether it removed them.
func (f *Filter) Release(ctx context.Context, n Network, inUse func(context.Context) (bool, error)) (bool, error) {
	unlock, err := f.begin(ctx, n.Bridge)
	if err != nil {
		return false, err
	}
	defer unlock()
	used, err := inUse(ctx)
	if err != nil {
		return false, fmt.Errorf("egress: is lease network %s in use: %w", n.Bridge, err)
	}
	if used {
		return false, nil
	}
	return true, f.remove(ctx, n.Bridge)
}

// Prune removes the rules of bridges that no longer exist on this host
// (lease networks deleted while their rules stayed, e.g. after a crash),
// and returns the bridges it cleaned up.
func (f *Filter) Prune(ctx context.Context) ([]string, error) {
	unlock, err := f.begin(ctx, "")
	if err != nil {
		return nil, err
	}
	defer unlock()
	var gone []string
	for _, fam := range []family{ipv4, ipv6} {
		t, err := f.tables(fam)
		if err != nil {
			if fam.v6 {
				break // no ip6tables: nothing of ours there either
			}
			return nil, err
		}
		chains, err := t.ownChains(ctx, "filter")
		if err != nil {
			if fam.v6 {
				break
			}
			return nil, err
		}
		for _, x := range extraTables {
			if ok, err := t.hasTable(ctx, x.table, x.hook); !ok {
				if err != nil && !fam.v6 {
					return nil, err
				}
				continue
			}
			more, err := t.ownChains(ctx, x.table)
			if err != nil && !fam.v6 {
				return nil, err
			}
			chains = append(chains, more...)
		}
		for _, c := range chains {
			b, ok := bridgeOfChain(c)
			if !ok || slices.Contains(gone, b) {
				continue
			}
			if _, err := net.InterfaceByName(b); err == nil {
				continue
			}
			gone = append(gone, b)
		}
	}
	var errs []error
	for _, b := range gone {
		errs = append(errs, f.remove(ctx, b))
	}
	return gone, errors.Join(errs...)
}

// remove deletes bridge's jumps and chains in both families; the caller
// holds the lock. IPv6 is best effort: a host without ip6tables has none
// of its chains.
func (f *Filter) remove(ctx context.Context, bridge string) error {
	fwd, in := chainNames(bridge)
	type own struct {
		table, chain string
		hooks        []string
		extra        bool // in a table the kernel may lack
	}
	chains := []own{{"filter", fwd, []string{"DOCKER-USER", "FORWARD"}, false}, {"filter", in, []string{"INPUT"}, false}}
	for _, x := range extraTables {
		chains = append(chains, own{x.table, x.chain(bridge), []string{x.hook}, true})
	}
	var errs []error
	removed := false
	for _, fam := range []family{ipv4, ipv6} {
		t, err := f.tables(fam)
		if err != nil {
			if !fam.v6 {
				errs = append(errs, err)
			}
			continue
		}
		for _, c := range chains {
			// A table whose presence cannot be told is treated as
			// present: removing is tried, and its error reported.
			if c.extra {
				if ok, err := t.hasTable(ctx, c.table, c.hooks[0]); !ok && err == nil {
					continue
				}
			}
			ok, err := t.chainExists(ctx, c.table, c.chain)
			if err != nil && !fam.v6 {
				errs = append(errs, err)
			}
			if !ok {
				continue
			}
			for _, hook := range c.hooks {
				if has, _ := t.chainExists(ctx, c.table, hook); has {
					errs = append(errs, t.deleteJumps(ctx, c.table, hook, bridge, c.chain))
				}
			}
			errs = append(errs, t.deleteChain(ctx, c.table, c.chain))
			removed = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("egress: remove filter of %s: %w", bridge, err)
	}
	if removed {
		f.log.Info("lease network filter removed", "bridge", bridge)
	}
	return nil
}

// Remove deletes the rules of bridge whatever uses it (tests, operators).
func (f *Filter) Remove(ctx context.Context, bridge string) error {
	unlock, err := f.begin(ctx, bridge)
	if err != nil {
		return err
	}
	defer unlock()
	return f.remove(ctx, bridge)
}

// begin starts a change of the packet filter: it checks bridge (unless
// empty) and that iptables can be run, then takes the lock (whose
// directory needs root too, so the permission error comes first).
func (f *Filter) begin(ctx context.Context, bridge string) (func(), error) {
	if bridge != "" && !validBridge(bridge) {
		return nil, fmt.Errorf("egress: invalid bridge name %q", bridge)
	}
	if _, err := f.tables(ipv4); err != nil {
		return nil, err
	}
	return f.lock(ctx)
}

// lockPoll is how often a waiting lock retries.
const lockPoll = 20 * time.Millisecond

// lock takes the in-process mutex and the host-wide file lock, waiting at
// most until ctx ends.
func (f *Filter) lock(ctx context.Context) (func(), error) {
	f.mu.Lock()
	if err := os.MkdirAll(filepath.Dir(f.cfg.LockPath), 0o755); err != nil {
		f.mu.Unlock()
		return nil, fmt.Errorf("egress: lock directory: %w", err)
	}
	file, err := os.OpenFile(f.cfg.LockPath, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		f.mu.Unlock()
		return nil, fmt.Errorf("egress: open lock: %w", err)
	}
	for {
		err := unix.Flock(int(file.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			file.Close()
			f.mu.Unlock()
			return nil, fmt.Errorf("egress: lock %s: %w", f.cfg.LockPath, err)
		}
		select {
		case <-ctx.Done():
			file.Close()
			f.mu.Unlock()
			return nil, fmt.Errorf("egress: waiting for %s: %w", f.cfg.LockPath, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
	return func() {
		file.Close() // releases the flock
		f.mu.Unlock()
	}, nil
}
