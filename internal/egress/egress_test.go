package egress

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nicompute/nicompute/internal/nictest"
)

func TestRestoreScript(t *testing.T) {
	rs := ruleSet{
		allow:       []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00:1::/64")},
		nameservers: []netip.Addr{netip.MustParseAddr("10.255.255.53"), netip.MustParseAddr("fd00::53")},
	}
	v4 := restoreScript(ipv4, "br-0123456789ab", rs)
	for _, want := range []string{
		":NICOMPUTE-F-br-0123456789ab - [0:0]\n",
		":NICOMPUTE-I-br-0123456789ab - [0:0]\n",
		"-A NICOMPUTE-F-br-0123456789ab -m conntrack --ctstate RELATED,ESTABLISHED --ctdir REPLY -j RETURN\n",
		"-A NICOMPUTE-I-br-0123456789ab -m conntrack --ctstate RELATED,ESTABLISHED --ctdir REPLY -j RETURN\n",
		"-A NICOMPUTE-F-br-0123456789ab -d 10.1.0.0/16 -j RETURN\n",
		"-A NICOMPUTE-F-br-0123456789ab -d 10.255.255.53/32 -p udp -m udp --dport 53 -j RETURN\n",
		"-A NICOMPUTE-F-br-0123456789ab -d 10.255.255.53/32 -p tcp -m tcp --dport 53 -j RETURN\n",
		"-A NICOMPUTE-F-br-0123456789ab -d 169.254.0.0/16 -j REJECT --reject-with icmp-admin-prohibited\n",
		"-A NICOMPUTE-F-br-0123456789ab -d 10.0.0.0/8 -j REJECT --reject-with icmp-admin-prohibited\n",
		"-A NICOMPUTE-I-br-0123456789ab -j REJECT --reject-with icmp-admin-prohibited\n",
	} {
		if !strings.Contains(v4, want) {
			t.Errorf("IPv4 script lacks %q", want)
		}
	}
	for _, notWant := range []string{"fd00", "icmp6", "-F ", "DOCKER-USER", "INPUT"} {
		if strings.Contains(v4, notWant) {
			t.Errorf("IPv4 script contains %q:\n%s", notWant, v4)
		}
	}
	// Allowed ranges and DNS come before the rejections.
	if strings.Index(v4, "-d 10.1.0.0/16 -j RETURN") > strings.Index(v4, "-d 10.0.0.0/8 -j REJECT") {
		t.Error("allowed range after the rejection that would hide it")
	}
	// The last rule of the input chain rejects everything.
	lines := strings.Split(strings.TrimSpace(v4), "\n")
	if lines[len(lines)-1] != "COMMIT" || !strings.HasSuffix(lines[len(lines)-2], "-j REJECT --reject-with icmp-admin-prohibited") {
		t.Errorf("script does not end with the input chain's rejection:\n%s", v4)
	}
	v6 := restoreScript(ipv6, "br-0123456789ab", rs)
	for _, want := range []string{"-d fd00:1::/64 -j RETURN", "-d fd00::53/128 -p udp", "-d fe80::/10 -j REJECT --reject-with icmp6-adm-prohibited", "--icmpv6-type neighbour-solicitation",
		// 10/8 and 169.254/16 through the well-known NAT64 prefix
		"-d 64:ff9b::a00:0/104 -j REJECT", "-d 64:ff9b::a9fe:0/112 -j REJECT"} {
		if !strings.Contains(v6, want) {
			t.Errorf("IPv6 script lacks %q", want)
		}
	}
	if strings.Contains(v6, "10.1.0.0") {
		t.Error("IPv6 script holds an IPv4 range")
	}
}

