package egress

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nicompute/nicompute/internal/nictest"
)

// dropNetCaps drops CAP_NET_RAW and CAP_NET_ADMIN from the calling thread,
// as a lease container runs (Docker's default set less NET_RAW). The
// thread is one Netns.Do discards.
func dropNetCaps() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	for _, c := range []uint{unix.CAP_NET_RAW, unix.CAP_NET_ADMIN} {
		data[c/32].Effective &^= 1 << (c % 32)
		data[c/32].Permitted &^= 1 << (c % 32)
		data[c/32].Inheritable &^= 1 << (c % 32)
	}
	return unix.Capset(&hdr, &data[0])
}

// sendFrom sends one UDP datagram from src to dst with IPV6_FREEBIND,
// which needs no capability.
func sendFrom(src, dst netip.AddrPort, msg string) error {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1) })
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp6", src.String())
	if err != nil {
		return err
	}
	defer pc.Close()
	_, err = pc.WriteTo([]byte(msg), net.UDPAddrFromAddrPort(dst))
	return err
}

// TestSpoofedReplyIPv6: a lease without CAP_NET_RAW sends a datagram from
// a refused address P to a public address Q (allowed: it would open a
// conntrack entry P→Q), then one from Q to P, the reply direction of that
// entry, which every chain's reply pass lets through. The raw table's
// anti-spoofing chain drops both forged packets, so nothing reaches P: not
// a private address behind the host, not the host's own address, and the
// host's own service never answers the renter's server. Everything runs
// in network namespaces the test creates.
func TestSpoofedReplyIPv6(t *testing.T) {
	requireNetAdmin(t)
	router, lease, target, sfx, ip := nsHosts(t, "s")
	bridge := "nicsb" + sfx
	ip("-n", router, "link", "add", bridge, "type", "bridge")
	ip("-n", router, "addr", "add", "fd00:201::1/64", "dev", bridge, "nodad")
	ip("-n", router, "link", "set", bridge, "up")
	ip("-n", router, "link", "add", "lr"+sfx, "type", "veth", "peer", "name", "la", "netns", lease)
	ip("-n", router, "link", "set", "lr"+sfx, "master", bridge, "up")
	ip("-n", lease, "addr", "add", "fd00:201::2/64", "dev", "la", "nodad")
	ip("-n", lease, "link", "set", "la", "up")
	ip("-n", lease, "-6", "route", "add", "default", "via", "fd00:201::1")
	ip("-n", router, "link", "add", "rt"+sfx, "type", "veth", "peer", "name", "ta", "netns", target)
	ip("-n", router, "addr", "add", "fd00:99::1/64", "dev", "rt"+sfx, "nodad")
	ip("-n", router, "link", "set", "rt"+sfx, "up")
	ip("-n", target, "addr", "add", "fd00:99::2/64", "dev", "ta", "nodad")
	ip("-n", target, "link", "set", "ta", "up")
	ip("-n", target, "-6", "route", "add", "default", "via", "fd00:99::1")
	ip("-n", router, "-6", "route", "add", "default", "via", "fd00:99::2")
	// The target also holds the "public" address: the renter's own server
	// on the internet.
	ip("-n", target, "addr", "add", "2001:db8:5::9/128", "dev", "ta", "nodad")

	r, l, tg := &nictest.Netns{Name: router}, &nictest.Netns{Name: lease}, &nictest.Netns{Name: target}
	ip6 := func(args ...string) error {
		if out, err := exec.Command("ip6tables", append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip6tables %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	f, err := New(Config{Nameservers: []netip.Addr{}, LockPath: filepath.Join(t.TempDir(), "egress.lock"), Logger: nictest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var setupErr error
	r.Do(t, func() {
		if setupErr = os.WriteFile("/proc/sys/net/ipv6/conf/all/forwarding", []byte("1\n"), 0o644); setupErr != nil {
			return
		}
		// The engine's shape: FORWARD → DOCKER-USER, then what leaves the
		// bridge is accepted.
		for _, args := range [][]string{{"-N", "DOCKER-USER"}, {"-A", "DOCKER-USER", "-j", "RETURN"}, {"-A", "FORWARD", "-j", "DOCKER-USER"}, {"-A", "FORWARD", "-i", bridge, "!", "-o", bridge, "-j", "ACCEPT"}} {
			if setupErr = ip6(args...); setupErr != nil {
				return
			}
		}
		setupErr = f.Install(t.Context(), Network{Bridge: bridge, IPv6: true})
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}

	listen := func(ns *nictest.Netns, addr string) net.PacketConn {
		var pc net.PacketConn
		var err error
		ns.Do(t, func() { pc, err = net.ListenPacket("udp6", addr) })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc
	}
	got := func(pc net.PacketConn) string {
		pc.SetReadDeadline(time.Now().Add(3 * time.Second))
		b := make([]byte, 100)
		n, _, err := pc.ReadFrom(b)
		if err != nil {
			return ""
		}
		return string(b[:n])
	}
	public := netip.MustParseAddrPort("[2001:db8:5::9]:5000")
	for _, tc := range []struct {
		name string
		ns   *nictest.Netns
		at   netip.AddrPort
	}{
		{"private address behind the host (forward chain, guard)", tg, netip.MustParseAddrPort("[fd00:99::2]:4000")},
		{"the host's own address (input chain)", r, netip.MustParseAddrPort("[fd00:99::1]:4100")},
	} {
		pc := listen(tc.ns, tc.at.String())
		var sendErr error
		l.Do(t, func() {
			if sendErr = dropNetCaps(); sendErr != nil {
				return
			}
			if sendErr = sendFrom(netip.MustParseAddrPort("[fd00:201::2]:6000"), tc.at, "direct"); sendErr != nil {
				return
			}
			if sendErr = sendFrom(tc.at, public, "opens"); sendErr != nil {
				return
			}
			sendErr = sendFrom(public, tc.at, "spoofed reply")
		})
		if sendErr != nil {
			t.Fatalf("%s: %v", tc.name, sendErr)
		}
		if m := got(pc); m != "" {
			t.Errorf("%s: a lease without CAP_NET_RAW got %q through", tc.name, m)
		}
	}

	// The host's service answers the renter's server: a two-way exchange.
	svc := listen(r, "[fd00:99::1]:4200")
	go func() {
		b := make([]byte, 100)
		for {
			n, from, err := svc.ReadFrom(b)
			if err != nil {
				return
			}
			svc.WriteTo(append([]byte("answer to "), b[:n]...), from)
		}
	}()
	renter := listen(tg, "[2001:db8:5::9]:5001")
	var sendErr error
	l.Do(t, func() {
		if sendErr = dropNetCaps(); sendErr != nil {
			return
		}
		svcAddr := netip.MustParseAddrPort("[fd00:99::1]:4200")
		if sendErr = sendFrom(svcAddr, netip.MustParseAddrPort("[2001:db8:5::9]:5001"), "opens"); sendErr != nil {
			return
		}
		sendErr = sendFrom(netip.MustParseAddrPort("[2001:db8:5::9]:5001"), svcAddr, "query")
	})
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	for range 2 { // the first may be the lease's own "opens"
		if m := got(renter); strings.HasPrefix(m, "answer") {
			t.Errorf("the host's UDP service on its own address answered the renter's server: %q", m)
			break
		}
	}
}
