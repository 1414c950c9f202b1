package weights

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
)

// The reveal round of a commit is computed as Bittensor's SDK does
// (bittensor-drand's generate_commit and, for runtimes that count epochs,
// generate_commit_v2 with predict_first_reveal_block): find the first
// block of the epoch in which the chain will reveal the commit, add
// SecurityBlockOffset blocks so the beacon pulse is certainly stored by
// then, convert the blocks left to seconds at the chain's block time and
// take the beacon round published at that time, rounding down:
//
//	round = floor((now + blocks·block_time − genesis) / period), at least 1.

// SecurityBlockOffset is the SDK's SECURITY_BLOCK_OFFSET.
const SecurityBlockOffset = 3

// inclusionOffset is the SDK's COMMIT_INCLUSION_BLOCK_OFFSET: the commit
// lands in the block after the head it was computed at.
const inclusionOffset = 1

// maxTempo is subtensor's MAX_TEMPO: a subnet whose last step is further
// back than this runs its epoch at once.
const maxTempo = 50_400

// Plan is where a commit made now will be revealed.
type Plan struct {
	// CommitEpoch is the epoch the chain files the commit under;
	// RevealEpoch = CommitEpoch + the reveal period.
	CommitEpoch, RevealEpoch uint64
	// RevealBlock is the predicted first block of RevealEpoch.
	RevealBlock uint64
	// Round is the beacon round the weights are encrypted to.
	Round uint64
}

// PlanReveal computes the reveal epoch, block and round of a commit made
// at cr.Block and wall-clock time now.
func PlanReveal(cr subnet.CommitReveal, now time.Time) (Plan, error) {
	if cr.Tempo == 0 {
		return Plan{}, subnet.Errorf(subnet.EINVALID, "subnet %d has tempo 0 and runs no epochs: a commit would never be revealed", cr.NetUID)
	}
	if cr.Beacon.Period <= 0 {
		return Plan{}, subnet.Errorf(subnet.EINVALID, "the chain's beacon has no period")
	}
	var p Plan
	var err error
	if cr.Schedule != nil {
		p, err = planCounted(cr)
	} else {
		p = planByBlock(cr)
	}
	if err != nil {
		return Plan{}, err
	}
	target := p.RevealBlock + SecurityBlockOffset
	blocks := uint64(0)
	if target > cr.Block {
		blocks = target - cr.Block
	}
	secs := float64(now.UnixNano())/1e9 + float64(blocks)*cr.BlockTime.Seconds()
	genesis := float64(cr.Beacon.Genesis.UnixNano()) / 1e9
	r := math.Floor((secs - genesis) / cr.Beacon.Period.Seconds())
	switch {
	case r < 1:
		p.Round = 1
	case r >= math.MaxInt64:
		return Plan{}, errors.New("reveal round out of range")
	default:
		p.Round = uint64(r)
	}
	return p, nil
}

// planByBlock is the SDK's original arithmetic, for runtimes whose epochs
// fall every tempo+1 blocks, offset by netuid+1.
func planByBlock(cr subnet.CommitReveal) Plan {
	tp1 := uint64(cr.Tempo) + 1
	np1 := uint64(cr.NetUID) + 1
	cur := (cr.Block + np1) / tp1
	reveal := cur + cr.RevealPeriodEpochs
	first := reveal * tp1
	if first > np1 {
		first -= np1
	} else {
		first = 0
	}
	return Plan{CommitEpoch: cur, RevealEpoch: reveal, RevealBlock: first}
}

// CurrentEpoch is the epoch the chain is in at cr.Block.
func CurrentEpoch(cr subnet.CommitReveal) uint64 {
	if cr.Schedule != nil {
		return cr.Schedule.EpochIndex
	}
	return (cr.Block + uint64(cr.NetUID) + 1) / (uint64(cr.Tempo) + 1)
}

// schedule is the epoch state planCounted simulates.
type schedule struct {
	subnet.EpochSchedule
	tempo uint64
}

// due reports whether an epoch runs at block (subtensor's should_run_epoch).
func (s *schedule) due(block uint64) bool {
	if s.PendingEpochAt > 0 && block >= s.PendingEpochAt {
		return true
	}
	if s.BlocksSinceLastStep > maxTempo {
		return true
	}
	return block >= s.LastEpochBlock && block-s.LastEpochBlock >= s.tempo
}

// epochAt is the epoch a reveal (run before the block's epoch) sees.
func (s *schedule) epochAt(block uint64) uint64 {
	if s.due(block) {
		return s.EpochIndex + 1
	}
	return s.EpochIndex
}

// step applies one block's epoch bookkeeping (run_coinbase).
func (s *schedule) step(block uint64) {
	s.BlocksSinceLastStep++
	if s.due(block) {
		s.LastEpochBlock, s.PendingEpochAt = block, 0
		s.EpochIndex++
		s.BlocksSinceLastStep = 0
	}
}

// planCounted is predict_first_reveal_block: the commit lands in the next
// block and is filed under that block's epoch; the reveal runs at the first
// block whose epoch (before that block's own step) is the commit's plus the
// reveal period.
func planCounted(cr subnet.CommitReveal) (Plan, error) {
	s := schedule{EpochSchedule: *cr.Schedule, tempo: uint64(cr.Tempo)}
	x := cr.Block + inclusionOffset
	commit := s.epochAt(x)
	target := commit + cr.RevealPeriodEpochs
	limit := cr.RevealPeriodEpochs*maxTempo + maxTempo
	for b := x; b <= x+limit; b++ {
		if s.epochAt(b) == target {
			return Plan{CommitEpoch: commit, RevealEpoch: target, RevealBlock: b}, nil
		}
		s.step(b)
	}
	return Plan{}, fmt.Errorf("no reveal block within %d blocks of block %d", limit, x)
}
