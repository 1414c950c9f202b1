//go:build linux

package sshd

import (
	"math/rand/v2"
	"net"
	"sync"
)

// startupGate admits connections that have not yet authenticated, as
// OpenSSH's MaxStartups and PerSourceMaxStartups do: one source may hold at
// most perSource of them, and once start of them are open new ones are
// dropped at random, with a probability rising from rate % to 100 % at
// full. A source that opens idle connections can then take only its own
// few slots, and many sources only make logins likelier to fail, rather
// than certain to.
type startupGate struct {
	full, start, rate, perSource int
	// roll returns a number in [0, 100); tests replace it.
	roll func() int

	// mu protects the fields below.
	mu       sync.Mutex
	total    int
	bySource map[string]int
}

func newStartupGate(cfg Config) *startupGate {
	return &startupGate{
		full:      cfg.MaxStartups,
		start:     cfg.RandomDropStartups,
		rate:      cfg.RandomDropPercent,
		perSource: cfg.MaxStartupsPerSource,
		roll:      func() int { return rand.IntN(100) },
		bySource:  map[string]int{},
	}
}

// admit takes a slot for a connection from src, or returns why not.
func (g *startupGate) admit(src string) (refused string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.bySource[src] >= g.perSource:
		return "too many unauthenticated connections from this source"
	case g.total >= g.full:
		return "too many unauthenticated connections"
	case g.total >= g.start:
		p := g.rate + (100-g.rate)*(g.total-g.start)/(g.full-g.start)
		if g.roll() < p {
			return "unauthenticated connections past the random drop threshold"
		}
	}
	g.total++
	g.bySource[src]++
	return ""
}

// release gives back a slot admit took for src.
func (g *startupGate) release(src string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if g.bySource[src] <= 1 {
		delete(g.bySource, src)
	} else {
		g.bySource[src]--
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