// TestGuardScript: the guard chain lives in the security table, passes
// what the forward chain passes, and drops (REJECT exists only in the
// filter table) every blocked destination.
func TestGuardScript(t *testing.T) {
	rs := ruleSet{
		allow:       []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		nameservers: []netip.Addr{netip.MustParseAddr("10.255.255.53")},
	}
	g := guardScript(ipv4, "br0", rs)
	if !strings.HasPrefix(g, "*security\n:NICOMPUTE-S-br0 - [0:0]\n") || !strings.HasSuffix(g, "COMMIT\n") {
		t.Fatalf("guard script:\n%s", g)
	}
	for _, want := range []string{
		"-A NICOMPUTE-S-br0 -m conntrack --ctstate RELATED,ESTABLISHED --ctdir REPLY -j RETURN\n",
		"-A NICOMPUTE-S-br0 -d 10.1.0.0/16 -j RETURN\n",
		"-A NICOMPUTE-S-br0 -d 10.255.255.53/32 -p udp -m udp --dport 53 -j RETURN\n",
	} {
		if !strings.Contains(g, want) {
			t.Errorf("guard lacks %q", want)
		}
	}
	for _, p := range blockedIPv4 {
		if !strings.Contains(g, "-A NICOMPUTE-S-br0 -d "+p+" -j DROP\n") {
			t.Errorf("guard does not drop %s", p)
		}
	}
	if strings.Contains(g, "REJECT") || strings.Index(g, "10.1.0.0/16 -j RETURN") > strings.Index(g, "-j DROP") {
		t.Errorf("guard rejects, or drops before its passes:\n%s", g)
	}
	if g6 := guardScript(ipv6, "br0", rs); !strings.Contains(g6, "-d fe80::/10 -j DROP") || strings.Contains(g6, "10.1.0.0") {
		t.Errorf("IPv6 guard:\n%s", g6)
	}
}

func TestChainNames(t *testing.T) {
	for _, tt := range []struct {
		bridge string
		ok     bool
	}{
		{"br-0123456789ab", true},
		{"docker0", true},
		{"nicompute_leas", true},
		{"", false},
		{"-j", false},
		{"br 1", false},
		{"a23456789012345x", false}, // 16 characters
		{"br;x", false},
	} {
		if got := validBridge(tt.bridge); got != tt.ok {
			t.Errorf("validBridge(%q) = %v", tt.bridge, got)
		}
		if !tt.ok {
			continue
		}
		fwd, in := chainNames(tt.bridge)
		for _, c := range []string{fwd, in, guardChain(tt.bridge)} {
			if len(c) > maxChainName {
				t.Errorf("chain %s longer than %d", c, maxChainName)
			}
			if b, ok := bridgeOfChain(c); !ok || b != tt.bridge {
				t.Errorf("bridgeOfChain(%s) = %q, %v", c, b, ok)
			}
		}
	}
	if _, ok := bridgeOfChain("NICOMPUTE-X-br0"); ok {
		t.Error("foreign chain taken for one of ours")
	}
}

func TestParseNameservers(t *testing.T) {
	conf := "# generated\nnameserver 10.255.255.53\nnameserver 127.0.0.53\nnameserver ::1\n" +
		"nameserver fe80::1%eth0\nsearch example.com\nnameserver not-an-ip\nnameserver 2001:db8::53 # v6\n" +
		"options ndots:0\n nameserver 8.8.8.8\nnameserver ::ffff:1.1.1.1\n"
	got := parseNameservers([]byte(conf))
	want := []netip.Addr{
		netip.MustParseAddr("10.255.255.53"), netip.MustParseAddr("2001:db8::53"),
		netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("1.1.1.1"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("parseNameservers = %v, want %v", got, want)
	}
}

// TestHostAddrsIn: an allowed range that holds an address of this host is
// found (the miner warns that leases reach the host there).
func TestHostAddrsIn(t *testing.T) {
	got := hostAddrsIn([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	if !slices.Contains(got, netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("hostAddrsIn(127.0.0.0/8) = %v, want 127.0.0.1", got)
	}
	if got := hostAddrsIn([]netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}); len(got) != 0 {
		t.Errorf("hostAddrsIn(TEST-NET-2) = %v, want none", got)
	}
	if got := hostAddrsIn(nil); got != nil {
		t.Errorf("hostAddrsIn(nil) = %v", got)
	}
}

func FuzzParseNameservers(f *testing.F) {
	f.Add([]byte("nameserver 10.0.0.1\nnameserver ::1\n"))
	f.Add([]byte("nameserver\nnameserver 1.2.3.4 5.6.7.8\n\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, a := range parseNameservers(b) {
			if !a.IsValid() || a.IsLoopback() || a.Zone() != "" || a.Is4In6() {
				t.Fatalf("accepted %v", a)
			}
			// Every address must make a valid rule.
			if s := restoreScript(ipv4, "br0", ruleSet{nameservers: []netip.Addr{a}}); strings.Count(s, "COMMIT") != 1 {
				t.Fatal("script without one COMMIT")
			}
		}
	})
}

// requireNetAdmin skips unless the test runs as root with iptables and
// iproute2, as the real packet-filter tests need.
func requireNetAdmin(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to change the packet filter")
	}
	for _, bin := range []string{"iptables", "iptables-restore", "ip"} {
		if _, err := lookBinary(bin); err != nil {
			tb.Skipf("needs %s: %v", bin, err)
		}
	}
}

