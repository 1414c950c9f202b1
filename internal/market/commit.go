package market

import (
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
)

// Statuses of a weights commit.
const (
	CommitPending  = "pending"  // committed, not yet seen revealed
	CommitRevealed = "revealed" // the chain applied it in its reveal epoch
	CommitMissed   = "missed"   // its reveal epoch passed without it
)

// WeightCommit is a timelocked weights commit a validator made, tracked
// until the chain reveals it.
type WeightCommit struct {
	ID     int64
	NetUID subnet.NetUID
	// Block is the best block when it was committed.
	Block uint64
	At    time.Time
	// CommitEpoch and RevealEpoch are the chain's epochs; RevealRound the
	// beacon round the weights are encrypted to.
	CommitEpoch, RevealEpoch, RevealRound uint64
	UIDs                                  []subnet.UID
	Weights                               []uint16
	Status                                string
}
