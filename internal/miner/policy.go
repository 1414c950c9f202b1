package miner

import (
	"context"
	"fmt"
	"slices"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/subnet"
)

// decide applies the policy to a caller with the metagraph in v. It
// returns the refusal reason, or "" to admit. The order: whitelist (admit),
// blacklisted hotkey, unregistered, blacklisted coldkey, stake below the
// permit, outdated validator.
func decide(p PolicyConfig, v *chainView, hotkey string) string {
	if slices.Contains(p.WhitelistHotkeys, hotkey) {
		return ""
	}
	if slices.Contains(p.BlacklistHotkeys, hotkey) {
		return "hotkey is blacklisted by this miner"
	}
	n, ok := v.byHotkey[hotkey]
	if !ok {
		return fmt.Sprintf("hotkey is not registered on subnet %d", v.mg.NetUID)
	}
	if slices.Contains(p.BlacklistColdkeys, n.Coldkey) {
		return "coldkey is blacklisted by this miner"
	}
	if n.Stake < p.MinStake && !p.AllowLowStake {
		return fmt.Sprintf("stake %s is below the validator permit of %s", n.Stake, p.MinStake)
	}
	if outdated(p, v, n) {
		return fmt.Sprintf("validator version %d on chain is below this miner's minimum %d", n.Axon.Version, p.MinValidatorVersion)
	}
	return ""
}

// outdated reports whether n is refused for its version: it is below the
// minimum, the check is on, and more than the threshold share of
// validators is already up to date (so a new minimum does not cut off a
// subnet whose validators have not upgraded yet).
func outdated(p PolicyConfig, v *chainView, n subnet.Neuron) bool {
	if p.AllowOutdated || p.MinValidatorVersion == 0 || n.Axon.Version >= p.MinValidatorVersion || v.validators == 0 {
		return false
	}
	return v.upToDate*100 > p.UpdatedThreshold*v.validators
}

// blacklist is the axon hook of both synapses.
func (c *chainSync) blacklist(_ context.Context, caller axon.Caller, _ string) (string, bool) {
	reason := decide(c.cfg.Policy, c.view.Load(), caller.Hotkey)
	return reason, reason != ""
}

// priority is the caller's stake in TAO: under load, validators with more
// stake are served first.
func (c *chainSync) priority(_ context.Context, caller axon.Caller, _ string) float64 {
	n, ok := c.view.Load().byHotkey[caller.Hotkey]
	if !ok {
		return 0
	}
	return n.Stake.TAO()
}
