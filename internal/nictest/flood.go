package nictest

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHFlood holds unauthenticated connections open against an SSH server,
// as an attacker locking others out would: a third are idle TCP
// connections, a third send their version line and stall, a third finish
// the key exchange and stall in authentication. Each connection the server
// closes is reopened, up to a bounded number of times.
type SSHFlood struct {
	stopCh chan struct{}
	wg     sync.WaitGroup
	open   atomic.Int64
	total  atomic.Int64
	once   sync.Once
}

// floodReopens bounds how often each flood connection is reopened, so a
// flood ends even against a server that closes everything at once.
const floodReopens = 20

// StartSSHDribble opens n connections to addr, from the local addresses
// sources in turn, that go through the SSH handshake as slowly as a
// server's start-up protection lets them keep their place: every write
// waits step first (the version line, the key exchange, the request for
// authentication), then each stalls in authentication. Each connection
// the server closes is reopened, up to a bounded number of times.
func StartSSHDribble(tb testing.TB, addr string, n int, step time.Duration, sources ...string) *SSHFlood {
	tb.Helper()
	return startFlood(tb, addr, n, func(int) int { return kindDribble }, step, sources)
}

// Kinds of flood connection.
const (
	kindIdle    = iota // nothing sent
	kindVersion        // the version line, then silence
	kindStall          // key exchange, then an authentication that never comes
	kindDribble        // as kindStall, each write delayed
)

// StartSSHFlood opens n connections to addr, from the local addresses
// sources in turn (empty: the system's choice), and keeps them open until
// Stop or the end of the test.
func StartSSHFlood(tb testing.TB, addr string, n int, sources ...string) *SSHFlood {
	tb.Helper()
	return startFlood(tb, addr, n, func(i int) int { return i % 3 }, 0, sources)
}

func startFlood(tb testing.TB, addr string, n int, kindOf func(int) int, step time.Duration, sources []string) *SSHFlood {
	tb.Helper()
	if len(sources) == 0 {
		sources = []string{""}
	}
	f := &SSHFlood{stopCh: make(chan struct{})}
	for i := range n {
		var local net.Addr
		if s := sources[i%len(sources)]; s != "" {
			local = &net.TCPAddr{IP: net.ParseIP(s)}
		}
		kind := kindOf(i)
		f.wg.Go(func() {
			d := net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
			for range floodReopens {
				select {
				case <-f.stopCh:
					return
				default:
				}
				nc, err := d.Dial("tcp", addr)
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				f.total.Add(1)
				f.open.Add(1)
				f.hold(nc, kind, step)
				f.open.Add(-1)
			}
		})
	}
	tb.Cleanup(f.Stop)
	return f
}

// hold keeps nc unauthenticated until the server closes it or the flood
// stops.
func (f *SSHFlood) hold(nc net.Conn, kind int, step time.Duration) {
	defer nc.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-f.stopCh:
			nc.Close()
		case <-stop:
		}
	}()
	switch kind {
	case kindIdle:
	case kindVersion:
		if _, err := nc.Write([]byte("SSH-2.0-flood\r\n")); err != nil {
			return
		}
	case kindStall, kindDribble:
		wc := &watchedConn{Conn: nc, dead: make(chan struct{}), delay: step, stop: f.stopCh}
		stall := ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			select {
			case <-f.stopCh:
			case <-wc.dead:
			}
			return nil, errors.New("flood connection ends")
		})
		_, _, _, _ = ssh.NewClientConn(wc, nc.RemoteAddr().String(), &ssh.ClientConfig{
			User:            "root",
			Auth:            []ssh.AuthMethod{stall},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		})
		return
	}
	buf := make([]byte, 4096)
	for {
		if _, err := nc.Read(buf); err != nil {
			return
		}
	}
}

// WaitOpen waits, at most 30 s, until at least n flood connections are
// open at once.
func (f *SSHFlood) WaitOpen(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for f.open.Load() < int64(n) {
		if time.Now().After(deadline) {
			tb.Fatalf("flood holds %d connections after 30s, want %d", f.open.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Opened is how many connections the flood has opened in all.
func (f *SSHFlood) Opened() int { return int(f.total.Load()) }

// Stop closes every flood connection and waits for the flood to end.
func (f *SSHFlood) Stop() {
	f.once.Do(func() { close(f.stopCh) })
	f.wg.Wait()
}

// watchedConn closes dead when a read fails: the SSH client reads in the
// background, so a stalled authentication learns that the server closed
// the connection.
type watchedConn struct {
	net.Conn
	dead  chan struct{}
	once  sync.Once
	delay time.Duration // before every write
	stop  chan struct{}
}

func (c *watchedConn) Write(b []byte) (int, error) {
	if c.delay > 0 {
		t := time.NewTimer(c.delay)
		select {
		case <-t.C:
		case <-c.stop:
			t.Stop()
		case <-c.dead:
			t.Stop()
		}
	}
	return c.Conn.Write(b)
}

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.once.Do(func() { close(c.dead) })
	}
	return n, err
}
