// Package weights submits a validator's weights the way its subnet takes
// them. With commit-reveal off it sets them (set_weights). With it on
// (every Bittensor subnet by default) it commits them timelocked
// (commit-reveal v4): the SCALE WeightsTlockPayload naming the hotkey is
// encrypted with package tlock to the beacon round the SDK would choose
// (see PlanReveal), and submitted with commit_timelocked_weights signed by
// the hotkey; the chain decrypts and applies them by itself in the reveal
// epoch. The same code serves Bittensor (drand quicknet) and the embedded
// chain (its own beacon); only the chain's parameters differ.
package weights

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/tlock"
)

// Chain is what a Submitter needs of a chain.
type Chain interface {
	SetWeights(ctx context.Context, hotkey subnet.Signer, netuid subnet.NetUID, uids []subnet.UID, weights []uint16, version uint64) error
	CommitReveal(ctx context.Context, netuid subnet.NetUID) (subnet.CommitReveal, error)
	CommitTimelockedWeights(ctx context.Context, hotkey subnet.Signer, netuid subnet.NetUID, commit []byte, revealRound uint64, version uint16) error
}

// Mode is how weights were submitted.
type Mode string

// Modes.
const (
	ModeSet    Mode = "set"    // set_weights: visible at once
	ModeCommit Mode = "commit" // timelocked commit: revealed by the chain later
)

// Result describes a submission, refused or not (for logs and metrics:
// Mode and subnet.ErrorCode of the error are the natural labels).
type Result struct {
	Mode Mode
	// Block is the best block the submission was computed at.
	Block uint64
	// Plan is where a commit will be revealed (ModeCommit only).
	Plan Plan
}

// Submitter submits weights. The zero value is not usable: set Chain.
type Submitter struct {
	Chain Chain
	// Rand supplies the encryption's randomness [crypto/rand].
	Rand io.Reader
	// Now is the wall clock the reveal round is computed from [time.Now].
	Now func() time.Time
}

// Submit sets or commits hotkey's weights on netuid (u16 values, see
// subnet.MaxUpscale) with the subnet's weights version key. The Result
// says which path was taken even when the chain refused.
func (s *Submitter) Submit(ctx context.Context, hotkey subnet.Signer, netuid subnet.NetUID, uids []subnet.UID, values []uint16, version uint64) (Result, error) {
	if len(uids) != len(values) {
		return Result{}, subnet.Errorf(subnet.EINVALIDWEIGHTS, "weights length mismatch: %d uids, %d weights", len(uids), len(values))
	}
	cr, err := s.Chain.CommitReveal(ctx, netuid)
	if err != nil {
		return Result{}, fmt.Errorf("read the commit-reveal settings of subnet %d: %w", netuid, err)
	}
	if !cr.Enabled {
		return Result{Mode: ModeSet, Block: cr.Block}, s.Chain.SetWeights(ctx, hotkey, netuid, uids, values, version)
	}
	res := Result{Mode: ModeCommit, Block: cr.Block}
	commit, plan, err := s.Seal(cr, hotkey.PublicKey(), uids, values, version)
	if err != nil {
		return res, err
	}
	res.Plan = plan
	return res, s.Chain.CommitTimelockedWeights(ctx, hotkey, netuid, commit, plan.Round, cr.Version)
}

// Seal builds the encrypted commit of a weights row for the chain state cr
// and returns it with its reveal plan.
func (s *Submitter) Seal(cr subnet.CommitReveal, hotkey []byte, uids []subnet.UID, values []uint16, version uint64) ([]byte, Plan, error) {
	if cr.Version != subnet.CommitRevealVersion {
		return nil, Plan{}, subnet.Errorf(subnet.EINVALID, "subnet %d requires commit-reveal version %d; this validator commits version %d", cr.NetUID, cr.Version, subnet.CommitRevealVersion)
	}
	now, rnd := time.Now, io.Reader(rand.Reader)
	if s.Now != nil {
		now = s.Now
	}
	if s.Rand != nil {
		rnd = s.Rand
	}
	plan, err := PlanReveal(cr, now())
	if err != nil {
		return nil, Plan{}, err
	}
	payload := subnet.WeightsPayload{Hotkey: hotkey, UIDs: uids, Values: values, VersionKey: version}
	commit, err := tlock.Encrypt(cr.Beacon.PublicKey, plan.Round, payload.Encode(), rnd)
	if err != nil {
		return nil, Plan{}, subnet.Errorf(subnet.EINVALID, "encrypt the weights of subnet %d: %v", cr.NetUID, err)
	}
	return commit, plan, nil
}