// ownNetns moves the calling test into a network namespace of its own, so
// that its packet filter is the test's alone: miners of other packages'
// tests, running at the same time, prune rules of bridges they do not
// see. The test's OS thread is never unlocked; it ends with the test, and
// the namespace with it. Commands the test runs start in the namespace.
// The returned function moves another goroutine (for good) into it.
func ownNetns(t *testing.T) (enter func() error) {
	t.Helper()
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("a network namespace for the test: %v", err)
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	ns, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return func() error {
		runtime.LockOSThread()
		return unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET)
	}
}

// testBridge creates a bridge interface with a random name for the test,
// removed (with any rules left for it) when the test ends.
func testBridge(tb testing.TB, f *Filter) string {
	tb.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "nicbt" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "link", "add", name, "type", "bridge").CombinedOutput(); err != nil {
		tb.Skipf("cannot create a bridge: %v: %s", err, out)
	}
	tb.Cleanup(func() {
		exec.Command("ip", "link", "del", name).Run()
		f.Remove(context.Background(), name)
	})
	return name
}

// iptablesS returns `iptables -S` of the filter table.
func iptablesS(tb testing.TB) string {
	tb.Helper()
	out, err := exec.Command("iptables", "-w", "-t", "filter", "-S").Output()
	if err != nil {
		tb.Fatalf("iptables -S: %v", err)
	}
	return string(out)
}

// TestHasTable: only iptables' answer that a table does not exist means
// no; a failure to ask is an error, so the filter is never installed
// without a chain for a passing reason.
func TestHasTable(t *testing.T) {
	requireNetAdmin(t)
	tb, err := findTables(ipv4, "iptables")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := tb.hasTable(t.Context(), "filter", "INPUT"); !ok || err != nil {
		t.Errorf("filter table: %v, %v", ok, err)
	}
	if ok, err := tb.hasTable(t.Context(), "nosuchtable", "INPUT"); ok || err != nil {
		t.Errorf("a table that does not exist: %v, %v; want false, nil", ok, err)
	}
	broken := &tables{fam: ipv4, bin: "/bin/false", restore: "/bin/false"}
	if ok, err := broken.hasTable(t.Context(), "raw", "PREROUTING"); ok || err == nil {
		t.Errorf("iptables failing: %v, %v; want an error", ok, err)
	}
}

