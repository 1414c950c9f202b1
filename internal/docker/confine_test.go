package docker_test

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/docker"
	"github.com/nicompute/nicompute/internal/egress"
	"github.com/nicompute/nicompute/internal/nictest"
)

// Address pools of the stand-in machines: 198.18.0.0/15 (benchmarking,
// not blocked) is the internet, 10.128.0.0/9 a private network.
var (
	internetPool = netip.MustParsePrefix("198.18.0.0/15")
	privatePool  = netip.MustParsePrefix("10.128.0.0/9")
)

// target is somewhere a lease tries to open a TCP connection to.
type target struct {
	name string
	addr netip.Addr
	port int
}

// TestLeaseNetworkConfined runs two leases and stand-ins, in network
// namespaces the test creates, for the internet and for a private network,
// plus listeners on two host addresses (the lease network's gateway and
// the host end of a veth). Without the packet filter (today's engine
// default) a lease reaches all but its neighbour; with the filter of
// package egress it reaches only the internet stand-in, a client on the
// private network still logs in to it over SSH through its published port
// (replies pass, and the server sees the client's own address), and an
// allowed range becomes reachable.
func TestLeaseNetworkConfined(t *testing.T) {
	t.Parallel()
	nictest.RequireNetAdmin(t)
	e := newEnv(t)
	ctx := t.Context()
	inet := nictest.NewNetns(t, internetPool)
	priv := nictest.NewNetns(t, privatePool)
	lnet := e.leaseNetwork(t)
	hostListen := func(addr netip.Addr) target {
		ln, err := net.Listen("tcp", net.JoinHostPort(addr.String(), "0"))
		if err != nil {
			t.Fatalf("listen on host address %s: %v", addr, err)
		}
		return target{"host " + addr.String(), addr, nictest.ServeHello(t, ln, "host")}
	}
	internet := target{"internet stand-in", inet.NSAddr, inet.Serve(t, 0)}
	private := target{"private network", priv.NSAddr, priv.Serve(t, 0)}
	gateway := hostListen(lnet.Gateways[0])
	hostAddr := hostListen(inet.HostAddr)

	signer := nictest.SSHKey(t)
	a := e.spec(t, "a", signer.PublicKey())
	a.HostIP = priv.HostAddr.String() // the private network's client logs in here
	b := e.spec(t, "b", signer.PublicKey())
	for _, spec := range []docker.Spec{a, b} {
		if _, err := e.rt.Create(ctx, spec); err != nil {
			t.Fatalf("Create %s: %v", spec.LeaseID, err)
		}
		if err := e.rt.Start(ctx, spec.LeaseID); err != nil {
			t.Fatalf("Start %s: %v", spec.LeaseID, err)
		}
	}
	e.execDetached(t, "b", "nc", "-ll", "-p", "8080", "-e", "echo", "hello from neighbour")
	bAddr := e.inspect(t, "b").NetworkSettings.Networks[e.network].IPAddress
	neighbour := target{"neighbouring lease", bAddr, 8080}

	probe := func(tg target) (bool, string) {
		out, _ := e.exec(t, "a", "timeout", "8", "nc", "-w", "3", tg.addr.String(), strconv.Itoa(tg.port))
		return strings.Contains(out, "hello from"), strings.TrimSpace(out)
	}
	expect := func(when string, want map[string]bool, tgs ...target) {
		t.Helper()
		for _, tg := range tgs {
			got, out := probe(tg)
			if got != want[tg.name] {
				t.Errorf("%s: lease reaches %s (%s:%d) = %v, want %v (nc: %q)", when, tg.name, tg.addr, tg.port, got, want[tg.name], out)
			}
		}
	}
	all := []target{internet, private, gateway, hostAddr}

	// Today's engine default, and a check that every stand-in works. (The
	// neighbour is out of reach already: the lease network disables
	// inter-container traffic, see TestTenantIsolation.)
	expect("without the filter", map[string]bool{
		internet.name: true, private.name: true, gateway.name: true, hostAddr.name: true,
	}, all...)
	if t.Failed() {
		t.FailNow()
	}

	lock := filepath.Join(t.TempDir(), "egress.lock")
	f, err := egress.New(egress.Config{LockPath: lock, Logger: nictest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Remove(context.Background(), lnet.Bridge); err != nil {
			t.Errorf("remove the filter: %v", err)
		}
	})
	if err := f.Install(ctx, egress.Network{Bridge: lnet.Bridge, IPv6: lnet.IPv6}); err != nil {
		t.Fatalf("Install: %v", err)
	}
	expect("with the filter", map[string]bool{internet.name: true}, append(all, neighbour)...)

	// A client on the private network logs in through the published port:
	// the lease's replies pass, and the server sees the client's address.
	out, err := sshFrom(t, priv, net.JoinHostPort(priv.HostAddr.String(), strconv.Itoa(a.SSHPort)), signer, "echo $SSH_CONNECTION")
	if err != nil {
		t.Fatalf("ssh from the private network with the filter installed: %v", err)
	}
	if f := strings.Fields(out); len(f) == 0 || f[0] != priv.NSAddr.String() {
		t.Errorf("SSH_CONNECTION %q: the server does not see the client's address %s", out, priv.NSAddr)
	}

	// Port forwarding (ssh -L, ssh -D) connects from the lease's own
	// network namespace: the filter holds for it too.
	var nc net.Conn
	priv.Do(t, func() {
		nc, err = net.DialTimeout("tcp", net.JoinHostPort(priv.HostAddr.String(), strconv.Itoa(a.SSHPort)), 5*time.Second)
	})
	if err != nil {
		t.Fatal(err)
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, "lease", &ssh.ClientConfig{
		User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(sc, chans, reqs)
	defer client.Close()
	for _, tg := range append(all, neighbour) {
		fc, err := client.Dial("tcp", net.JoinHostPort(tg.addr.String(), strconv.Itoa(tg.port)))
		if err == nil {
			fc.Close()
		}
		if reached := err == nil; reached != (tg.name == internet.name) {
			t.Errorf("ssh -L through the lease to %s (%s:%d): connected %v (%v)", tg.name, tg.addr, tg.port, reached, err)
		}
	}

	// The operator allows the private network.
	f2, err := egress.New(egress.Config{Allow: []netip.Prefix{priv.Prefix}, LockPath: lock, Logger: nictest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := f2.Install(ctx, egress.Network{Bridge: lnet.Bridge}); err != nil {
		t.Fatalf("Install with an allowed range: %v", err)
	}
	expect("with the private network allowed", map[string]bool{internet.name: true, private.name: true}, all...)
}

// leaseNetwork returns the test's lease network, which has a gateway.
func (e *env) leaseNetwork(t *testing.T) docker.LeaseNetwork {
	t.Helper()
	lnet, err := e.rt.LeaseNetwork(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(lnet.Gateways) == 0 {
		t.Fatalf("lease network %+v has no gateway", lnet)
	}
	return lnet
}

// execDetached starts argv in the lease's container and returns at once.
func (e *env) execDetached(tb testing.TB, lease string, argv ...string) {
	tb.Helper()
	name := "nicompute-" + e.instance + "-" + lease
	cr, err := e.cli.ExecCreate(tb.Context(), name, client.ExecCreateOptions{Cmd: argv})
	if err != nil {
		tb.Fatalf("exec create: %v", err)
	}
	if _, err := e.cli.ExecStart(tb.Context(), cr.ID, client.ExecStartOptions{Detach: true}); err != nil {
		tb.Fatalf("exec start: %v", err)
	}
}

// sshFrom logs in to addr from inside ns as root with signer, retrying
// for up to 15 s while the lease's server starts, and runs cmd.
func sshFrom(tb testing.TB, ns *nictest.Netns, addr string, signer ssh.Signer, cmd string) (string, error) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := sshOnce(tb, ns, addr, signer, cmd)
		if err == nil || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func sshOnce(tb testing.TB, ns *nictest.Netns, addr string, signer ssh.Signer, cmd string) (string, error) {
	var nc net.Conn
	var err error
	ns.Do(tb, func() { nc, err = net.DialTimeout("tcp", addr, 5*time.Second) })
	if err != nil {
		return "", err
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, &ssh.ClientConfig{
		User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // a fresh lease's fresh key
	})
	if err != nil {
		nc.Close()
		return "", err
	}
	c := ssh.NewClient(sc, chans, reqs)
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	out, err := sess.Output(cmd)
	return string(out), err
}
