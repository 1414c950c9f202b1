package miner

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// specsCache holds the last measured specs and engine state. It is
// refreshed in the background, so the Specs synapse never waits for the
// machine probes or the runtime.
type specsCache struct {
	src         SpecsSource
	rt          Runtime
	log         *slog.Logger
	free        func(context.Context) (market.Capacity, error)
	enforcement func(context.Context) *market.Enforcement

	// mu protects the following.
	mu      sync.Mutex
	specs   market.Specs
	docker  string // engine version, "" while unknown
	dockerU bool   // engine answered at the last refresh
	enf     *market.Enforcement
}

func newSpecsCache(src SpecsSource, rt Runtime, log *slog.Logger) *specsCache {
	return &specsCache{src: src, rt: rt, log: log}
}

// refresh measures the machine and asks the engine its version. A failing
// machine probe is an error (the old specs stay); a down engine is not.
func (c *specsCache) refresh(ctx context.Context) (market.Specs, error) {
	specs, err := c.src.Collect(ctx)
	if err != nil {
		return market.Specs{}, err
	}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	version, verr := c.rt.EngineVersion(vctx)
	cancel()
	c.refreshEnforcement(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.specs = specs
	if verr == nil {
		c.docker, c.dockerU = version, true
	} else {
		c.dockerU = false
	}
	return specs, nil
}

// refreshEnforcement asks how leases are held to their limits (which runs
// the packet filter's check).
func (c *specsCache) refreshEnforcement(ctx context.Context) {
	if c.enforcement == nil {
		return
	}
	e := c.enforcement(ctx)
	c.mu.Lock()
	c.enf = e
	c.mu.Unlock()
}

func (c *specsCache) run(ctx context.Context, d time.Duration) {
	every(ctx, d, func(ctx context.Context) {
		if _, err := c.refresh(ctx); err != nil {
			c.log.Warn("measure machine", "err", err)
		}
	})
}

// get returns the specs with the engine version and the free resources.
func (c *specsCache) get(ctx context.Context) market.Specs {
	c.mu.Lock()
	s := c.specs
	s.HasDocker, s.Docker = c.dockerU, c.docker
	s.Enforcement = c.enf
	c.mu.Unlock()
	if c.free != nil {
		if free, err := c.free(ctx); err == nil {
			r := free.Resources()
			s.Free = &r
		}
	}
	return s
}
