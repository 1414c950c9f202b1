package egress

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
	for _, want := range []string{"-d fd00:1::/64 -j RETURN", "-d fd00::53/128 -p udp", "-d fe80::/10 -j REJECT --reject-with icmp6-adm-prohibited", "--icmpv6-type neighbour-solicitation"} {
		if !strings.Contains(v6, want) {
			t.Errorf("IPv6 script lacks %q", want)
		}
	}
	if strings.Contains(v6, "10.1.0.0") {
		t.Error("IPv6 script holds an IPv4 range")
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
		for _, c := range []string{fwd, in} {
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

// TestInstallReleasePrune installs the filter for a bridge the test
// creates, checks the chains and jumps the packet filter holds, that a
// second install adds nothing, that Release keeps the rules while the
// network is in use and removes every trace of them once it is not, and
// that Prune removes rules left for a bridge that is gone.
func TestInstallReleasePrune(t *testing.T) {
	requireNetAdmin(t)
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
			go func() { errs <- f.Remove(ctx, bridge) }()
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
