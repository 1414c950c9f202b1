//go:build linux

package sshd

import (
	"net"
	"slices"
	"sync"
	"time"
)

// startupGate holds the connections that have not yet authenticated. It
// never refuses a new connection because of what others hold: when
// MaxStartups are pending, it closes one of them to make room, so a
// stranger who keeps hundreds of connections open cannot lock anyone out,
// whether clients arrive with their own addresses or, through Docker's
// port proxy, all with the same one. The connection closed is chosen so
// that the flooder pays:
//
//  1. only a connection that has made no progress for the protection
//     period (StartupProtection) may be closed: a client that takes each
//     step of its handshake within it — each takes a round trip — is never
//     closed for another's sake by a source holding as many;
//  2. from the source holding the most pending connections (an IP address,
//     or an IPv6 /64), so one party's flood evicts its own connections
//     before anyone else's;
//  3. within it, the one that has come least far in its handshake (see
//     the stages in progress.go: an idle TCP connection costs nothing, a
//     finished key exchange costs a Diffie-Hellman computation);
//  4. then the one whose last step is oldest.
//
// Protection does not hold against a fairer share: a connection from a
// source holding at least two fewer pending connections than the busiest
// one evicts one of the busiest source's at once, protected or not. A
// flood that keeps every one of its connections protected — stepping
// through the handshake just within the period, as slowly as it may —
// thus still cannot keep a client with an address of its own waiting.
//
// When neither applies (every pending connection is protected and held by
// sources no busier than the newcomer's), the new connection waits,
// accepted but not yet served, until a place frees or a protection lapses;
// then the waiter from the source holding the fewest pending connections
// goes first, oldest first, and waiters always go before a newcomer. Being
// let in counts as a step, so a connection that waited is not evicted as
// if it had idled since it arrived, and until its protection lapses or it
// takes a step it is not evicted for a quieter source's newcomer either
// (it could not have shown progress yet; the newcomer waits at most one
// protection period). At most four times MaxStartups connections
// wait; past that the newest waiter of the source with the most waiting is
// closed (the newcomer itself when its source has most). The server keeps
// accepting throughout, so a flood never fills the kernel's accept queue
// in front of others. A flood from one address cycles through at most
// MaxStartups connections per protection period; a client that shares a
// flooder's address (behind the port proxy) waits its turn among the
// flood's connections, first come, first served, and cannot be told from
// them: a flood from its own address that keeps the waiting room full
// refuses it. HandshakeTimeout bounds the wait, and HandshakeTimeout and
// LoginGraceTime how long any connection may stay pending.
type startupGate struct {
	full    int
	protect time.Duration
	now     func() time.Time

	// mu protects the fields below.
	mu       sync.Mutex
	pending  map[*startup]struct{}
	bySource map[string]int
	waiting  []*startup // accepted, not yet admitted, oldest first
	clock    uint64     // counts steps; orders connections by age
	timer    *time.Timer
	// evicting is set by the first eviction and cleared once the pending
	// connections fall to half of full, so the server logs each episode
	// once rather than each eviction.
	evicting bool
}

// startup is one connection until it has authenticated.
type startup struct {
	src   string
	close func() // closes the connection when it is evicted or dropped
	// ready is closed once the connection is admitted, or dropped while
	// waiting (gone is then set).
	ready chan struct{}
	// Guarded by startupGate.mu.
	stage    int       // handshake stage reached (stageConnected…stageAuth)
	step     uint64    // clock at the connection's last step
	lastStep time.Time // when it took its last step
	waits    bool      // accepted but not admitted yet
	// fresh: let in from the waiting room and no step taken since. While
	// protected, such a connection is not evicted for a quieter source's
	// newcomer either: it has had no chance to show progress.
	fresh bool
	gone  bool // released, evicted or dropped
}

func newStartupGate(cfg Config) *startupGate {
	return &startupGate{
		full:     cfg.MaxStartups,
		protect:  cfg.StartupProtection,
		now:      time.Now,
		pending:  map[*startup]struct{}{},
		bySource: map[string]int{},
	}
}

// admit records a new connection from src; close is called (without the
// gate's lock) if the connection is later evicted, or dropped while it
// waits. It never blocks: the connection is admitted at once (its ready
// channel is closed), evicting another pending connection when the gate
// is full — which it returns, first reporting that this eviction starts
// an episode — or it waits for a place (see startupGate).
func (g *startupGate) admit(src string, close func()) (st, evicted *startup, first bool) {
	st = &startup{src: src, close: close, ready: make(chan struct{})}
	var dropped *startup
	g.mu.Lock()
	g.clock++
	st.step, st.lastStep = g.clock, g.now()
	now := st.lastStep
	// Those waiting go first: a protection may have lapsed before the
	// timer that pumps them has run (it runs late under load).
	var pumped []*startup
	if len(g.waiting) > 0 {
		pumped = g.pumpLocked(now)
	}
	if len(g.pending) >= g.full {
		evicted = g.victimLocked(now, src)
	}
	if evicted != nil || len(g.pending) < g.full {
		if evicted != nil {
			g.removeLocked(evicted)
			first = !g.evicting
			g.evicting = true
		}
		g.pendLocked(st, now)
	} else {
		st.waits = true
		g.waiting = append(g.waiting, st)
		if len(g.waiting) > waitFactor*max(g.full, 1) {
			dropped = g.dropWaiterLocked()
		}
		g.armLocked(now)
	}
	g.mu.Unlock()
	for _, v := range pumped {
		v.close()
	}
	if evicted != nil {
		evicted.close()
	}
	if dropped != nil {
		dropped.close()
	}
	return st, evicted, first
}

