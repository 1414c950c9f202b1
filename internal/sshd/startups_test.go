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
					c, evicted, _ := g.admit(st.src, func() { closed[st.name]++ })
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
		a, _, first := g.admit("a", func() { closes++ })
		if first {
			t.Error("first admission reported as an eviction")
		}
		_, ev, first := g.admit("b", func() {})
		if ev != a || closes != 1 || !first {
			t.Fatalf("evicted %v, closes %d, first %v", ev, closes, first)
		}
		g.release(a)
		g.progress(a, stageAuth)
		if _, _, first := g.admit("c", func() {}); first {
			t.Error("second eviction in a row reported as the first of an episode")
		}
		if total, _ := g.count(""); total != 1 {
			t.Errorf("%d pending, want 1", total)
		}
	})
}

// TestStartupProtection: a connection that took a step within the
// protection period is not evicted by a newcomer from a source holding as
// many; the newcomer waits, accepted, until a protection lapses or a place
// frees. A newcomer from a source holding two fewer evicts the busiest
// source's connection at once, protected or not; the waiter from the
// source holding the fewest goes first, then the oldest; the waiting room
// is bounded, its busiest source's newest waiter dropped; stop drops
// every waiter.
func TestStartupProtection(t *testing.T) {
	const protect = time.Second
	ready := func(st *startup) bool {
		select {
		case <-st.ready:
			return true
		default:
			return false
		}
	}
	synctest.Test(t, func(t *testing.T) {
		g := newStartupGate(Config{MaxStartups: 2, StartupProtection: protect})
		// closed reports whether a connection was closed; the gate may
		// close a newcomer before admit returns it.
		closedBox := map[*int]bool{}
		boxOf := map[*startup]*int{}
		closed := func(st *startup) bool { return closedBox[boxOf[st]] }
		admit := func(src string) (*startup, *startup) {
			box := new(int)
			st, ev, _ := g.admit(src, func() { closedBox[box] = true })
			boxOf[st] = box
			return st, ev
		}
		a1, _ := admit("a")
		a2, _ := admit("a")
		time.Sleep(protect / 2)
		g.progress(a1, stageVersion) // a1 is protected half a period longer
		a3, ev := admit("a")
		if ev != nil || ready(a3) {
			t.Fatalf("admitted while every connection was protected (evicting %p)", ev)
		}
		time.Sleep(protect/2 - time.Millisecond)
		synctest.Wait()
		if ready(a3) {
			t.Fatal("admitted before a protection lapsed")
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if !ready(a3) || !g.admitted(a3) || !closed(a2) || closed(a1) {
			t.Fatalf("after a2's protection lapsed: a3 admitted %v, a2 closed %v, a1 closed %v", g.admitted(a3), closed(a2), closed(a1))
		}

		// A release makes room for a waiter at once.
		a4, _ := admit("a")
		synctest.Wait()
		if ready(a4) {
			t.Fatal("a4 admitted while a1 and a3 are protected")
		}
		g.release(a1)
		if !g.admitted(a4) {
			t.Fatal("a release did not admit the waiter")
		}

		// A source holding two fewer does not wait for protections, once
		// the connections let in from the waiting room have taken a step
		// (see TestStartupPumpedOwnerEvictedAtOnce for those that have not).
		g.progress(a3, stageVersion)
		g.progress(a4, stageVersion)
		b1, ev := admit("b")
		if !g.admitted(b1) || ev != a3 || !closed(a3) {
			t.Fatalf("newcomer from a quieter source: admitted %v, evicted %p (a3 %p)", g.admitted(b1), ev, a3)
		}

		// a and b hold one each: newcomers wait, first come first
		// served; when the waiting room is full, the newest waiter of the
		// source with the most waiting is closed.
		var as []*startup
		for range waitFactor * 2 {
			w, _ := admit("a")
			as = append(as, w)
		}
		extra, _ := admit("a") // a has most waiting: the newcomer goes
		if !ready(extra) || g.admitted(extra) || !closed(extra) || g.waitingCount() != waitFactor*2 {
			t.Fatalf("waiting room full: newest of the busiest source dropped %v, %d waiting", closed(extra), g.waitingCount())
		}
		c1, _ := admit("c")
		last := as[len(as)-1]
		if ready(c1) || !closed(last) || closed(as[0]) {
			t.Fatalf("newcomer from another source: waits %v, a's newest dropped %v, a's oldest dropped %v", !ready(c1), closed(last), closed(as[0]))
		}
		// The waiter from the source holding fewest goes first, then the
		// oldest.
		g.release(b1)
		if !g.admitted(c1) || ready(as[0]) {
			t.Fatalf("place freed: c's waiter admitted %v, a's %v", g.admitted(c1), ready(as[0]))
		}
		g.release(c1)
		if !g.admitted(as[0]) || ready(as[1]) {
			t.Fatal("place freed: a's oldest waiter not admitted first")
		}
		g.stop()
		w2 := as[1]
		if !ready(w2) || g.admitted(w2) || !closed(w2) || g.waitingCount() != 0 {
			t.Fatal("stop left a waiter")
		}
		g.release(w2) // a dropped waiter's release does nothing
		if total, _ := g.count(""); total != 2 {
			t.Errorf("%d pending, want 2", total)
		}
	})
}

// TestStartupWaitersFirst: a newcomer never takes a place ahead of the
// connections already waiting (first come, first served, even when a
// protection lapses before the gate's timer runs, as under load), and a
// connection just admitted from the waiting room is not the first evicted
// for a quieter source's newcomer: its idle time starts when it is let
// in. The gate's clock is moved by hand; its timer, set an hour ahead, never
// runs.
func TestStartupWaitersFirst(t *testing.T) {
	g := newStartupGate(Config{MaxStartups: 2, StartupProtection: time.Hour})
	now := time.Unix(1_700_000_000, 0)
	g.now = func() time.Time { return now }
	t.Cleanup(g.stop)
	admit := func(src string) *startup {
		st, _, _ := g.admit(src, func() {})
		return st
	}
	a1, a2 := admit("a"), admit("a")
	owner := admit("a")
	if g.admitted(owner) {
		t.Fatal("admitted while every place is protected")
	}
	now = now.Add(2 * time.Hour) // a1's and a2's protections lapse; the timer has not run
	a3 := admit("a")
	if !g.admitted(owner) {
		t.Fatalf("a newcomer took the place of the connection waiting before it (newcomer admitted %v)", g.admitted(a3))
	}
	// A newcomer from a quieter source evicts one of a's at once: not the
	// owner, let in a moment ago, while a3 has held its place as long.
	if g.admitted(a3) {
		b1 := admit("b")
		if !g.admitted(b1) || !g.admitted(owner) {
			t.Fatalf("quieter source's newcomer admitted %v; owner still admitted %v", g.admitted(b1), g.admitted(owner))
		}
	}
	if g.admitted(a1) && g.admitted(a2) {
		t.Fatal("nobody was evicted")
	}
}

// TestStartupPumpedOwnerEvictedAtOnce: the owner waits behind a flood from
// its own address whose connections have sent their version line (stage
// 1+). One flood connection's protection lapses; the next newcomer, from
// a quieter source, pumps the owner in (evicting the lapsed one) and, in
// the same admit call, evicts the owner by the fair-share rule: it is the
// busiest source's connection that has come least far, and it never had a
// chance to step. Nor may the next quiet newcomer: a connection let in from
// the waiting room is out of reach of the quieter source's share until it
// steps or its protection lapses.
func TestStartupPumpedOwnerEvictedAtOnce(t *testing.T) {
	g := newStartupGate(Config{MaxStartups: 2, StartupProtection: time.Hour})
	now := time.Unix(1_700_000_000, 0)
	g.now = func() time.Time { return now }
	t.Cleanup(g.stop)
	closed := map[*startup]bool{}
	admit := func(src string) *startup {
		var st *startup
		st, _, _ = g.admit(src, func() { closed[st] = true })
		return st
	}
	a1, a2 := admit("a"), admit("a")
	g.progress(a1, 1)
	g.progress(a2, 1)
	owner := admit("a")
	if g.admitted(owner) {
		t.Fatal("admitted while every place is protected")
	}
	now = now.Add(2 * time.Hour) // a1's protection lapses...
	g.progress(a2, 2)            // ...a2 keeps stepping within it
	b1 := admit("b")
	if closed[owner] || !g.admitted(owner) {
		t.Fatal("the owner, let in by b1's admit, was evicted by that same call before taking a step")
	}
	if !closed[a1] || !closed[a2] || !g.admitted(b1) {
		t.Errorf("a1 closed %v (lapsed, for the owner), a2 closed %v and b1 admitted %v (the quieter source's share)", closed[a1], closed[a2], g.admitted(b1))
	}
	// Nor by the next newcomer from a quiet source: until it steps or its
	// protection lapses, the owner is out of reach, and the newcomer waits.
	c1 := admit("c")
	if closed[owner] || g.admitted(c1) {
		t.Fatalf("second quiet newcomer: owner evicted %v, newcomer admitted %v", closed[owner], g.admitted(c1))
	}
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

// TestLoginDuringDribbleFlood holds six times MaxStartups connections from
// two other addresses, each stepping through the handshake just within the
// start-up protection so that it keeps its place as long as it can, and
// reopened whenever the server closes it. The owner, from an address of its
// own, logs in with OpenSSH every time, in a few seconds at most: the flood
// can neither keep every place protected against it nor queue in front of
// it in the kernel's accept queue.
func TestLoginDuringDribbleFlood(t *testing.T) {
	// Not parallel: the flood's key exchanges take the CPU the other
	// flood tests need.
	ts := startServer(t, nil)
	requireOpenSSH(t, "ssh")
	f := nictest.StartSSHDribble(t, ts.addr, 6*DefaultMaxStartups, DefaultStartupProtection*9/10, "127.0.0.2", "127.0.0.3")
	f.WaitOpen(t, 3*DefaultMaxStartups)
	time.Sleep(2 * time.Second) // every place taken and protected
	for i := range 3 {
		start := time.Now()
		out, errOut, code := ts.openssh(t, ts.keyFile, nil, "root@127.0.0.1", "echo", "in")
		took := time.Since(start)
		if code != 0 || strings.TrimSpace(out) != "in" {
			t.Fatalf("login %d during the flood: exit %d after %v, %q, %s", i, code, took.Round(time.Millisecond), out, errOut)
		}
		if took > 5*time.Second {
			t.Errorf("login %d during the flood took %v", i, took.Round(time.Millisecond))
		}
		t.Logf("login %d during the flood took %v (flood opened %d connections)", i, took.Round(time.Millisecond), f.Opened())
	}
	f.Stop()
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
