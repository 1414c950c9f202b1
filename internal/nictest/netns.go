package nictest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Netns is a network namespace a test created, joined to the host by a veth
// pair on a /30: the host end holds HostAddr (an address of the host), the
// namespace end NSAddr. It stands in for a machine on another network —
// the internet, a private network — without touching any real one.
type Netns struct {
	Name     string
	HostAddr netip.Addr
	NSAddr   netip.Addr
	Prefix   netip.Prefix
	HostIf   string
}

// RequireNetAdmin skips the test unless it runs as root with iproute2 and
// iptables, as tests that build network namespaces or change the packet
// filter need.
func RequireNetAdmin(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root for network namespaces and the packet filter")
	}
	for _, bin := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Skipf("needs %s: %v", bin, err)
		}
	}
}

// NewNetns creates a namespace on a random /30 inside pool whose addresses
// this host does not route anywhere but by its default route, and removes
// it when the test ends.
func NewNetns(tb testing.TB, pool netip.Prefix) *Netns {
	tb.Helper()
	RequireNetAdmin(tb)
	b := make([]byte, 4)
	rand.Read(b)
	id := hex.EncodeToString(b)
	n := &Netns{Name: "nicns-" + id, HostIf: "nicv" + id}
	for try := 0; ; try++ {
		n.Prefix = randomSlash30(pool)
		if !routed(tb, n.Prefix) {
			break
		}
		if try == 20 {
			tb.Fatalf("no free /30 in %s", pool)
		}
	}
	n.HostAddr = n.Prefix.Addr().Next()
	n.NSAddr = n.HostAddr.Next()
	peer := "nicp" + id
	tb.Cleanup(func() {
		ipCmd(tb, false, "link", "del", n.HostIf)
		ipCmd(tb, false, "netns", "del", n.Name)
	})
	ipCmd(tb, true, "netns", "add", n.Name)
	ipCmd(tb, true, "link", "add", n.HostIf, "type", "veth", "peer", "name", peer)
	ipCmd(tb, true, "link", "set", peer, "netns", n.Name)
	ipCmd(tb, true, "addr", "add", netip.PrefixFrom(n.HostAddr, 30).String(), "dev", n.HostIf)
	ipCmd(tb, true, "link", "set", n.HostIf, "up")
	ipCmd(tb, true, "-n", n.Name, "addr", "add", netip.PrefixFrom(n.NSAddr, 30).String(), "dev", peer)
	ipCmd(tb, true, "-n", n.Name, "link", "set", peer, "up")
	ipCmd(tb, true, "-n", n.Name, "link", "set", "lo", "up")
	return n
}

func randomSlash30(pool netip.Prefix) netip.Prefix {
	var b [4]byte
	rand.Read(b[:])
	base := pool.Masked().Addr().As4()
	host := binary.BigEndian.Uint32(b[:]) & (1<<(32-pool.Bits()) - 1) &^ 3
	v := binary.BigEndian.Uint32(base[:]) | host
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], v)
	return netip.PrefixFrom(netip.AddrFrom4(out), 30)
}

// routed reports whether the host already routes p's addresses other than
// by its default route.
func routed(tb testing.TB, p netip.Prefix) bool {
	out, err := exec.Command("ip", "-4", "route", "show", "match", p.Addr().Next().String()).Output()
	if err != nil {
		tb.Fatalf("ip route: %v", err)
	}
	for l := range strings.Lines(string(out)) {
		if f := strings.Fields(l); len(f) > 0 && f[0] != "default" {
			return true
		}
	}
	return false
}

func ipCmd(tb testing.TB, must bool, args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil && must {
		tb.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Do runs fn on an OS thread inside the namespace. Sockets fn creates
// stay in the namespace after it returns; the thread is discarded.
func (n *Netns) Do(tb testing.TB, fn func()) {
	tb.Helper()
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the goroutine's thread ends with it rather than
		// returning to the scheduler in the wrong namespace.
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + n.Name)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		fn()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		tb.Fatalf("in namespace %s: %v", n.Name, err)
	}
}

// Serve listens on addr:port inside the namespace and answers every
// connection with "hello from <name>\n"; it returns the listener's port.
func (n *Netns) Serve(tb testing.TB, port int) int {
	tb.Helper()
	var ln net.Listener
	var err error
	n.Do(tb, func() { ln, err = net.Listen("tcp", net.JoinHostPort(n.NSAddr.String(), fmt.Sprint(port))) })
	if err != nil {
		tb.Fatalf("listen in %s: %v", n.Name, err)
	}
	return ServeHello(tb, ln, n.Name)
}

// ServeHello answers every connection to ln with "hello from <name>\n"
// until the test ends, and returns ln's port.
func ServeHello(tb testing.TB, ln net.Listener, name string) int {
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "hello from %s\n", name)
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}