// pendLocked admits st. Being let in counts as its latest step: a
// connection that waited is not taken for one idle since it arrived.
func (g *startupGate) pendLocked(st *startup, now time.Time) {
	if st.waits {
		g.clock++
		st.step = g.clock
		st.fresh = true
	}
	st.waits = false
	st.lastStep = now
	g.pending[st] = struct{}{}
	g.bySource[st.src]++
	close(st.ready)
}

// victimLocked chooses the pending connection a newcomer from src evicts
// (see startupGate), or nil when it must wait.
func (g *startupGate) victimLocked(now time.Time, src string) *startup {
	var best, busiest *startup
	for s := range g.pending {
		protected := s.lastStep.Add(g.protect).After(now)
		if protected && s.fresh {
			continue
		}
		if busiest == nil || g.evictsBefore(s, busiest) {
			busiest = s
		}
		if protected {
			continue
		}
		if best == nil || g.evictsBefore(s, best) {
			best = s
		}
	}
	if best == nil && busiest != nil && g.bySource[busiest.src] >= g.bySource[src]+2 {
		best = busiest
	}
	return best
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

// waitFactor × MaxStartups connections may wait for a place.
const waitFactor = 4

// dropWaiterLocked removes and returns the newest waiter of the source
// with the most waiting: a flood's own newest connection, so that a client
// already waiting keeps its turn, and one from another source gets in.
func (g *startupGate) dropWaiterLocked() *startup {
	counts := map[string]int{}
	for _, w := range g.waiting {
		counts[w.src]++
	}
	victim := len(g.waiting) - 1
	for i := len(g.waiting) - 1; i >= 0; i-- {
		if counts[g.waiting[i].src] > counts[g.waiting[victim].src] {
			victim = i
		}
	}
	w := g.waiting[victim]
	g.unwaitLocked(victim)
	return w
}

func (g *startupGate) unwaitLocked(i int) {
	w := g.waiting[i]
	g.waiting = slices.Delete(g.waiting, i, i+1)
	w.gone = true
	close(w.ready)
}

// pumpLocked admits waiters while there is room or a victim, the waiter
// from the source holding the fewest pending connections first, oldest
// first, and returns the connections it evicted for them.
func (g *startupGate) pumpLocked(now time.Time) []*startup {
	var evicted []*startup
	for len(g.waiting) > 0 {
		next := 0
		for i, w := range g.waiting {
			if g.bySource[w.src] < g.bySource[g.waiting[next].src] {
				next = i
			}
		}
		w := g.waiting[next]
		if len(g.pending) >= g.full {
			v := g.victimLocked(now, w.src)
			if v == nil {
				break
			}
			g.removeLocked(v)
			evicted = append(evicted, v)
		}
		g.waiting = slices.Delete(g.waiting, next, next+1)
		g.pendLocked(w, now)
	}
	g.armLocked(now)
	return evicted
}

// armLocked sets the timer to pump when the first protection lapses,
// while connections wait.
func (g *startupGate) armLocked(now time.Time) {
	if len(g.waiting) == 0 {
		if g.timer != nil {
			g.timer.Stop()
		}
		return
	}
	wait := g.protect
	for s := range g.pending {
		wait = min(wait, s.lastStep.Add(g.protect).Sub(now))
	}
	wait = max(wait, time.Millisecond)
	if g.timer == nil {
		g.timer = time.AfterFunc(wait, g.lapse)
		return
	}
	g.timer.Reset(wait)
}

// lapse admits waiters once a protection may have lapsed.
func (g *startupGate) lapse() {
	g.mu.Lock()
	evicted := g.pumpLocked(g.now())
	g.mu.Unlock()
	for _, v := range evicted {
		v.close()
	}
}

// progress records that st reached stage.
func (g *startupGate) progress(st *startup, stage int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st.gone || st.waits || stage <= st.stage {
		return
	}
	g.clock++
	st.stage, st.step, st.lastStep, st.fresh = stage, g.clock, g.now(), false
}

// release removes st once it has authenticated or closed, or gave up
// waiting; releasing it again, or after it was evicted, does nothing. The
// place it frees goes to a waiter.
func (g *startupGate) release(st *startup) {
	g.mu.Lock()
	if st.gone {
		g.mu.Unlock()
		return
	}
	if st.waits {
		i := slices.Index(g.waiting, st)
		g.waiting = slices.Delete(g.waiting, i, i+1)
		st.gone = true
		close(st.ready)
		g.armLocked(g.now())
		g.mu.Unlock()
		return
	}
	g.removeLocked(st)
	if len(g.pending) <= g.full/2 {
		g.evicting = false
	}
	evicted := g.pumpLocked(g.now())
	g.mu.Unlock()
	for _, v := range evicted {
		v.close()
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

// admitted reports whether st holds a place (it may since have been
// evicted, which closed its connection).
func (g *startupGate) admitted(st *startup) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !st.waits && !st.gone
}

// waitingCount returns the number of connections waiting for a place.
func (g *startupGate) waitingCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiting)
}

// stop drops every waiting connection and stops the timer (the server is
// shutting down).
func (g *startupGate) stop() {
	g.mu.Lock()
	var dropped []*startup
	for len(g.waiting) > 0 {
		dropped = append(dropped, g.waiting[0])
		g.unwaitLocked(0)
	}
	if g.timer != nil {
		g.timer.Stop()
	}
	g.mu.Unlock()
	for _, w := range dropped {
		w.close()
	}
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
