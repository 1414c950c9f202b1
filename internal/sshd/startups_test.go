//go:build linux

package sshd

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/nictest"
)

func TestStartupGate(t *testing.T) {
	// Each step admits a connection named name from src, marks a named one
	// as past its key exchange (kex), or releases it; admit steps say which
	// connection, if any, must be evicted.
	type step struct {
		op, name, src, wantEvicted string
	}
	admit := func(name, src, evicted string) step {
		return step{op: "admit", name: name, src: src, wantEvicted: evicted}
	}
	kex := func(name string) step { return step{op: "kex", name: name} }
	release := func(name string) step { return step{op: "release", name: name} }
	tests := []struct {
		name  string
		full  int
		steps []step
	}{
		{"below the limit nothing is evicted", 3, []step{
			admit("a1", "a", ""), admit("a2", "a", ""), admit("b1", "b", ""),
		}},
		{"the source holding most pays", 4, []step{
			admit("b1", "b", ""), admit("a1", "a", ""), admit("a2", "a", ""), admit("a3", "a", ""),
			admit("c1", "c", "a1"), admit("b2", "b", "a2"),
			// Now b holds most.
			admit("c2", "c", "b1"),
		}},
		{"key exchange in progress before finished", 3, []step{
			admit("x1", "x", ""), admit("x2", "x", ""), admit("x3", "x", ""),
			kex("x1"), kex("x2"),
			admit("x4", "x", "x3"),
			// x4, still in its key exchange, goes before the finished
			// x1 and x2.
			admit("x5", "x", "x4"),
		}},
		{"oldest last step among finished", 3, []step{
			admit("x1", "x", ""), admit("x2", "x", ""), admit("x3", "x", ""),
			kex("x3"), kex("x1"), kex("x2"),
			admit("x4", "x", "x3"),
		}},
		{"released and evicted connections free their place once", 2, []step{
			admit("a1", "a", ""), admit("a2", "a", ""),
			admit("a3", "a", "a1"), release("a1"), release("a2"), release("a2"),
			admit("b1", "b", ""), admit("b2", "b", "a3"),
		}},
		{"a limit of one", 1, []step{
			admit("a1", "a", ""), admit("b1", "b", "a1"), admit("a2", "a", "b1"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newStartupGate(Config{MaxStartups: tt.full})
			conns := map[string]*startup{}
			closed := map[string]int{}
			for i, st := range tt.steps {
				switch st.op {
				case "kex":
					g.progress(conns[st.name], stageNewKeys)
				case "release":
					g.release(conns[st.name])
				case "admit":
					c, evicted, _ := g.admit(st.src, func() { closed[st.name]++ }, nil)
					conns[st.name] = c
					got := ""
					for name, s := range conns {
						if s == evicted {
							got = name
						}
					}
					if got != st.wantEvicted {
						t.Fatalf("step %d: admitting %s evicted %q, want %q", i, st.name, got, st.wantEvicted)
					}
					if got != "" && closed[got] != 1 {
						t.Fatalf("step %d: evicted %s closed %d times", i, got, closed[got])
					}
				}
				if total, _ := g.count(""); total > tt.full {
					t.Fatalf("step %d: %d pending, limit %d", i, total, tt.full)
				}
			}
			total := 0
			for _, c := range conns {
				if !c.gone {
					total++
				}
			}
			if got, _ := g.count(""); got != total {
				t.Errorf("gate counts %d pending, %d not gone", got, total)
			}
		})
	}
	t.Run("evicted connections are closed once", func(t *testing.T) {
		g := newStartupGate(Config{MaxStartups: 1})
		closes := 0
		a, _, first := g.admit("a", func() { closes++ }, nil)
		if first {
			t.Error("first admission reported as an eviction")
		}
		_, ev, first := g.admit("b", func() {}, nil)
		if ev != a || closes != 1 || !first {
			t.Fatalf("evicted %v, closes %d, first %v", ev, closes, first)
		}
		g.release(a)
		g.progress(a, stageAuth)
		if _, _, first := g.admit("c", func() {}, nil); first {
			t.Error("second eviction in a row reported as the first of an episode")
		}
		if total, _ := g.count(""); total != 1 {
			t.Errorf("%d pending, want 1", total)
		}
	})
}

// TestStartupProtection: a connection that took a step within the
// protection period is not evicted; a new connection waits until one's
// protection lapses or one is released, and gives up when told to stop.
func TestStartupProtection(t *testing.T) {
	const protect = time.Second
	admitAsync := func(g *startupGate, src string, stop chan struct{}) <-chan *startup {
		ch := make(chan *startup, 1)
		go func() {
			_, ev, _ := g.admit(src, func() {}, stop)
			ch <- ev
		}()
		return ch
	}
	synctest.Test(t, func(t *testing.T) {
		g := newStartupGate(Config{MaxStartups: 2, StartupProtection: protect})
		a1, _, _ := g.admit("a", func() {}, nil)
		a2, _, _ := g.admit("a", func() {}, nil)
		time.Sleep(protect / 2)
		g.progress(a1, stageVersion) // a1 is protected half a period longer
		got := admitAsync(g, "b", nil)
		time.Sleep(protect/2 - time.Millisecond)
		synctest.Wait()
		select {
		case ev := <-got:
			t.Fatalf("admitted while every connection was protected, evicting %p", ev)
		default:
		}
		time.Sleep(2 * time.Millisecond)
		if ev := <-got; ev != a2 {
			t.Fatalf("evicted %p, want a2 (%p), whose protection lapsed first", ev, a2)
		}

		// A release makes room at once.
		got = admitAsync(g, "c", nil)
		synctest.Wait()
		g.release(a1)
		if ev := <-got; ev != nil {
			t.Fatalf("admitted after a release by evicting %p", ev)
		}

		// Stop ends the wait.
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			if st, _, _ := g.admit("d", func() {}, stop); st != nil {
				t.Error("admitted after stop")
			}
		}()
		synctest.Wait()
		close(stop)
		<-done
	})
}

