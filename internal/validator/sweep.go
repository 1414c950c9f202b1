package validator

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// sweep tests every queryable miner once (with retries) and records the
// results; block is the head that made it due.
func (s *Service) sweep(ctx context.Context, block uint64) {
	defer func() {
		s.mu.Lock()
		s.sweepOn = false
		s.mu.Unlock()
	}()
	if d := s.cfg.PoG.MaxRandomDelay; d > 0 {
		delay := rand.N(d)
		s.log.Info("proof-of-GPU sweep scheduled", "block", block, "delay", delay.Round(time.Second))
		if !sleep(ctx, delay) {
			return
		}
	}
	s.mu.Lock()
	mg, self := s.mg, s.uid
	s.mu.Unlock()
	miners, skipped := queryable(mg, s.rules(self))

	rented := map[string]bool{}
	if s.deps.Rentals != nil {
		r, err := s.deps.Rentals(ctx)
		if err != nil {
			s.log.Warn("read allocation records; treating no miner as rented", "err", err)
		} else {
			rented = r
		}
	}
	specs := map[string]market.Specs{}
	if s.cfg.HardwareQuery && len(miners) > 0 {
		specs = s.querySpecs(ctx, miners)
		if err := s.deps.Store.SaveSpecs(ctx, specs, s.cfg.Now()); err != nil {
			s.log.Warn("save specs", "err", err)
		}
	}
	var targets, unrecognized []target
	for _, n := range miners {
		sp, ok := specs[n.Hotkey]
		t := target{UID: n.UID, Hotkey: n.Hotkey, Axon: n.Axon, GPUs: testGPUs(sp, ok)}
		if ok {
			t.SpecsGPUs = t.GPUs
		}
		switch {
		case rented[n.Hotkey]:
			skipped[n.Hotkey] = "rented out by this validator: keeps its last score"
		case ok && !s.cfg.WhitelistUnrecognized && !recognized(s.cfg.PoG.Table, sp):
			unrecognized = append(unrecognized, t)
		default:
			targets = append(targets, t)
		}
	}
	s.mu.Lock()
	s.status, s.rented = skipped, rented
	s.mu.Unlock()
	// A miner skipped for its specs is recorded as failed, so an earlier
	// pass stops counting from this sweep on (also after a restart) rather
	// than forever: such a miner is never tested again until its specs
	// name a known GPU.
	for _, t := range unrecognized {
		s.record(ctx, t, block, failed(market.PoGUnrecognized, "not tested: %s", reasonUnrecognized), 0)
	}

	start, uploaded := s.cfg.Now(), s.driver.uploaded.Load()
	s.log.Info("proof-of-GPU sweep started", "block", block, "miners", len(targets), "skipped", len(skipped)+len(unrecognized), "workers", s.cfg.PoG.MaxWorkers)
	// Every miner has its goroutine; an attempt holds one of MaxWorkers
	// slots, a wait between attempts none, so miners that fail and are
	// retried never keep the others waiting.
	slots := make(chan struct{}, s.cfg.PoG.MaxWorkers)
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.testMiner(ctx, t, block, slots)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		s.log.Info("proof-of-GPU sweep interrupted")
		return
	}
	s.mu.Lock()
	s.lastSwp = block
	s.mu.Unlock()
	s.metrics.swept(block)
	if err := s.deps.Store.SetState(ctx, StateLastSweep, int64(block)); err != nil {
		s.log.Warn("record sweep", "err", err)
	}
	s.log.Info("proof-of-GPU sweep finished", "block", block, "miners", len(targets), "took", s.cfg.Now().Sub(start).Round(time.Millisecond),
		"worker_bytes_uploaded", s.driver.uploaded.Load()-uploaded)
	s.report("proof-of-GPU sweep finished")
}

// reasonUnrecognized is why a miner whose specs name no known GPU is not
// tested.
const reasonUnrecognized = "specs name no GPU of the GPU table (--validator.whitelist.unrecognized tests it anyway)"

// testMiner tests t until it passes, fails conclusively or runs out of
// attempts, and records the result; each attempt holds a slot of slots.
// A test cut short by shutdown records nothing.
func (s *Service) testMiner(ctx context.Context, t target, block uint64, slots chan struct{}) {
	start := time.Now()
	for i := 1; ; i++ {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		a := s.driver.test(ctx, t)
		<-slots
		if ctx.Err() != nil {
			return
		}
		if a.outcome == OutcomePass || a.final || i >= s.cfg.PoG.RetryLimit {
			s.metrics.tested(a.outcome, time.Since(start))
			s.record(ctx, t, block, a, i)
			return
		}
		s.log.Debug("proof-of-GPU attempt failed; retrying", "uid", t.UID, "attempt", i, "outcome", a.outcome, "reason", a.reason)
		if !sleep(ctx, s.cfg.PoG.RetryInterval) {
			return
		}
	}
}

// record stores a finished test and keeps it in memory.
func (s *Service) record(ctx context.Context, t target, block uint64, a attempt, attempts int) {
	r := Result{
		Hotkey: t.Hotkey, UID: t.UID, Block: block, At: s.cfg.Now().UTC(), Outcome: a.outcome,
		Attempts: attempts, Code: a.code, Reason: a.reason, HostKey: a.hostKey, DeallocError: a.deallocError,
	}
	if a.res != nil {
		r.Claimed, r.N, r.Elapsed = clean(a.res.Claimed, 128), a.res.N, a.res.Elapsed
		if a.outcome == OutcomePass {
			r.Model, r.Count = a.res.Model, a.res.Count
		}
	}
	if err := s.deps.Store.AddResult(ctx, r, s.cfg.KeepResults); err != nil {
		s.log.Warn("store proof-of-GPU result", "uid", t.UID, "err", err)
	}
	s.metrics.result(r)
	s.mu.Lock()
	h := append([]Result{r}, s.history[t.Hotkey]...)
	s.history[t.Hotkey] = h[:min(len(h), s.cfg.KeepResults)]
	s.mu.Unlock()
	log := s.log.Info
	if a.outcome != OutcomePass {
		log = s.log.Warn
	}
	log("proof-of-GPU result", "uid", t.UID, "miner", t.Hotkey, "outcome", a.outcome, "code", r.Code, "model", r.Model, "gpus", r.Count,
		"attempts", attempts, "elapsed", r.Elapsed.Round(time.Millisecond), "reason", r.Reason, "dealloc_error", r.DeallocError)
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
