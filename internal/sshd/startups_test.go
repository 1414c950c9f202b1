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
	"time"

	"golang.org/x/crypto/ssh"
)

func TestStartupGate(t *testing.T) {
	type step struct {
		src    string
		roll   int  // what the random draw returns
		admit  bool // else release src
		wantOK bool
	}
	admit := func(src string, roll int, ok bool) step { return step{src: src, roll: roll, admit: true, wantOK: ok} }
	release := func(src string) step { return step{src: src} }
	fill := func(n int) []step { // n connections from distinct sources
		var s []step
		for i := range n {
			s = append(s, admit(string(rune('a'+i)), 99, true))
		}
		return s
	}
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"per source", Config{MaxStartups: 10, RandomDropStartups: 10, MaxStartupsPerSource: 2}, []step{
			admit("x", 0, true), admit("x", 0, true), admit("x", 0, false),
			admit("y", 0, true),
			release("x"), admit("x", 0, true), admit("x", 0, false),
		}},
		{"full", Config{MaxStartups: 3, RandomDropStartups: 3, MaxStartupsPerSource: 3}, append(fill(3),
			admit("z", 99, false), release("a"), admit("z", 99, true))},
		// 10:30:100: at 10 open, 30 %; at 55, 30 + 70·45/90 = 65 %.
		{"random drop at start", Config{MaxStartups: 100, RandomDropStartups: 10, RandomDropPercent: 30}, append(fill(10),
			admit("y", 29, false), admit("y", 30, true))},
		{"random drop below start", Config{MaxStartups: 100, RandomDropStartups: 10, RandomDropPercent: 30}, append(fill(9),
			admit("y", 0, true))},
		{"random drop midway", Config{MaxStartups: 100, RandomDropStartups: 10, RandomDropPercent: 30}, append(fill(55),
			admit("y", 64, false), admit("y", 65, true))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Dir = "unused"
			cfg, err := tt.cfg.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			g := newStartupGate(cfg)
			for i, st := range tt.steps {
				if !st.admit {
					g.release(st.src)
					continue
				}
				g.roll = func() int { return st.roll }
				if got := g.admit(st.src) == ""; got != st.wantOK {
					t.Fatalf("step %d: admit(%s) with roll %d = %v, want %v", i, st.src, st.roll, got, st.wantOK)
				}
			}
		})
	}
	t.Run("release forgets sources", func(t *testing.T) {
		g := newStartupGate(Config{MaxStartups: 10, RandomDropStartups: 10, MaxStartupsPerSource: 3})
		for range 3 {
			g.admit("x")
		}
		for range 3 {
			g.release("x")
		}
		if g.total != 0 || len(g.bySource) != 0 {
			t.Errorf("after releasing all: total %d, sources %v", g.total, g.bySource)
		}
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

// TestIdleConnectionsOneSource: idle connections from one address take
// only MaxStartupsPerSource slots, so that the renter, from another
// address, still logs in; the address gets its slots back as its
// connections close.
func TestIdleConnectionsOneSource(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	const attacker = "127.0.0.2"
	var held []net.Conn
	for i := range 10 {
		nc, line := dialFrom(t, ts, attacker)
		admitted := line == Version+"\r\n"
		if want := i < DefaultMaxStartupsPerSource; admitted != want {
			t.Errorf("idle connection %d: first line %q, want admitted %v", i, line, want)
		}
		if admitted {
			held = append(held, nc)
		}
	}
	c, err := ts.dial("root", ssh.PublicKeys(ts.signer))
	if err != nil {
		t.Fatalf("login from another address while %s holds idle connections: %v", attacker, err)
	}
	c.Close()

	for _, nc := range held {
		nc.Close()
	}
	for i := 0; ; i++ {
		if _, line := dialFrom(t, ts, attacker); line == Version+"\r\n" {
			break
		}
		if i == 100 {
			t.Fatal("source not admitted again after closing its connections")
		}
		time.Sleep(20 * time.Millisecond)
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
