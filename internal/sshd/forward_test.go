//go:build linux

package sshd

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/nictest"
)

// echoServer listens on 127.0.0.1 and echoes every connection until the
// test ends.
func echoServer(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go serveEcho(ln)
	return ln
}

// serveEcho echoes every connection to ln until ln is closed.
func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// checkEcho sends a message through c and expects it back.
func checkEcho(tb testing.TB, c net.Conn) {
	tb.Helper()
	defer c.Close()
	msg := strings.Repeat("ping ", 10000)
	go io.WriteString(c, msg)
	got := make([]byte, len(msg))
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		tb.Fatalf("echo through the tunnel: %v", err)
	}
}

// TestPortForwarding: local forwarding (direct-tcpip, as ssh -L and -D
// open) is on by default, off with DisableTCPForwarding, and off for keys
// restricted by no-port-forwarding or restrict.
func TestPortForwarding(t *testing.T) {
	t.Parallel()
	echo := echoServer(t)
	tests := []struct {
		name    string
		disable bool
		options string
		wantOK  bool
	}{
		{name: "allowed by default", wantOK: true},
		{name: "disabled by the server", disable: true},
		{name: "key says no-port-forwarding", options: "no-port-forwarding"},
		{name: "key says restrict", options: "restrict"},
		{name: "key says restrict,port-forwarding", options: "restrict,port-forwarding", wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, func(c *Config) { c.DisableTCPForwarding = tt.disable })
			writeAuthorizedKeys(t, ts.dir, authorizedLine(ts.signer.PublicKey(), tt.options))
			c := ts.mustDial(t)
			fc, err := c.Dial("tcp", echo.Addr().String())
			if (err == nil) != tt.wantOK {
				t.Fatalf("local forward error %v, want ok %v", err, tt.wantOK)
			}
			if err == nil {
				checkEcho(t, fc)
			}
			ln, err := c.Listen("tcp", "127.0.0.1:0")
			if (err == nil) != tt.wantOK {
				t.Fatalf("remote forward error %v, want ok %v", err, tt.wantOK)
			}
			if err == nil {
				ln.Close()
			}
		})
	}
	t.Run("unreachable target", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, nil)
		c := ts.mustDial(t)
		closed, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := closed.Addr().String()
		closed.Close()
		if fc, err := c.Dial("tcp", addr); err == nil {
			fc.Close()
			t.Fatal("forward to a closed port succeeded")
		}
	})
}

// TestRemoteForwarding drives tcpip-forward with Go's client: connections
// to the server-side port reach the client; the listener is on loopback
// even when the client asks for every address; cancel closes it; a
// connection may hold at most maxRemoteForwards listeners.
func TestRemoteForwarding(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	c := ts.mustDial(t)

	ln, err := c.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatalf("remote forward: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	go serveEcho(ln)
	tc, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		t.Fatalf("connect to the forwarded port: %v", err)
	}
	checkEcho(t, tc)
	if ip := outboundIP(); ip != "" {
		if tc, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), 2*time.Second); err == nil {
			tc.Close()
			t.Fatalf("remote forward asked for 0.0.0.0 is reachable on %s; want loopback only", ip)
		}
	}

	// Cancel: the port closes.
	if err := ln.Close(); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		tc, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err != nil {
			break
		}
		tc.Close()
		if time.Now().After(deadline) {
			t.Fatal("forwarded port still open after cancel")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The limit per connection.
	var open []net.Listener
	for i := 0; i < maxRemoteForwards; i++ {
		l, err := c.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("remote forward %d: %v", i+1, err)
		}
		open = append(open, l)
	}
	if l, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		l.Close()
		t.Fatalf("remote forward %d accepted, want at most %d", maxRemoteForwards+1, maxRemoteForwards)
	}
	for _, l := range open {
		l.Close()
	}
}

// TestOpenSSHForwarding runs the OpenSSH client with -L, -R and -D at once
// and sends traffic through each.
func TestOpenSSHForwarding(t *testing.T) {
	t.Parallel()
	bin := requireOpenSSH(t, "ssh")
	ts := startServer(t, nil)
	echo := echoServer(t)
	lport, rport, dport := nictest.FreePort(t), nictest.FreePort(t), nictest.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	args := append(ts.sshArgs(ts.keyFile, "-p"),
		"-N", "-o", "ExitOnForwardFailure=yes",
		"-L", fmt.Sprintf("127.0.0.1:%d:%s", lport, echo.Addr()),
		"-R", fmt.Sprintf("127.0.0.1:%d:%s", rport, echo.Addr()),
		"-D", fmt.Sprintf("127.0.0.1:%d", dport),
		"root@127.0.0.1")
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})

	dial := func(port int) net.Conn {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
			if err == nil {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatalf("port %d never opened: %v; ssh: %s", port, err, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	checkEcho(t, dial(lport)) // -L: the client listens, the server connects
	checkEcho(t, dial(rport)) // -R: the server listens, the client connects
	socks := dial(dport)      // -D: SOCKS5 on the client, the server connects
	socks5Connect(t, socks, echo.Addr().(*net.TCPAddr))
	checkEcho(t, socks)
}

// socks5Connect performs a SOCKS5 CONNECT (RFC 1928, no authentication)
// to addr on c.
func socks5Connect(tb testing.TB, c net.Conn, addr *net.TCPAddr) {
	tb.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		tb.Fatal(err)
	}
	var hello [2]byte
	if _, err := io.ReadFull(r, hello[:]); err != nil || hello != [2]byte{5, 0} {
		tb.Fatalf("socks hello: %v %v", hello, err)
	}
	req := []byte{5, 1, 0, 1}
	req = append(req, addr.IP.To4()...)
	req = binary.BigEndian.AppendUint16(req, uint16(addr.Port))
	if _, err := c.Write(req); err != nil {
		tb.Fatal(err)
	}
	var rep [10]byte
	if _, err := io.ReadFull(r, rep[:]); err != nil || rep[1] != 0 {
		tb.Fatalf("socks connect: reply %v, %v", rep, err)
	}
	if r.Buffered() > 0 {
		tb.Fatal("unexpected data after the socks reply")
	}
}

// outboundIP is a non-loopback address of this machine, or "".
func outboundIP() string {
	c, err := net.Dial("udp", "192.0.2.1:9") // sends nothing
	if err != nil {
		return ""
	}
	defer c.Close()
	ip := c.LocalAddr().(*net.UDPAddr).IP
	if ip.IsLoopback() {
		return ""
	}
	return ip.String()
}