func TestSourceOf(t *testing.T) {
	tcp := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 2222} }
	tests := []struct {
		name string
		a, b net.Addr
		same bool
	}{
		{"same IPv4, other port", tcp("192.0.2.1"), &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1}, true},
		{"other IPv4", tcp("192.0.2.1"), tcp("192.0.2.2"), false},
		{"IPv4-mapped IPv6", tcp("192.0.2.1"), tcp("::ffff:192.0.2.1"), true},
		{"same IPv6 /64", tcp("2001:db8:1:2::1"), tcp("2001:db8:1:2:ffff::9"), true},
		{"other IPv6 /64", tcp("2001:db8:1:2::1"), tcp("2001:db8:1:3::1"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka, kb := sourceOf(tt.a), sourceOf(tt.b)
			if (ka == kb) != tt.same {
				t.Errorf("sourceOf(%v) = %q, sourceOf(%v) = %q; want same %v", tt.a, ka, tt.b, kb, tt.same)
			}
		})
	}
}

// dialFrom opens a TCP connection to ts from the loopback address local
// and returns it with the server's first line ("" if the server closed the
// connection without one).
func dialFrom(tb testing.TB, ts *testServer, local string) (net.Conn, string) {
	tb.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", ts.addr)
	if err != nil {
		tb.Fatalf("dial from %s: %v", local, err)
	}
	tb.Cleanup(func() { nc.Close() })
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(nc).ReadString('\n')
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		tb.Fatalf("connection from %s: no answer within 5s", local)
	}
	return nc, line
}

// TestLoginDuringFlood holds a flood of unauthenticated connections —
// idle TCP connections and Go clients that finish the key exchange and
// then stall — three times MaxStartups, all from the owner's own address
// as through Docker's port proxy, and from a second address; the flood
// reopens whatever the server closes. The owner logs in with OpenSSH
// every time.
func TestLoginDuringFlood(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	requireOpenSSH(t, "ssh")
	f := nictest.StartSSHFlood(t, ts.addr, 3*DefaultMaxStartups, "127.0.0.1", "127.0.0.2")
	f.WaitOpen(t, DefaultMaxStartups)
	for i := range 3 {
		start := time.Now()
		out, errOut, code := ts.openssh(t, ts.keyFile, nil, "root@127.0.0.1", "echo", "in")
		if code != 0 || strings.TrimSpace(out) != "in" {
			t.Fatalf("login %d during the flood: exit %d, %q, %s", i, code, out, errOut)
		}
		t.Logf("login %d during the flood took %v", i, time.Since(start).Round(time.Millisecond))
	}
	f.Stop()
	if f.Opened() < 3*DefaultMaxStartups {
		t.Errorf("the flood opened %d connections, want at least %d", f.Opened(), 3*DefaultMaxStartups)
	}
}

// TestHandshakeTimeout: a connection that never sends its version is
// closed after HandshakeTimeout, long before LoginGraceTime; a client that
// has finished the key exchange gets the whole LoginGraceTime to
// authenticate.
func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	const handshake = time.Second
	ts := startServer(t, func(c *Config) {
		c.HandshakeTimeout = handshake
		c.LoginGraceTime = 20 * time.Second
	})

	t.Run("silent client", func(t *testing.T) {
		start := time.Now()
		nc, line := dialFrom(t, ts, "127.0.0.1")
		if line != Version+"\r\n" {
			t.Fatalf("first line %q", line)
		}
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := nc.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("silent connection still open after 10s")
		}
		if d := time.Since(start); d < handshake-100*time.Millisecond || d > handshake+4*time.Second {
			t.Errorf("silent connection closed after %v, want about %v", d, handshake)
		}
	})
	t.Run("slow authentication", func(t *testing.T) {
		slowKey := ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			time.Sleep(handshake + handshake/2)
			return []ssh.Signer{ts.signer}, nil
		})
		c, err := ts.dial("root", slowKey)
		if err != nil {
			t.Fatalf("login taking longer than the handshake timeout: %v", err)
		}
		c.Close()
	})
}

// TestBlankPasswordFile: a password file that is empty or only white
// space, as the miner writes for a lease without a password, disables
// password login as an absent one does.
func TestBlankPasswordFile(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	pw := filepath.Join(ts.cfg.Dir, PasswordFile)
	for _, tt := range []struct{ name, content string }{
		{"empty", ""},
		{"newline", "\n"},
		{"white space", " \t\r\n  \n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			content := tt.content
			if err := os.WriteFile(pw, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := ts.dial("root", ssh.Password(content))
			if err == nil {
				t.Fatal("password login succeeded with a blank password file")
			}
			if !strings.Contains(err.Error(), "attempted methods [none]") {
				t.Errorf("dial error %q: password login offered", err)
			}
			if c, err := ts.dial("root", ssh.PublicKeys(ts.signer)); err != nil {
				t.Errorf("key login: %v", err)
			} else {
				c.Close()
			}
		})
	}
	ts.writePassword(t, "a-long-enough-password-1")
	if c, err := ts.dial("root", ssh.Password("a-long-enough-password-1")); err != nil {
		t.Errorf("password login with a hash in the file: %v", err)
	} else {
		c.Close()
	}
}
