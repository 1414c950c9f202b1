package rental

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nicompute/nicompute/internal/allocator"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
)

// own returns allocation id when who may see it: its tenant's tokens and
// admins. Another tenant's allocation, like an orphan, is not found.
func (s *Service) own(ctx context.Context, who market.Token, id string) (market.Allocation, error) {
	a, err := s.deps.Store.Allocation(ctx, id)
	if market.ErrorCode(err) == market.ENOTFOUND || err == nil && (a.Orphan || a.Tenant != who.Tenant && !who.Admin()) {
		return market.Allocation{}, apiErr(market.ENOTFOUND, "not_found", "no allocation %s", clipID(id))
	}
	return a, err
}

func clipID(id string) string {
	if len(id) > 40 {
		id = id[:40] + "…"
	}
	return strings.ToValidUTF8(id, "?")
}

// Allocations lists who's allocations (an admin's: every tenant's),
// newest first; ended ones too when asked.
func (s *Service) Allocations(ctx context.Context, who market.Token, ended bool) ([]Allocation, error) {
	tenant := who.Tenant
	if who.Admin() {
		tenant = ""
	}
	list, err := s.deps.Store.TenantAllocations(ctx, tenant, ended, 500)
	if err != nil {
		return nil, err
	}
	out := make([]Allocation, 0, len(list))
	for _, a := range list {
		out = append(out, s.view(a, who))
	}
	return out, nil
}

// Allocation returns one of who's allocations. Errors: ENOTFOUND.
func (s *Service) Allocation(ctx context.Context, who market.Token, id string) (Allocation, error) {
	a, err := s.own(ctx, who, id)
	if err != nil {
		return Allocation{}, err
	}
	return s.view(a, who), nil
}

// running loads who's allocation id under its lock and checks it holds a
// lease now. The caller releases the lock.
func (s *Service) running(ctx context.Context, who market.Token, id string) (market.Allocation, func(), error) {
	if _, err := s.own(ctx, who, id); err != nil {
		return market.Allocation{}, nil, err
	}
	unlock := s.lock(id)
	a, err := s.own(ctx, who, id)
	if err == nil && !a.State.Running() {
		err = apiErr(market.ECONFLICT, "not_running", "allocation %s is %s", a.ID, a.State)
	}
	if err != nil {
		unlock()
		return a, nil, err
	}
	return a, unlock, nil
}

