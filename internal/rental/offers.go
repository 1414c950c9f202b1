package rental

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nicompute/nicompute/internal/allocator"
	"github.com/nicompute/nicompute/internal/market"
)

// verified is a miner whose GPUs the validator proved, with what it last
// said it has free.
type verified struct {
	miner allocator.Miner
	model string
	count int
	vram  int64 // bytes per GPU
	score float64
	at    time.Time // the pass's time
	free  *market.Resources
}

// verifiedCache keeps the last read of the validator's results and specs.
type verifiedCache struct {
	// mu protects the following.
	mu      sync.Mutex
	at      time.Time
	results map[string][]market.PoGResult
	specs   map[string]market.Specs
}

// verification returns the validator's results and specs, read again
// when the last read is older than VerifiedTTL.
func (s *Service) verification(ctx context.Context) (map[string][]market.PoGResult, map[string]market.Specs, error) {
	c := &s.vc
	c.mu.Lock()
	defer c.mu.Unlock()
	now := s.cfg.Now()
	if c.results != nil && s.cfg.VerifiedTTL > 0 && now.Sub(c.at) < s.cfg.VerifiedTTL && !now.Before(c.at) {
		return c.results, c.specs, nil
	}
	results, err := s.deps.Verifier.Results(ctx, s.cfg.ScoreWindow)
	if err != nil {
		return nil, nil, fmt.Errorf("read proof-of-gpu results: %w", err)
	}
	specs, err := s.deps.Verifier.SpecsByHotkey(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("read miner specs: %w", err)
	}
	c.results, c.specs, c.at = results, specs, now
	return results, specs, nil
}

// verifiedMiners returns every miner of the metagraph (but the validator)
// whose standing is a pass, with its free resources when known.
func (s *Service) verifiedMiners(ctx context.Context) ([]verified, error) {
	mg, err := s.mg.get(ctx)
	if err != nil {
		return nil, err
	}
	results, specs, err := s.verification(ctx)
	if err != nil {
		return nil, err
	}
	var out []verified
	for _, n := range mg.Neurons {
		if n.Hotkey == s.cfg.Hotkey {
			continue
		}
		b := market.VerifiedBasis(results[n.Hotkey], s.cfg.ScoreWindow)
		if b == nil || b.Count <= 0 {
			continue
		}
		m, err := allocator.MinerOf(n)
		if err != nil {
			continue // no axon: cannot be rented
		}
		v := verified{miner: m, model: b.Model, count: b.Count, at: b.At, score: market.Score(s.cfg.Table, b.Model, b.Count)}
		if gm, ok := s.cfg.Table.Lookup(b.Model); ok {
			v.vram = int64(gm.MemoryBytes)
		}
		if sp, ok := specs[n.Hotkey]; ok && sp.Free != nil {
			free := *sp.Free
			v.free = &free
		}
		out = append(out, v)
	}
	return out, nil
}

// fits reports whether v meets requirement r, judging free resources by
// its last specs answer when there is one.
func (v verified) fits(r market.Requirement) bool {
	if r.GPUs > v.count {
		return false
	}
	if r.GPUs > 0 && !r.MatchesGPU(v.model, v.vram>>20) {
		return false
	}
	if f := v.free; f != nil {
		if len(f.GPUs) < r.GPUs || f.CPUs < r.EffectiveCPUs() || f.MemoryBytes < r.MemoryBytes || f.DiskBytes < r.DiskBytes {
			return false
		}
	}
	return true
}

// candidates returns the verified miners that fit r, best score first
// (then by uid), at most MaxCandidates.
func (s *Service) candidates(ctx context.Context, r market.Requirement) ([]verified, error) {
	all, err := s.verifiedMiners(ctx)
	if err != nil {
		return nil, err
	}
	var out []verified
	for _, v := range all {
		if v.fits(r) {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].score != out[j].score {
			return out[i].score > out[j].score
		}
		return out[i].miner.UID < out[j].miner.UID
	})
	if len(out) > s.cfg.MaxCandidates {
		out = out[:s.cfg.MaxCandidates]
	}
	return out, nil
}

// Offers returns what can be rented now: verified miners grouped by their
// verified model and count, best model first, narrowed by f. Hotkeys are
// shown to admins only.
func (s *Service) Offers(ctx context.Context, who market.Token, f OfferFilter) ([]Offer, error) {
	all, err := s.verifiedMiners(ctx)
	if err != nil {
		return nil, err
	}
	type key struct {
		model string
		count int
	}
	groups := map[key]*Offer{}
	want := strings.ToLower(strings.TrimSpace(f.GPUModel))
	for _, v := range all {
		switch {
		case want != "" && !strings.Contains(strings.ToLower(v.model), want),
			v.count < f.MinGPUCount, v.vram < f.MinVRAM:
			continue
		}
		if fr := v.free; fr != nil && (len(fr.GPUs) < v.count || fr.CPUs < f.CPUs || fr.MemoryBytes < f.RAM || fr.DiskBytes < f.Disk) {
			continue
		}
		if v.free == nil && (f.CPUs > 0 || f.RAM > 0 || f.Disk > 0) {
			continue // cannot tell it fits
		}
		k := key{v.model, v.count}
		o := groups[k]
		if o == nil {
			o = &Offer{GPUModel: v.model, GPUCount: v.count, VRAM: v.vram}
			groups[k] = o
		}
		o.Miners++
		if v.at.After(o.LastVerified) {
			o.LastVerified = v.at
		}
		if fr := v.free; fr != nil {
			o.FreeCPUs, o.FreeRAM, o.FreeDisk = max(o.FreeCPUs, fr.CPUs), max(o.FreeRAM, fr.MemoryBytes), max(o.FreeDisk, fr.DiskBytes)
		}
		if who.Admin() {
			o.Hotkeys = append(o.Hotkeys, v.miner.Hotkey)
		}
	}
	out := make([]Offer, 0, len(groups))
	for _, o := range groups {
		sort.Strings(o.Hotkeys)
		out = append(out, *o)
	}
	sort.Slice(out, func(i, j int) bool {
		si, sj := market.Score(s.cfg.Table, out[i].GPUModel, out[i].GPUCount), market.Score(s.cfg.Table, out[j].GPUModel, out[j].GPUCount)
		if si != sj {
			return si > sj
		}
		if out[i].GPUModel != out[j].GPUModel {
			return out[i].GPUModel < out[j].GPUModel
		}
		return out[i].GPUCount < out[j].GPUCount
	})
	return out, nil
}
