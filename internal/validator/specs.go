package validator

import (
	"context"
	"sync"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/pog"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/subnet"
)

// querySpecs asks miners for their Specs, SpecsBatchSize at a time, and
// returns the answers that decoded, by hotkey. Specs are hints: they size
// the test lease and skip miners that report no known GPU; they prove
// nothing.
func (s *Service) querySpecs(ctx context.Context, miners []subnet.Neuron) map[string]market.Specs {
	out := map[string]market.Specs{}
	var mu sync.Mutex
	failed := 0
	for i := 0; i < len(miners) && ctx.Err() == nil; i += s.cfg.SpecsBatchSize {
		batch := miners[i:min(i+s.cfg.SpecsBatchSize, len(miners))]
		var wg sync.WaitGroup
		for _, n := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var resp protocol.Specs
				_, err := s.deps.Axon.Call(ctx, axon.Target{Addr: n.Axon.Addr(), Hotkey: n.Hotkey}, protocol.SpecsName,
					&protocol.Specs{}, &resp, s.cfg.SpecsTimeout)
				var sp market.Specs
				if err == nil {
					sp, err = protocol.DecodeSpecs(resp.SpecsOutput)
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed++
					s.log.Debug("no specs", "uid", n.UID, "err", err)
					return
				}
				out[n.Hotkey] = sp
			}()
		}
		wg.Wait()
	}
	s.log.Info("specs queried", "answered", len(out), "failed", failed)
	return out
}

// testGPUs is the GPU count a test lease asks for: the miner's reported
// count (at most pog.MaxGPUs), or 1 when it did not say.
func testGPUs(sp market.Specs, ok bool) int {
	if !ok {
		return 1
	}
	n := max(sp.GPU.Count, len(sp.GPU.Details))
	return min(max(n, 1), pog.MaxGPUs)
}

// recognized reports whether a specs answer names a GPU of the table.
func recognized(t *market.GPUTable, sp market.Specs) bool {
	for _, g := range sp.GPU.Details {
		if _, ok := t.Lookup(g.Name); ok {
			return true
		}
	}
	return false
}