// minerErr turns a miner's failure into an API error.
func minerErr(err error) error {
	var r *allocator.Refusal
	if errors.As(err, &r) {
		return apiErr(market.ECONFLICT, "miner_refused", "the miner refused: %s", r.Message)
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return apiErr(market.EUNAVAILABLE, "miner_unavailable", "the miner did not answer; try again later")
}

// Extend adds d to the end of who's allocation id, extending the miner's
// lease when it would end first. Errors: ENOTFOUND, EINVALID, ECONFLICT
// (not running, or the miner refused), EUNAVAILABLE.
func (s *Service) Extend(ctx context.Context, who market.Token, id string, d time.Duration) (Allocation, error) {
	start := time.Now()
	a, err := s.extend(ctx, who, id, d)
	s.m.request("extend", start, resultLabel(err))
	return a, err
}

// extend is Extend, unmeasured.
func (s *Service) extend(ctx context.Context, who market.Token, id string, d time.Duration) (Allocation, error) {
	if d < MinDuration {
		return Allocation{}, apiErr(market.EINVALID, "invalid_request", "duration must be at least %s", MinDuration)
	}
	a, unlock, err := s.running(ctx, who, id)
	if err != nil {
		return Allocation{}, err
	}
	defer unlock()
	until := a.ExpiresAt.Add(d)
	if until.Sub(a.CreatedAt) > s.cfg.MaxDuration {
		return Allocation{}, apiErr(market.EINVALID, "invalid_request", "an allocation may last at most %s in all", s.cfg.MaxDuration)
	}
	if until.After(a.MinerExpiresAt) {
		key, err := leaseKey(a)
		if err != nil {
			return Allocation{}, err
		}
		days := allocator.Days(until.Sub(s.cfg.Now()))
		end, err := s.deps.Miners.Extend(ctx, s.miner(ctx, a), key, days)
		if err != nil {
			return Allocation{}, minerErr(err)
		}
		a.MinerExpiresAt = end
	}
	a.ExpiresAt, a.ExpiringSent = until, false
	if err := s.deps.Store.UpdateAllocation(ctx, a); err != nil {
		return Allocation{}, err
	}
	s.log.Info("allocation extended", "allocation", a.ID, "expires", a.ExpiresAt.Format(time.RFC3339))
	return s.view(a, who), nil
}

// Actions renters may run on a lease, by API name.
var actions = map[string]string{
	"restart": protocol.ActionRestart, "pause": protocol.ActionPause,
	"unpause": protocol.ActionUnpause, "exchange_key": protocol.ActionExchangeKey,
}

// actionLabel is the action label of an action request: its name, or
// "invalid" for a name that is not one.
func actionLabel(name string) string {
	if _, ok := actions[name]; ok {
		return name
	}
	return "invalid"
}

// Act runs a docker action on who's allocation id. Errors: ENOTFOUND,
// EINVALID, ECONFLICT (not running, or the miner refused), EUNAVAILABLE.
func (s *Service) Act(ctx context.Context, who market.Token, id string, r ActionRequest) (Allocation, error) {
	start := time.Now()
	a, err := s.act(ctx, who, id, r)
	s.m.request(actionLabel(r.Action), start, resultLabel(err))
	return a, err
}

// act is Act, unmeasured.
func (s *Service) act(ctx context.Context, who market.Token, id string, r ActionRequest) (Allocation, error) {
	action, ok := actions[r.Action]
	if !ok {
		return Allocation{}, apiErr(market.EINVALID, "invalid_request", "action must be restart, pause, unpause or exchange_key")
	}
	var keys string
	if action == protocol.ActionExchangeKey {
		var err error
		if keys, err = checkSSHKeys(r.SSHKeys); err != nil {
			return Allocation{}, err
		}
	} else if len(r.SSHKeys) > 0 {
		return Allocation{}, apiErr(market.EINVALID, "invalid_request", "ssh_keys are only for exchange_key")
	}
	a, unlock, err := s.running(ctx, who, id)
	if err != nil {
		return Allocation{}, err
	}
	defer unlock()
	key, err := leaseKey(a)
	if err != nil {
		return Allocation{}, err
	}
	if _, err := s.deps.Miners.Act(ctx, s.miner(ctx, a), key, action, keys); err != nil {
		return Allocation{}, minerErr(err)
	}
	if action == protocol.ActionExchangeKey {
		a.SSHKeys = r.SSHKeys
		if err := s.deps.Store.UpdateAllocation(ctx, a); err != nil {
			return Allocation{}, err
		}
	}
	s.log.Info("allocation action", "allocation", a.ID, "action", r.Action)
	return s.view(a, who), nil
}

// End ends who's allocation id: the miner is told at once; when it cannot
// confirm now, the allocation stays ending and the background retries.
// Ending an ended allocation answers it as it is. Errors: ENOTFOUND,
// ECONFLICT (still being allocated).
func (s *Service) End(ctx context.Context, who market.Token, id string) (Allocation, error) {
	start := time.Now()
	a, err := s.end(ctx, who, id)
	s.m.request("end", start, resultLabel(err))
	return a, err
}

// end is End, unmeasured.
func (s *Service) end(ctx context.Context, who market.Token, id string) (Allocation, error) {
	if _, err := s.own(ctx, who, id); err != nil {
		return Allocation{}, err
	}
	unlock := s.lock(id)
	defer unlock()
	a, err := s.own(ctx, who, id)
	if err != nil {
		return Allocation{}, err
	}
	switch a.State {
	case market.AllocEnded:
		return s.view(a, who), nil
	case market.AllocAllocating:
		e := apiErr(market.ECONFLICT, "in_progress", "allocation %s is still being allocated; end it once it is answered", a.ID)
		e.RetryAfter = 2 * time.Second
		return Allocation{}, e
	case market.AllocOnline, market.AllocOffline:
		a.State, a.EndReason, a.NextTry = market.AllocEnding, market.EndReasonDeleted, s.cfg.Now()
		if err := s.deps.Store.UpdateAllocation(ctx, a); err != nil {
			return Allocation{}, err
		}
	}
	a = s.release(ctx, a)
	return s.view(a, who), nil
}
