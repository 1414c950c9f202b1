package miner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
)

// chainView is one metagraph with what the policy derives from it. It is
// immutable once published.
type chainView struct {
	mg       *subnet.Metagraph
	byHotkey map[string]subnet.Neuron
	// validators is the number of neurons whose stake reaches the permit;
	// upToDate how many of them serve an axon version ≥ the minimum.
	validators, upToDate int
	fetched              time.Time
}

// chainSync keeps the metagraph fresh in the background and the miner's
// axon served on chain.
type chainSync struct {
	cfg   Config
	chain Chain
	log   *slog.Logger
	view  atomic.Pointer[chainView]

	// mu protects the following.
	mu         sync.Mutex
	retryAfter uint64 // block before which serving is not retried
	registered bool   // own hotkey seen in the last metagraph
	lastErr    string // last refresh error, to log transitions only
}

func newChainSync(cfg Config, ch Chain, log *slog.Logger) *chainSync {
	return &chainSync{cfg: cfg, chain: ch, log: log.With("component", "chain")}
}

// ErrNotRegistered is returned by New when the miner's hotkey has no uid
// on its subnet.
var ErrNotRegistered = errors.New("miner hotkey is not registered")

// start fetches the first metagraph and checks the miner is registered.
func (c *chainSync) start(ctx context.Context) error {
	v, err := c.fetch(ctx)
	if err != nil {
		return fmt.Errorf("read metagraph of subnet %d: %w", c.cfg.NetUID, err)
	}
	hk := c.cfg.Hotkey.SS58()
	if _, ok := v.byHotkey[hk]; !ok {
		return fmt.Errorf("%w: hotkey %s is not registered on subnet %d", ErrNotRegistered, hk, c.cfg.NetUID)
	}
	c.registered = true
	c.view.Store(v)
	return nil
}

func (c *chainSync) fetch(ctx context.Context) (*chainView, error) {
	mg, err := c.chain.Metagraph(ctx, c.cfg.NetUID)
	if err != nil {
		return nil, err
	}
	return newChainView(mg, c.cfg.Policy, c.cfg.Now()), nil
}

// newChainView indexes mg for the policy p. Validators are the neurons
// whose stake reaches the permit stake.
func newChainView(mg *subnet.Metagraph, p PolicyConfig, now time.Time) *chainView {
	v := &chainView{mg: mg, byHotkey: make(map[string]subnet.Neuron, len(mg.Neurons)), fetched: now}
	for _, n := range mg.Neurons {
		v.byHotkey[n.Hotkey] = n
		if n.Stake >= p.MinStake {
			v.validators++
			if n.Axon.Version >= p.MinValidatorVersion {
				v.upToDate++
			}
		}
	}
	return v
}

// uid returns the miner's uid in the current view.
func (c *chainSync) uid() subnet.UID {
	n := c.view.Load().byHotkey[c.cfg.Hotkey.SS58()]
	return n.UID
}

// run polls the head every PollInterval and refreshes the metagraph when
// it moved: one cheap call per poll, one metagraph per block at most.
func (c *chainSync) run(ctx context.Context) {
	every(ctx, c.cfg.PollInterval, c.poll)
}

func (c *chainSync) poll(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, max(c.cfg.PollInterval, 10*time.Second))
	defer cancel()
	head, err := c.chain.CurrentBlock(cctx)
	if err == nil && head <= c.view.Load().mg.Block {
		return
	}
	var v *chainView
	if err == nil {
		v, err = c.fetch(cctx)
	}
	c.mu.Lock()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != c.lastErr {
		if err != nil {
			c.log.Warn("chain unreachable; using the last metagraph", "block", c.view.Load().mg.Block, "err", err)
		} else {
			c.log.Info("chain reachable again")
		}
		c.lastErr = msg
	}
	c.mu.Unlock()
	if err != nil {
		return
	}
	c.view.Store(v)
	c.noteRegistration(v)
	c.serveIfNeeded(cctx)
}

func (c *chainSync) noteRegistration(v *chainView) {
	_, ok := v.byHotkey[c.cfg.Hotkey.SS58()]
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok != c.registered {
		if ok {
			c.log.Info("hotkey registered again", "block", v.mg.Block)
		} else {
			c.log.Error("hotkey no longer registered on the subnet; leases keep running but validators will stop calling", "block", v.mg.Block)
		}
		c.registered = ok
	}
}

// wantAxon is what the miner serves on chain.
func (c *chainSync) wantAxon() subnet.AxonInfo {
	return subnet.AxonInfo{Version: c.cfg.Version, IP: c.cfg.ExternalIP, Port: uint16(c.cfg.ExternalPort), Protocol: 4}
}

// axonCurrent reports whether the chain already has the wanted axon.
func axonCurrent(have, want subnet.AxonInfo) bool {
	a, errA := netip.ParseAddr(have.IP)
	b, errB := netip.ParseAddr(want.IP)
	return errA == nil && errB == nil && a.Unmap() == b.Unmap() && have.Port == want.Port && have.Version == want.Version
}

// serveIfNeeded serves the axon when the chain's ip, port or version
// differ from the miner's. A failure is retried some blocks later.
func (c *chainSync) serveIfNeeded(ctx context.Context) {
	v := c.view.Load()
	own, ok := v.byHotkey[c.cfg.Hotkey.SS58()]
	if !ok {
		return
	}
	want := c.wantAxon()
	if axonCurrent(own.Axon, want) {
		return
	}
	c.mu.Lock()
	wait := v.mg.Block < c.retryAfter
	c.mu.Unlock()
	if wait {
		return
	}
	err := c.chain.ServeAxon(ctx, c.cfg.Hotkey, c.cfg.NetUID, want)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		// The next metagraph would still show the old axon: wait a few
		// blocks (the chain's serving rate limit is counted in blocks).
		c.retryAfter = v.mg.Block + 10
		c.log.Warn("serve axon on chain failed; retrying later", "ip", want.IP, "port", want.Port, "version", want.Version, "retry_block", c.retryAfter, "err", err)
		return
	}
	// The change shows in a later metagraph; do not serve again before.
	c.retryAfter = v.mg.Block + 2
	c.log.Info("axon served on chain", "ip", want.IP, "port", want.Port, "version", want.Version,
		"was_ip", own.Axon.IP, "was_port", own.Axon.Port, "was_version", own.Axon.Version)
}
