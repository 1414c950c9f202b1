package docker_test

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/nicompute/nicompute/internal/docker"
	"github.com/nicompute/nicompute/internal/egress"
	"github.com/nicompute/nicompute/internal/nictest"
)

// newFilter returns a packet filter with a lock file of the test's own,
// removed from bridge when the test ends.
func newFilter(t *testing.T, bridge string) *egress.Filter {
	t.Helper()
	f, err := egress.New(egress.Config{LockPath: filepath.Join(t.TempDir(), "egress.lock"), Logger: nictest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Remove(context.Background(), bridge); err != nil {
			t.Errorf("remove the filter: %v", err)
		}
	})
	return f
}

// lineCounter accepts connections on ln and counts the lines received on
// all of them.
func lineCounter(t *testing.T, ln net.Listener) *atomic.Int64 {
	t.Helper()
	var lines atomic.Int64
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					lines.Add(1)
				}
			}()
		}
	}()
	return &lines
}

// TestLeaseConnectionOpenedBeforeFilter: a lease that opened connections
// to the host and to a private network while no filter was in force (the
// engine restarts leases after a reboot before the miner starts, an
// operator had run unconfined) cannot keep using them once the filter is
// installed: the filter lets through replies to connections made to the
// lease, not the later packets of connections the lease made itself.
func TestLeaseConnectionOpenedBeforeFilter(t *testing.T) {
	t.Parallel()
	nictest.RequireNetAdmin(t)
	e := newEnv(t)
	ctx := t.Context()
	priv := nictest.NewNetns(t, privatePool)
	lnet := e.leaseNetwork(t)
	hostLn, err := net.Listen("tcp", net.JoinHostPort(lnet.Gateways[0].String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	var privLn net.Listener
	priv.Do(t, func() { privLn, err = net.Listen("tcp", net.JoinHostPort(priv.NSAddr.String(), "0")) })
	if err != nil {
		t.Fatal(err)
	}
	targets := []struct {
		name  string
		addr  net.Addr
		lines *atomic.Int64
	}{
		{"host", hostLn.Addr(), lineCounter(t, hostLn)},
		{"private network", privLn.Addr(), lineCounter(t, privLn)},
	}

	s := e.spec(t, "early", nictest.SSHKey(t).PublicKey())
	if _, err := e.rt.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Start(ctx, s.LeaseID); err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		a := tg.addr.(*net.TCPAddr)
		// A line every 100 ms for at most a minute, over one connection.
		e.execDetached(t, s.LeaseID, "sh", "-c",
			"i=0; while [ $i -lt 600 ]; do echo $i; i=$((i+1)); sleep 0.1; done | nc "+a.IP.String()+" "+strconv.Itoa(a.Port))
	}
	waitLines := func(c *atomic.Int64, n int64) bool {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if c.Load() >= n {
				return true
			}
		}
		return false
	}
	for _, tg := range targets {
		if !waitLines(tg.lines, 3) {
			t.Fatalf("no lines from the lease reach the %s without the filter", tg.name)
		}
	}

	f := newFilter(t, lnet.Bridge)
	if err := f.Install(ctx, egress.Network{Bridge: lnet.Bridge, IPv6: lnet.IPv6}); err != nil {
		t.Fatalf("Install: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // lines in flight arrive
	before := make([]int64, len(targets))
	for i, tg := range targets {
		before[i] = tg.lines.Load()
	}
	time.Sleep(2 * time.Second)
	for i, tg := range targets {
		if got := tg.lines.Load(); got > before[i] {
			t.Errorf("%d more lines reached the %s over a connection the lease opened before the filter was installed", got-before[i], tg.name)
		}
	}
}

// TestLeaseIPv6LinkLocal: a lease network without IPv6 gives containers no
// IPv6 address on this engine, but engines from Docker 26 on leave IPv6
// link-local addresses on every container interface, and through them the
// host (the bridge's own fe80:: address) and neighbouring leases answer.
// Lease containers turn IPv6 off themselves, and the packet filter holds
// IPv6 as it holds IPv4 whether or not the network has IPv6: a container
// made to keep its link-local address (as such an engine would) reaches
// neither the host nor its neighbour once the filter is installed.
func TestLeaseIPv6LinkLocal(t *testing.T) {
	t.Parallel()
	nictest.RequireNetAdmin(t)
	e := newEnv(t)
	ctx := t.Context()
	lnet := e.leaseNetwork(t)
	if lnet.IPv6 {
		t.Fatalf("the runtime created lease network %s with IPv6", lnet.Name)
	}

	// A lease of the runtime has no IPv6 on any interface.
	s := e.spec(t, "v6", nictest.SSHKey(t).PublicKey())
	if _, err := e.rt.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Start(ctx, s.LeaseID); err != nil {
		t.Fatal(err)
	}
	for _, sysctl := range []string{"all", "default", "eth0"} {
		id := e.inspect(t, s.LeaseID).ID
		if out := strings.TrimSpace(e.execID(t, id, true, "cat", "/proc/sys/net/ipv6/conf/"+sysctl+"/disable_ipv6")); out != "1" {
			t.Errorf("lease: net.ipv6.conf.%s.disable_ipv6 = %q, want 1", sysctl, out)
		}
	}

	// Containers as an engine that leaves link-local IPv6 on makes them.
	bridgeLL := linkLocalOf(t, lnet.Bridge)
	hostLn, err := net.Listen("tcp", "[::]:0") // as a host service listens
	if err != nil {
		t.Fatal(err)
	}
	hostPort := nictest.ServeHello(t, hostLn, "host")
	a := e.linkLocalContainer(t, lnet.ID, "v6a")
	b := e.linkLocalContainer(t, lnet.ID, "v6b")
	e.execID(t, b, false, "nc", "-ll", "-p", "8080", "-e", "echo", "hello from neighbour")
	bLL := strings.TrimSpace(e.execID(t, b, true, "sh", "-c", "ip -6 addr show dev eth0 scope link | sed -n 's/.*inet6 \\(fe80[^/]*\\).*/\\1/p'"))
	if _, err := netip.ParseAddr(bLL); err != nil {
		t.Skipf("this host gives containers no IPv6 link-local address (%q): nothing to test", bLL)
	}
	probe := func(addr string, port int) string {
		return e.execID(t, a, true, "timeout", "8", "nc", "-w", "3", addr+"%eth0", strconv.Itoa(port))
	}
	targets := []struct {
		name, addr string
		port       int
	}{
		{"host", bridgeLL.String(), hostPort},
		{"neighbouring container", bLL, 8080},
	}
	for _, tg := range targets {
		if out := probe(tg.addr, tg.port); !strings.Contains(out, "hello from") {
			t.Fatalf("without the filter the %s at %s does not answer over IPv6 link-local (%q); the test cannot tell", tg.name, tg.addr, out)
		}
	}
	f := newFilter(t, lnet.Bridge)
	if err := f.Install(ctx, egress.Network{Bridge: lnet.Bridge, IPv6: lnet.IPv6}); err != nil {
		t.Fatalf("Install: %v", err)
	}
	for _, tg := range targets {
		if out := probe(tg.addr, tg.port); strings.Contains(out, "hello from") {
			t.Errorf("with the filter a container reaches the %s at %s%%eth0 over IPv6 link-local: %q", tg.name, tg.addr, out)
		}
	}
}

// linkLocalOf returns the IPv6 link-local address of interface name.
func linkLocalOf(t *testing.T, name string) netip.Addr {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().IsLinkLocalUnicast() {
				return p.Addr()
			}
		}
		if time.Now().After(deadline) {
			t.Skipf("bridge %s has no IPv6 link-local address (IPv6 off on this host): nothing to test", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// linkLocalContainer runs a container of the test image on the network
// with netID, IPv6 left on as engines from Docker 26 leave it, NET_RAW
// dropped as in a lease, and labelled for the test's clean-up.
func (e *env) linkLocalContainer(t *testing.T, netID, name string) string {
	t.Helper()
	ctx := t.Context()
	init := true
	res, err := e.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: "nicompute-" + e.instance + "-" + name,
		Config: &container.Config{
			Image:  e.image,
			Cmd:    []string{"sleep", "600"},
			Labels: map[string]string{docker.LabelMiner: e.instance},
		},
		HostConfig: &container.HostConfig{
			NetworkMode: container.NetworkMode(netID),
			CapDrop:     []string{"NET_RAW", "MKNOD"},
			Init:        &init,
			Sysctls:     map[string]string{"net.ipv6.conf.all.disable_ipv6": "0", "net.ipv6.conf.eth0.disable_ipv6": "0"},
		},
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{netID: {}}},
	})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	if _, err := e.cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	// Duplicate address detection takes a moment before the address can
	// be used.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if out := e.execID(t, res.ID, true, "ip", "-6", "addr", "show", "dev", "eth0"); strings.Contains(out, "fe80") && !strings.Contains(out, "tentative") {
			break
		}
	}
	return res.ID
}

// execID runs argv in container id; with wait it returns the output,
// otherwise it returns at once.
func (e *env) execID(t *testing.T, id string, wait bool, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cr, err := e.cli.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: argv, AttachStdout: wait, AttachStderr: wait})
	if err != nil {
		t.Fatalf("exec create: %v", err)
	}
	if !wait {
		if _, err := e.cli.ExecStart(ctx, cr.ID, client.ExecStartOptions{Detach: true}); err != nil {
			t.Fatalf("exec start: %v", err)
		}
		return ""
	}
	att, err := e.cli.ExecAttach(ctx, cr.ID, client.ExecAttachOptions{})
	if err != nil {
		t.Fatalf("exec attach: %v", err)
	}
	defer att.Close()
	var out strings.Builder
	stdcopy.StdCopy(&out, &out, att.Reader)
	return out.String()
}
