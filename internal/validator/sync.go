package validator

import (
	"context"
	"fmt"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
)

// run is the service's main loop: it follows the chain head and starts
// sweeps and weights submissions when they are due. Sweeps and
// submissions run in their own goroutines, so a slow chain or a long sweep
// never holds up the metagraph sync.
func (s *Service) run(ctx context.Context) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	s.tick(ctx, s.snapshotHead())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		head, ok := s.sync(ctx)
		if !ok {
			continue
		}
		s.tick(ctx, head)
	}
}

func (s *Service) snapshotHead() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head
}

// sync reads the head and, when it moved, the metagraph. It reports the
// head and whether it could read it.
func (s *Service) sync(ctx context.Context) (uint64, bool) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ChainTimeout)
	head, err := s.deps.Chain.CurrentBlock(cctx)
	cancel()
	if err != nil {
		s.chainState(ctx, false, err)
		return 0, false
	}
	s.mu.Lock()
	moved := head > s.head || s.mg == nil
	s.mu.Unlock()
	if !moved {
		s.chainState(ctx, true, nil)
		return head, true
	}
	cctx, cancel = context.WithTimeout(ctx, s.cfg.ChainTimeout)
	mg, err := s.deps.Chain.Metagraph(cctx, s.cfg.NetUID)
	cancel()
	if err != nil {
		s.chainState(ctx, false, err)
		return 0, false
	}
	s.chainState(ctx, true, nil)
	me, registered := mg.ByHotkey(s.cfg.Hotkey.SS58())
	if !registered {
		s.fail(fmt.Errorf("%w: hotkey %s was deregistered from subnet %d", ErrNotRegistered, s.cfg.Hotkey.SS58(), s.cfg.NetUID))
		return 0, false
	}
	s.mu.Lock()
	s.mg, s.head = mg, max(head, mg.Block)
	uidChanged, permitChanged := me.UID != s.uid, me.ValidatorPermit != s.permit
	s.uid, s.permit = me.UID, me.ValidatorPermit
	s.mu.Unlock()
	if uidChanged {
		s.log.Warn("validator uid changed", "uid", me.UID)
	}
	if permitChanged {
		s.logPermit(me.ValidatorPermit)
	}
	s.forgetDeparted(ctx, mg)
	return max(head, mg.Block), true
}

// chainState logs transitions between a reachable and an unreachable
// chain, not every failed poll.
func (s *Service) chainState(ctx context.Context, ok bool, err error) {
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	was := s.chainOK
	s.chainOK = ok
	s.mu.Unlock()
	switch {
	case was && !ok:
		s.log.Warn("chain unreachable; working from the last metagraph", "err", err)
	case !was && ok:
		s.log.Info("chain reachable again")
	}
}

// forgetDeparted drops the results of hotkeys no longer on the subnet.
func (s *Service) forgetDeparted(ctx context.Context, mg *subnet.Metagraph) {
	present := make(map[string]bool, len(mg.Neurons))
	for _, n := range mg.Neurons {
		present[n.Hotkey] = true
	}
	var gone []string
	s.mu.Lock()
	for h := range s.history {
		if !present[h] {
			gone = append(gone, h)
			delete(s.history, h)
			delete(s.status, h)
		}
	}
	s.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	if err := s.deps.Store.ForgetMiners(ctx, gone); err != nil {
		s.log.Warn("forget departed miners", "err", err)
		return
	}
	s.log.Info("miners left the subnet; their results are dropped", "count", len(gone))
}

// tick starts what is due at head.
func (s *Service) tick(ctx context.Context, head uint64) {
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	// A last sweep "after" the head means the chain was reset: sweep now.
	sweepDue := !s.sweepOn && (s.lastSwp == 0 || head < s.lastSwp || head >= s.lastSwp+s.cfg.PoGInterval)
	if sweepDue {
		s.sweepOn = true
	}
	weightsDue := !s.weightOn && head >= s.nextWts
	checkDue := !s.weightOn && !weightsDue && s.commitsOut && head != s.checkedAt
	if weightsDue || checkDue {
		s.weightOn = true
		s.checkedAt = head
	}
	s.mu.Unlock()
	if checkDue {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			out := s.checkCommits(ctx)
			s.mu.Lock()
			s.weightOn, s.commitsOut = false, out
			s.mu.Unlock()
		}()
	}
	if sweepDue {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.sweep(ctx, head)
		}()
	}
	if weightsDue {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.setWeights(ctx, head)
		}()
	}
}