// TestInstallReleasePrune installs the filter for a bridge the test
// creates, checks the chains and jumps the packet filter holds, that a
// second install adds nothing, that Release keeps the rules while the
// network is in use and removes every trace of them once it is not, and
// that Prune removes rules left for a bridge that is gone.
func TestInstallReleasePrune(t *testing.T) {
	requireNetAdmin(t)
	ownNetns(t)
	ctx := t.Context()
	f, err := New(Config{
		Allow:       []netip.Prefix{netip.MustParsePrefix("10.123.0.0/16")},
		Nameservers: []netip.Addr{netip.MustParseAddr("10.255.255.53")},
		LockPath:    filepath.Join(t.TempDir(), "egress.lock"),
		Logger:      nictest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	bridge := testBridge(t, f)
	fwd, in := chainNames(bridge)
	n := Network{Bridge: bridge}
	if err := f.Check(ctx, n); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if ok, err := f.Installed(ctx, bridge); err != nil || ok {
		t.Fatalf("Installed before Install = %v, %v", ok, err)
	}
	for range 2 {
		if err := f.Install(ctx, n); err != nil {
			t.Fatalf("Install: %v", err)
		}
	}
	if ok, err := f.Installed(ctx, bridge); err != nil || !ok {
		t.Fatalf("Installed = %v, %v", ok, err)
	}
	rules := iptablesS(t)
	hook := "DOCKER-USER"
	if !strings.Contains(rules, "-N DOCKER-USER\n") {
		hook = "FORWARD"
	}
	for _, want := range []string{
		"-A " + hook + " -i " + bridge + " -j " + fwd + "\n",
		"-A INPUT -i " + bridge + " -j " + in + "\n",
		"-A " + fwd + " -d 10.123.0.0/16 -j RETURN\n",
		"-A " + fwd + " -d 169.254.0.0/16 -j REJECT --reject-with icmp-admin-prohibited\n",
		"-A " + in + " -j REJECT --reject-with icmp-admin-prohibited\n",
	} {
		if c := strings.Count(rules, want); c != 1 {
			t.Errorf("packet filter holds %q %d times, want once", want, c)
		}
	}
	// The chain's content is exactly what restoreScript wrote, in the
	// form iptables prints.
	for l := range strings.Lines(restoreScript(ipv4, bridge, f.rules)) {
		if strings.HasPrefix(l, "-A ") && !strings.Contains(rules, l) {
			t.Errorf("packet filter lacks %q", l)
		}
	}

	// Forged sources are dropped before connection tracking; the guard
	// refuses blocked destinations in the security table.
	for table, want := range map[string]string{
		"raw":      "-A PREROUTING -i " + bridge + " -j " + spoofChain(bridge) + "\n",
		"security": "-A FORWARD -i " + bridge + " -j " + guardChain(bridge) + "\n",
	} {
		out, err := exec.Command("iptables", "-w", "-t", table, "-S").Output()
		if err != nil {
			t.Fatalf("iptables -t %s -S: %v", table, err)
		}
		if !strings.Contains(string(out), want) {
			t.Errorf("%s table lacks %q:\n%s", table, want, out)
		}
		if table == "raw" && !strings.Contains(string(out), "-A "+spoofChain(bridge)+" -m rpfilter --invert -j DROP\n") {
			t.Errorf("anti-spoofing chain:\n%s", out)
		}
	}

	// IPv6 is confined too, although the network has none: containers
	// may hold link-local addresses.
	if hostHasIPv6() {
		out, err := exec.Command("ip6tables", "-w", "-t", "filter", "-S").Output()
		if err != nil {
			t.Fatalf("ip6tables -S: %v", err)
		}
		for _, want := range []string{"-A INPUT -i " + bridge + " -j " + in + "\n", "-A " + fwd + " -d fe80::/10 -j REJECT"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("IPv6 packet filter lacks %q", want)
			}
		}
	}

	// A jump removed by someone else is put back.
	if out, err := exec.Command("iptables", "-w", "-D", "INPUT", "-i", bridge, "-j", in).CombinedOutput(); err != nil {
		t.Fatalf("delete jump: %v: %s", err, out)
	}
	if err := f.Install(ctx, n); err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.Installed(ctx, bridge); !ok {
		t.Fatal("jump not repaired")
	}

	inUse := true
	used := func(context.Context) (bool, error) { return inUse, nil }
	if removed, err := f.Release(ctx, n, used); err != nil || removed {
		t.Fatalf("Release while in use = %v, %v", removed, err)
	}
	if !strings.Contains(iptablesS(t), fwd) {
		t.Fatal("rules removed while the network is in use")
	}
	inUse = false
	if removed, err := f.Release(ctx, n, used); err != nil || !removed {
		t.Fatalf("Release = %v, %v", removed, err)
	}
	if rules := iptablesS(t); strings.Contains(rules, bridge) {
		t.Fatalf("rules of %s left after Release:\n%s", bridge, rules)
	}
	for _, table := range []string{"security", "raw"} {
		if out, _ := exec.Command("iptables", "-w", "-t", table, "-S").Output(); strings.Contains(string(out), bridge) {
			t.Fatalf("%s rules of %s left after Release:\n%s", table, bridge, out)
		}
	}
	if out, _ := exec.Command("ip6tables", "-w", "-t", "filter", "-S").Output(); strings.Contains(string(out), bridge) {
		t.Fatalf("IPv6 rules of %s left after Release:\n%s", bridge, out)
	}

	// Rules of a bridge that is gone are pruned; others are not.
	if err := f.Install(ctx, n); err != nil {
		t.Fatal(err)
	}
	other := testBridge(t, f)
	if err := f.Install(ctx, Network{Bridge: other}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "link", "del", bridge).CombinedOutput(); err != nil {
		t.Fatalf("delete bridge: %v: %s", err, out)
	}
	pruned, err := f.Prune(ctx)
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if !slices.Contains(pruned, bridge) || slices.Contains(pruned, other) {
		t.Errorf("Prune removed %v; want %s and not %s", pruned, bridge, other)
	}
	rules = iptablesS(t)
	if strings.Contains(rules, bridge) || !strings.Contains(rules, "-N "+chainPrefix+"F-"+other+"\n") {
		t.Errorf("after Prune:\n%s", rules)
	}
	if err := f.Check(ctx, n); err == nil {
		t.Error("Check passed for a bridge that does not exist")
	}
}

// TestConcurrentRemove: two filters that do not share a lock file (an
// operator's tool, a miner configured apart) remove the same bridge's rules
// at once; both succeed, and nothing is left.
func TestConcurrentRemove(t *testing.T) {
	requireNetAdmin(t)
	enter := ownNetns(t)
	ctx := t.Context()
	var fs [2]*Filter
	for i := range fs {
		f, err := New(Config{Nameservers: []netip.Addr{}, LockPath: filepath.Join(t.TempDir(), "egress.lock"), Logger: nictest.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		fs[i] = f
	}
	bridge := testBridge(t, fs[0])
	for round := range 8 {
		if err := fs[0].Install(ctx, Network{Bridge: bridge}); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, len(fs))
		for _, f := range fs {
			go func() {
				if err := enter(); err != nil {
					errs <- err
					return
				}
				errs <- f.Remove(ctx, bridge)
			}()
		}
		for range fs {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: concurrent Remove: %v", round, err)
			}
		}
		if rules := iptablesS(t); strings.Contains(rules, bridge) {
			t.Fatalf("round %d: rules of %s left:\n%s", round, bridge, rules)
		}
	}
}

// nsHosts creates three network namespaces for a packet-filter test, named
// after tag and removed when the test ends: a router standing in for the
// miner's host, a lease behind it and a target. It returns their names, the
// random suffix of the names (for the test's interfaces) and a runner of
// `ip` that fails the test.
func nsHosts(t *testing.T, tag string) (router, lease, target, sfx string, ip func(...string)) {
	t.Helper()
	id := make([]byte, 3)
	rand.Read(id)
	sfx = hex.EncodeToString(id)
	router, lease, target = "nic"+tag+"r"+sfx, "nic"+tag+"l"+sfx, "nic"+tag+"t"+sfx
	ip = func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{router, lease, target} {
		ip("netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		ip("-n", ns, "link", "set", "lo", "up")
	}
	return router, lease, target, sfx, ip
}

// TestGuardWhileDockerUserSkipped builds a miner host in network
// namespaces (a router with a lease bridge whose FORWARD jumps to
// DOCKER-USER as the engine's does, a lease behind the bridge, a target
// holding a private and a public address) and checks that a lease cannot
// reach the private address while the FORWARD → DOCKER-USER jump is
// missing, as it is for a moment whenever the engine creates or removes a
// network: the security table's guard chain still drops it. The public
// address stays reachable throughout, and removing the filter removes the
// guard too. No address outside the test's namespaces is touched.
func TestGuardWhileDockerUserSkipped(t *testing.T) {
	requireNetAdmin(t)
	router, lease, target, sfx, ip := nsHosts(t, "g")
	bridge := "nicgb" + sfx
	const (
		gateway  = "10.201.0.1/24"
		leaseIP  = "10.201.0.2/24"
		private  = "192.168.201.2"
		public   = "198.18.201.2" // not a blocked range: stands in for the internet
		routerPr = "192.168.201.1/24"
		routerPu = "198.18.201.1/24"
	)
	ip("-n", router, "link", "add", bridge, "type", "bridge")
	ip("-n", router, "addr", "add", gateway, "dev", bridge)
	ip("-n", router, "link", "set", bridge, "up")
	ip("-n", router, "link", "add", "lr"+sfx, "type", "veth", "peer", "name", "la", "netns", lease)
	ip("-n", router, "link", "set", "lr"+sfx, "master", bridge, "up")
	ip("-n", lease, "addr", "add", leaseIP, "dev", "la")
	ip("-n", lease, "link", "set", "la", "up")
	ip("-n", lease, "route", "add", "default", "via", "10.201.0.1")
	ip("-n", router, "link", "add", "rt"+sfx, "type", "veth", "peer", "name", "ta", "netns", target)
	ip("-n", router, "addr", "add", routerPr, "dev", "rt"+sfx)
	ip("-n", router, "addr", "add", routerPu, "dev", "rt"+sfx)
	ip("-n", router, "link", "set", "rt"+sfx, "up")
	ip("-n", target, "addr", "add", private+"/24", "dev", "ta")
	ip("-n", target, "addr", "add", public+"/24", "dev", "ta")
	ip("-n", target, "link", "set", "ta", "up")
	ip("-n", target, "route", "add", "10.201.0.0/24", "via", "192.168.201.1")

	r, l, tg := &nictest.Netns{Name: router}, &nictest.Netns{Name: lease}, &nictest.Netns{Name: target}
	var ln net.Listener
	var err error
	tg.Do(t, func() { ln, err = net.Listen("tcp", ":0") })
	if err != nil {
		t.Fatal(err)
	}
	port := nictest.ServeHello(t, ln, "target")
	reaches := func(addr string) bool {
		t.Helper()
		var got bool
		l.Do(t, func() {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, strconv.Itoa(port)), 2*time.Second)
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			b, _ := io.ReadAll(c)
			got = strings.Contains(string(b), "hello from target")
		})
		return got
	}
	// inRouter runs the router's packet filter commands and the Filter in
	// the router's namespace.
	inRouter := func(fn func() error) {
		t.Helper()
		var err error
		r.Do(t, func() { err = fn() })
		if err != nil {
			t.Fatal(err)
		}
	}
	iptables := func(args ...string) error {
		if out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	inRouter(func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
			return err
		}
		// The engine's shape: FORWARD jumps to DOCKER-USER, which returns.
		for _, args := range [][]string{{"-N", "DOCKER-USER"}, {"-A", "DOCKER-USER", "-j", "RETURN"}, {"-I", "FORWARD", "-j", "DOCKER-USER"}} {
			if err := iptables(args...); err != nil {
				return err
			}
		}
		return nil
	})
	if !reaches(private) || !reaches(public) {
		t.Fatal("the lease reaches neither target without the filter: the test network is broken")
	}

	f, err := New(Config{Nameservers: []netip.Addr{}, LockPath: filepath.Join(t.TempDir(), "egress.lock"), Logger: nictest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var security bool
	inRouter(func() error {
		tb, err := f.tables(ipv4)
		if err != nil {
			return err
		}
		if security, err = tb.hasTable(t.Context(), "security", "FORWARD"); err != nil {
			return err
		}
		return f.Install(t.Context(), Network{Bridge: bridge})
	})
	if !security {
		t.Skip("the kernel has no security table (iptable_security): no guard to test")
	}
	if reaches(private) {
		t.Fatal("filter installed: the lease reaches a private address")
	}
	if !reaches(public) {
		t.Fatal("filter installed: the lease does not reach the public address")
	}

	// What the engine does for a moment whenever it creates a network.
	inRouter(func() error { return iptables("-D", "FORWARD", "-j", "DOCKER-USER") })
	if reaches(private) {
		t.Error("FORWARD → DOCKER-USER jump missing: the lease reaches a private address")
	}
	if !reaches(public) {
		t.Error("FORWARD → DOCKER-USER jump missing: the lease does not reach the public address")
	}
	var installed bool
	inRouter(func() (err error) { installed, err = f.Installed(t.Context(), bridge); return err })
	if !installed {
		t.Error("Installed = false with every chain of the bridge in place")
	}

	// The guard's jump is part of what Installed checks and Install repairs.
	inRouter(func() error {
		return iptables("-t", "security", "-D", "FORWARD", "-i", bridge, "-j", guardChain(bridge))
	})
	inRouter(func() (err error) { installed, err = f.Installed(t.Context(), bridge); return err })
	if installed {
		t.Error("Installed = true without the guard's jump")
	}
	inRouter(func() error { return f.Install(t.Context(), Network{Bridge: bridge}) })
	if reaches(private) {
		t.Error("guard repaired: the lease reaches a private address")
	}

	// Removing the filter removes the guard.
	var left string
	inRouter(func() error {
		if err := f.Remove(t.Context(), bridge); err != nil {
			return err
		}
		out, err := exec.Command("iptables", "-w", "-t", "security", "-S").Output()
		left = string(out)
		return err
	})
	if strings.Contains(left, bridge) {
		t.Errorf("guard left after Remove:\n%s", left)
	}
	if !reaches(private) {
		t.Error("filter removed: the lease still cannot reach the private address")
	}
}
