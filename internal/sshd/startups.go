//go:build linux

package sshd

import (
	"net"
	"sync"
	"time"
)

// startupGate holds the connections that have not yet authenticated. It
// never refuses a new connection because of what others hold: when
// MaxStartups are pending, it closes one of them to make room, so a
// stranger who keeps hundreds of idle connections open cannot lock anyone
// out, whether clients arrive with their own addresses or, through
// Docker's port proxy, all with the same one. The connection closed is
// chosen so that the flooder pays:
//
//  1. only a connection that has made no progress for the protection
//     period (StartupProtection) may be closed: a client that takes each
//     step of its handshake within it — each takes a round trip — is never
//     closed for another's sake;
//  2. from the source holding the most pending connections (an IP address,
//     or an IPv6 /64), so one party's flood evicts its own connections
//     before anyone else's;
//  3. within it, the one that has come least far in its handshake (see
//     the stages in progress.go: an idle TCP connection costs nothing, a
//     finished key exchange costs a Diffie-Hellman computation);
//  4. then the one whose last step is oldest.
//
// When every pending connection is protected, the new one waits (the
// server stops accepting; the kernel's backlog holds further connections in
// arrival order) until one is released or its protection lapses. A flood
// therefore cycles through at most MaxStartups connections per protection
// period, and a client that joins it waits its turn in the backlog, then
// keeps its place for as long as it keeps making progress.
// HandshakeTimeout and LoginGraceTime bound how long any connection may
// stay pending at all.
type startupGate struct {
	full    int
	protect time.Duration
	now     func() time.Time

	// mu protects the fields below.
	mu       sync.Mutex
	pending  map[*startup]struct{}
	bySource map[string]int
	clock    uint64        // counts steps; orders pending connections by age
	freed    chan struct{} // closed (and replaced) when a place frees up
	// evicting is set by the first eviction and cleared once the pending
	// connections fall to half of full, so the server logs each episode
	// once rather than each eviction.
	evicting bool
}

// startup is one pending connection.
type startup struct {
	src   string
	close func() // closes the connection when it is evicted
	// Guarded by startupGate.mu.
	stage    int       // handshake stage reached (stageConnected…stageAuth)
	step     uint64    // clock at the connection's last step
	lastStep time.Time // when it took its last step
	gone     bool      // released or evicted
}

func newStartupGate(cfg Config) *startupGate {
	return &startupGate{
		full:     cfg.MaxStartups,
		protect:  cfg.StartupProtection,
		now:      time.Now,
		pending:  map[*startup]struct{}{},
		bySource: map[string]int{},
		freed:    make(chan struct{}),
	}
}

// admit records a new connection from src; close is called (without the
// gate's lock) if the connection is later evicted. When the gate is full
// it evicts another pending connection and returns it, first reporting
// that this eviction starts an episode; when every pending connection is
// protected it waits. It returns a nil startup if stop is closed while it
// waits.
func (g *startupGate) admit(src string, close func(), stop <-chan struct{}) (st, evicted *startup, first bool) {
	g.mu.Lock()
	for len(g.pending) >= g.full {
		now := g.now()
		victim, wait := g.victimLocked(now)
		if victim != nil {
			g.removeLocked(victim)
			evicted = victim
			first = !g.evicting
			g.evicting = true
			break
		}
		freed := g.freed
		g.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-freed:
		case <-t.C:
		case <-stop:
			t.Stop()
			return nil, nil, false
		}
		t.Stop()
		g.mu.Lock()
	}
	g.clock++
	st = &startup{src: src, close: close, step: g.clock, lastStep: g.now()}
	g.pending[st] = struct{}{}
	g.bySource[src]++
	g.mu.Unlock()
	if evicted != nil {
		evicted.close()
	}
	return st, evicted, first
}

// victimLocked chooses the pending connection to evict (see startupGate),
// or, when all are protected, returns how long until the first is not.
func (g *startupGate) victimLocked(now time.Time) (*startup, time.Duration) {
	var best *startup
	wait := g.protect
	for s := range g.pending {
		if left := s.lastStep.Add(g.protect).Sub(now); left > 0 {
			wait = min(wait, left)
			continue
		}
		if best == nil || g.evictsBefore(s, best) {
			best = s
		}
	}
	return best, wait
}

// evictsBefore reports whether a is a better eviction victim than b.
func (g *startupGate) evictsBefore(a, b *startup) bool {
	if na, nb := g.bySource[a.src], g.bySource[b.src]; na != nb {
		return na > nb
	}
	if a.stage != b.stage {
		return a.stage < b.stage
	}
	return a.step < b.step
}

// progress records that st reached stage.
func (g *startupGate) progress(st *startup, stage int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st.gone || stage <= st.stage {
		return
	}
	g.clock++
	st.stage, st.step, st.lastStep = stage, g.clock, g.now()
}

// release removes st once it has authenticated or closed; releasing it
// again, or after it was evicted, does nothing.
func (g *startupGate) release(st *startup) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st.gone {
		return
	}
	g.removeLocked(st)
	close(g.freed)
	g.freed = make(chan struct{})
	if len(g.pending) <= g.full/2 {
		g.evicting = false
	}
}

func (g *startupGate) removeLocked(st *startup) {
	st.gone = true
	delete(g.pending, st)
	if g.bySource[st.src] <= 1 {
		delete(g.bySource, st.src)
	} else {
		g.bySource[st.src]--
	}
}

// count returns the number of pending connections, and those from src.
func (g *startupGate) count(src string) (total, fromSrc int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.pending), g.bySource[src]
}

// sourceOf is the key under which connections from addr are counted: its
// IP address, or for IPv6 its /64 network, which one subscriber usually
// holds whole.
func sourceOf(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.Network() + ":" + addr.String()
	}
	if ip4 := tcp.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	if ip := tcp.IP.To16(); ip != nil {
		return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
	}
	return tcp.IP.String()
}
