package egress

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Blocked destinations: what a lease may not open connections to unless
// the operator allows a range (Config.Allow). The host's own addresses,
// whatever they are, are refused separately (the INPUT chain).
var (
	blockedIPv4 = []string{
		"0.0.0.0/8",      // "this" network
		"10.0.0.0/8",     // private (RFC 1918)
		"100.64.0.0/10",  // carrier-grade NAT (RFC 6598)
		"127.0.0.0/8",    // loopback
		"169.254.0.0/16", // link-local, cloud metadata (169.254.169.254)
		"172.16.0.0/12",  // private, Docker's default pools
		"192.0.0.0/24",   // IETF protocol assignments
		"192.168.0.0/16", // private
		"224.0.0.0/4",    // multicast
		"240.0.0.0/4",    // reserved, limited broadcast
		"255.255.255.255/32",
	}
	blockedIPv6 = []string{
		"::/127",         // unspecified, loopback
		"::ffff:0:0/96",  // IPv4-mapped
		"64:ff9b:1::/48", // local-use NAT64
		"fc00::/7",       // unique local
		"fe80::/10",      // link-local
		"ff00::/8",       // multicast
		// The IPv6 family also refuses each blocked IPv4 range inside the
		// well-known NAT64 prefix 64:ff9b::/96 (see nat64): some NAT64
		// gateways translate to private addresses.
	}
)

// chainPrefix starts the name of every chain this package creates.
const chainPrefix = "NICOMPUTE-"

// maxChainName is iptables' limit on chain names.
const maxChainName = 28

// chainNames are the chains confining bridge: fwd judges what a lease
// sends through the host (jumped to from DOCKER-USER, or FORWARD), in what
// it sends to the host itself (jumped to from INPUT).
func chainNames(bridge string) (fwd, in string) {
	return chainPrefix + "F-" + bridge, chainPrefix + "I-" + bridge
}

// guardChain is the chain in the security table that refuses blocked
// destinations to bridge's forwarded packets whatever the filter table's
// jumps are at the moment (see guardScript).
func guardChain(bridge string) string { return chainPrefix + "S-" + bridge }

// spoofChain is the chain in the raw table that drops bridge's packets
// whose source address could not be a lease's (see spoofScript).
func spoofChain(bridge string) string { return chainPrefix + "R-" + bridge }

// extraTable is a table outside filter that holds one chain per bridge,
// jumped to from the table's built-in chain hook. The kernel may lack the
// table (iptable_raw, iptable_security; every common distribution kernel
// has both): the filter then goes without that chain, with a warning.
type extraTable struct {
	table, hook string
	chain       func(bridge string) string
	script      func(fam family, bridge string, rs ruleSet) string
	// missing is the warning logged when the kernel lacks the table.
	missing string
}

// extraTables are installed in this order: forged sources are dropped
// first, then the guard.
var extraTables = []extraTable{
	{table: "raw", hook: "PREROUTING", chain: spoofChain,
		script:  func(_ family, bridge string, _ ruleSet) string { return spoofScript(bridge) },
		missing: "the kernel has no raw table (iptable_raw): a lease may forge the source of its packets to pass as replies"},
	{table: "security", hook: "FORWARD", chain: guardChain, script: guardScript,
		missing: "the kernel has no security table (iptable_security): lease traffic is confined by DOCKER-USER alone, which the engine briefly skips whenever it creates or removes a network"},
}

// bridgeOfChain returns the bridge a chain of this package confines.
func bridgeOfChain(chain string) (string, bool) {
	for _, p := range []string{chainPrefix + "F-", chainPrefix + "I-", chainPrefix + "S-", chainPrefix + "R-"} {
		if b, ok := strings.CutPrefix(chain, p); ok && validBridge(b) {
			return b, true
		}
	}
	return "", false
}

// validBridge reports whether name can be a Linux interface name that the
// chain names and iptables arguments can carry: 1 to 15 of [A-Za-z0-9_.-],
// not starting with '-'.
func validBridge(name string) bool {
	if name == "" || len(name) > 15 || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return len(chainPrefix)+2+len(name) <= maxChainName
}

// family is what differs between the IPv4 and IPv6 packet filters.
type family struct {
	name    string // "IPv4", "IPv6"
	v6      bool
	blocked []string
	reject  string // --reject-with type
}

var (
	ipv4 = family{name: "IPv4", blocked: blockedIPv4, reject: "icmp-admin-prohibited"}
	ipv6 = family{name: "IPv6", v6: true, blocked: append(slices.Clone(blockedIPv6), nat64(blockedIPv4)...), reject: "icmp6-adm-prohibited"}
)

// nat64 maps IPv4 ranges into the well-known NAT64 prefix 64:ff9b::/96
// (RFC 6052).
func nat64(v4 []string) []string {
	out := make([]string, 0, len(v4))
	for _, s := range v4 {
		p := netip.MustParsePrefix(s)
		a := p.Addr().As4()
		b := [16]byte{0x00, 0x64, 0xff, 0x9b, 12: a[0], 13: a[1], 14: a[2], 15: a[3]}
		out = append(out, netip.PrefixFrom(netip.AddrFrom16(b), 96+p.Bits()).String())
	}
	return out
}

// ruleSet is what a lease network's chains let through besides replies.
type ruleSet struct {
	allow       []netip.Prefix // destinations always allowed
	nameservers []netip.Addr   // allowed on port 53
}

