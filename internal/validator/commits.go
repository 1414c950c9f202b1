package validator

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/weights"
)

// pendingCommits counts the commits the chain has not been seen to reveal
// and records the count in the metrics.
func (s *Service) pendingCommits(ctx context.Context) (int, error) {
	cs, err := s.deps.Store.Commits(ctx, market.CommitPending)
	if err == nil {
		s.metrics.pendingCommits(len(cs))
	}
	return len(cs), err
}

// errCommitsPending holds a commit back while subnet.MaxUnrevealedCommits
// commits are pending.
var errCommitsPending = errors.New("the chain has not revealed the last commits yet")

// canCommit refuses a commit while subnet.MaxUnrevealedCommits are pending
// (the chain's own limit is per epoch; pending ones of any epoch count
// here). Setting weights, on a subnet with commit-reveal off, is not held
// back.
func (s *Service) canCommit(ctx context.Context) error {
	n, err := s.pendingCommits(ctx)
	if err != nil {
		return fmt.Errorf("read the pending commits: %w", err)
	}
	if n >= subnet.MaxUnrevealedCommits {
		return fmt.Errorf("%w: %d pending, limit %d", errCommitsPending, n, subnet.MaxUnrevealedCommits)
	}
	return nil
}

// weightsSubmitted logs an accepted submission, records a commit and
// reports the table with the weights status.
func (s *Service) weightsSubmitted(ctx context.Context, head, next uint64, res weights.Result, uids []subnet.UID, vals []uint16, version uint64) {
	if res.Mode == weights.ModeSet {
		s.log.Info("weights set", "block", head, "miners", len(uids), "version_key", version, "next_block", next)
		s.setStatus(fmt.Sprintf("weights set at block %d", head))
		s.report(fmt.Sprintf("weights set at block %d", head))
		return
	}
	p := res.Plan
	c := WeightCommit{NetUID: s.cfg.NetUID, Block: head, At: s.cfg.Now().UTC(), CommitEpoch: p.CommitEpoch, RevealEpoch: p.RevealEpoch,
		RevealRound: p.Round, UIDs: uids, Weights: vals}
	if err := s.deps.Store.AddCommit(ctx, c); err != nil {
		s.log.Warn("record the weights commit", "err", err)
	}
	_, _ = s.pendingCommits(ctx) // for the metrics
	s.mu.Lock()
	s.commitsOut = true
	s.mu.Unlock()
	msg := fmt.Sprintf("committed for reveal in round %d (epoch %d)", p.Round, p.RevealEpoch)
	s.log.Info("weights "+msg, "block", head, "miners", len(uids), "version_key", version, "commit_epoch", p.CommitEpoch,
		"reveal_epoch", p.RevealEpoch, "reveal_block", p.RevealBlock, "reveal_round", p.Round, "next_block", next)
	s.setStatus(fmt.Sprintf("weights %s at block %d", msg, head))
	s.report(fmt.Sprintf("weights committed at block %d", head))
}

// weightsRefused logs a refused submission with the chain's reason.
func (s *Service) weightsRefused(res weights.Result, err error) {
	attrs := []any{"mode", res.Mode, "code", subnet.ErrorCode(err), "err", err, "retry_in_blocks", s.cfg.WeightsRetry}
	if errors.Is(err, errCommitsPending) {
		s.log.Warn("weights not committed: the chain has not revealed the last commits yet", "err", err, "retry_in_blocks", s.cfg.WeightsRetry)
		s.setStatus(fmt.Sprintf("weights not committed: %v", err))
		return
	}
	switch subnet.ErrorCode(err) {
	case subnet.ERATELIMITED:
		s.log.Warn("weights refused: rate limited", attrs...)
	case subnet.ENOTREGISTERED:
		s.log.Error("weights refused: hotkey not registered", attrs...)
	case subnet.ECOMMITREVEAL, subnet.ECOMMITREVEALOFF:
		s.log.Warn("weights refused: the subnet's commit-reveal setting changed; the next round follows it", attrs...)
	default:
		s.log.Warn("weights not submitted", attrs...)
	}
	s.setStatus(fmt.Sprintf("weights refused (%s): %v", subnet.ErrorCode(err), err))
}

func (s *Service) setStatus(st string) {
	s.mu.Lock()
	s.weights.Summary = st
	s.mu.Unlock()
}

// WeightsSummary describes the last weights submission and what became of
// it ("" before the first).
func (s *Service) WeightsSummary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.weights.Summary
}

// weightsMode is the label of a submission's mode ("unknown" when it
// failed before the path was chosen).
func weightsMode(res weights.Result) string {
	if res.Mode == "" {
		return "unknown"
	}
	return string(res.Mode)
}

// checkCommits settles pending commits: revealed when the validator's
// weights row on chain equals the newest commit of a reveal epoch that has
// begun (the chain reveals in commit order, so the older ones of that
// epoch were applied before it), missed when the reveal epoch has passed
// without that. It reports whether commits are still pending.
func (s *Service) checkCommits(ctx context.Context) bool {
	pending, err := s.deps.Store.Commits(ctx, market.CommitPending)
	if err != nil || len(pending) == 0 {
		return err != nil
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ChainTimeout)
	defer cancel()
	cr, err := s.deps.Chain.CommitReveal(cctx, s.cfg.NetUID)
	if err != nil {
		s.log.Debug("check weights commits: read the chain", "err", err)
		return true
	}
	cur := weights.CurrentEpoch(cr)
	uids, vals, err := s.deps.Chain.Weights(cctx, s.cfg.NetUID, s.UID())
	if err != nil {
		s.log.Debug("check weights commits: read the weights row", "err", err)
		return true
	}
	left := 0
	for i, c := range pending {
		newest := i == len(pending)-1 || pending[i+1].RevealEpoch != c.RevealEpoch
		last := pending[i]
		for j := i + 1; j < len(pending) && pending[j].RevealEpoch == c.RevealEpoch; j++ {
			last = pending[j]
		}
		status := ""
		switch {
		case cur >= c.RevealEpoch && slices.Equal(uids, last.UIDs) && slices.Equal(vals, last.Weights):
			status = market.CommitRevealed
		case cur > c.RevealEpoch:
			status = market.CommitMissed
		default:
			left++
			continue
		}
		if err := s.deps.Store.SetCommitStatus(ctx, c.ID, status); err != nil {
			s.log.Warn("record a commit's outcome", "err", err)
			return true
		}
		if !newest {
			continue
		}
		if status == market.CommitRevealed {
			s.log.Info("weights revealed by the chain", "round", c.RevealRound, "epoch", c.RevealEpoch, "commit_block", c.Block, "miners", len(c.UIDs))
			s.setStatus(fmt.Sprintf("weights committed at block %d revealed by the chain in epoch %d (round %d)", c.Block, c.RevealEpoch, c.RevealRound))
		} else {
			s.log.Warn("weights commit not revealed in its reveal epoch: the chain dropped it (beacon round not ingested, or the weights broke a rule at reveal)",
				"round", c.RevealRound, "epoch", c.RevealEpoch, "commit_block", c.Block, "current_epoch", cur)
			s.setStatus(fmt.Sprintf("weights committed at block %d were not revealed in epoch %d (round %d)", c.Block, c.RevealEpoch, c.RevealRound))
		}
	}
	s.metrics.pendingCommits(left)
	return left > 0
}