// restoreScript is the iptables-restore input that creates (or, with
// --noflush, atomically replaces) the two chains confining bridge in fam:
//
//	fwd: replies pass (packets of connections made to the lease, in the
//	     reply direction: a connection the lease opened to a blocked
//	     address while no filter was in force — after a reboot, before
//	     the miner started — is cut, not carried on); allowed ranges
//	     pass; DNS to the name servers passes;
//	     blocked ranges are rejected; the rest (the internet) returns to
//	     the engine's own rules.
//	in:  replies pass; allowed ranges and DNS to the name servers pass;
//	     everything else to the host is rejected. For IPv6, neighbour
//	     discovery passes so that a network with IPv6 keeps working.
//
// Rules are written as `iptables -S` prints them.
func restoreScript(fam family, bridge string, rs ruleSet) string {
	fwd, in := chainNames(bridge)
	var b strings.Builder
	b.WriteString("*filter\n")
	fmt.Fprintf(&b, ":%s - [0:0]\n:%s - [0:0]\n", fwd, in)
	writePasses(&b, fam, fwd, rs)
	for _, p := range fam.blocked {
		fmt.Fprintf(&b, "-A %s -d %s -j REJECT --reject-with %s\n", fwd, p, fam.reject)
	}
	writePasses(&b, fam, in, rs)
	if fam.v6 {
		for _, t := range []string{"router-solicitation", "neighbour-solicitation", "neighbour-advertisement"} {
			fmt.Fprintf(&b, "-A %s -p ipv6-icmp -m icmp6 --icmpv6-type %s -j RETURN\n", in, t)
		}
	}
	fmt.Fprintf(&b, "-A %s -j REJECT --reject-with %s\n", in, fam.reject)
	b.WriteString("COMMIT\n")
	return b.String()
}

// writePasses writes the rules every chain starts with: replies (in the
// reply direction only), the allowed ranges and DNS to the name servers
// return to the caller's chain.
func writePasses(b *strings.Builder, fam family, chain string, rs ruleSet) {
	fmt.Fprintf(b, "-A %s -m conntrack --ctstate RELATED,ESTABLISHED --ctdir REPLY -j RETURN\n", chain)
	for _, p := range rs.allow {
		if p.Addr().Is6() == fam.v6 {
			fmt.Fprintf(b, "-A %s -d %s -j RETURN\n", chain, p)
		}
	}
	for _, ns := range rs.nameservers {
		if ns.Is6() != fam.v6 {
			continue
		}
		for _, proto := range []string{"udp", "tcp"} {
			fmt.Fprintf(b, "-A %s -d %s -p %s -m %s --dport 53 -j RETURN\n", chain, netip.PrefixFrom(ns, ns.BitLen()), proto, proto)
		}
	}
}

// guardScript is the iptables-restore input that creates (or atomically
// replaces) bridge's guard chain in the security table: the forward
// chain's passes, then every blocked destination dropped.
//
// The Docker engine deletes and re-inserts its FORWARD → DOCKER-USER jump
// whenever it creates or removes a network; for that moment forwarded
// packets skip DOCKER-USER, and with it the forward chain, and a lease
// could reach a private address. The security table is judged after the
// filter table for every forwarded packet and the engine never touches
// it, so the guard holds through such moments (and if an operator's tool
// flushes DOCKER-USER). It drops rather than rejects: REJECT exists only
// in the filter table, where the forward chain answers at all other
// times.
func guardScript(fam family, bridge string, rs ruleSet) string {
	g := guardChain(bridge)
	var b strings.Builder
	b.WriteString("*security\n")
	fmt.Fprintf(&b, ":%s - [0:0]\n", g)
	writePasses(&b, fam, g, rs)
	for _, p := range fam.blocked {
		fmt.Fprintf(&b, "-A %s -d %s -j DROP\n", g, p)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// spoofScript is the iptables-restore input that creates (or atomically
// replaces) bridge's anti-spoofing chain in the raw table: a packet from
// the bridge whose source the host would not route back through the
// bridge — an address of the host itself, of another network, of the
// internet — is dropped before connection tracking sees it.
//
// Without it a lease could forge a "reply": send from a refused address P
// to a public address Q (allowed, so conntrack records P→Q), then from Q
// to P, which conntrack takes for the reply direction of that entry and
// every chain's reply pass lets through, to a private address or the host
// itself. IPv6 needs no capability for this (IPV6_FREEBIND binds any
// source, and IPv6 has no rp_filter sysctl); IPv4 needs CAP_NET_RAW,
// which leases lack, but gets the same check.
func spoofScript(bridge string) string {
	r := spoofChain(bridge)
	return "*raw\n:" + r + " - [0:0]\n-A " + r + " -m rpfilter --invert -j DROP\nCOMMIT\n"
}

// maxResolvConf bounds the resolv.conf read.
const maxResolvConf = 64 << 10

// parseNameservers returns the addresses of resolv.conf's nameserver
// lines, skipping loopback ones (the engine does not forward to those) and
// anything malformed; at most 16.
func parseNameservers(data []byte) []netip.Addr {
	if len(data) > maxResolvConf {
		data = data[:maxResolvConf]
	}
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() && len(out) < 16 {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || a.Zone() != "" {
			continue
		}
		a = a.Unmap()
		if a.IsLoopback() || a.IsUnspecified() {
			continue
		}
		out = append(out, a)
	}
	return out
}
