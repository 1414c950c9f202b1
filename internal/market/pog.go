package market

import (
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
)

// PoGOutcome classifies one Proof-of-GPU test of a miner.
type PoGOutcome string

// Outcomes of a test.
const (
	// PoGPass: the worker proved Model × Count.
	PoGPass PoGOutcome = "pass"
	// PoGFail: the validator logged in, but the proofs or the timing proved
	// no model.
	PoGFail PoGOutcome = "fail"
	// PoGUnreachable: no test lease or no login.
	PoGUnreachable PoGOutcome = "unreachable"
)

// PoGResult is one finished Proof-of-GPU test of a miner, as a validator
// records it.
type PoGResult struct {
	Hotkey  string
	UID     subnet.UID
	Block   uint64
	At      time.Time
	Outcome PoGOutcome
	// Model and Count are what was proven (pass only).
	Model string
	Count int
	// Claimed is the first GPU's reported name; N the matrix size; Elapsed
	// the validator's wall-clock of the computation.
	Claimed  string
	N        int
	Elapsed  time.Duration
	Attempts int
	Reason   string
	// HostKey is the SHA-256 fingerprint of the lease's SSH host key.
	HostKey string
	// DeallocError is why the test lease could not be deallocated ("" when
	// it was).
	DeallocError string
}

// ScoreEntry is one miner's score and u16 weight in a weights submission.
type ScoreEntry struct {
	UID    subnet.UID
	Hotkey string
	Score  float64
	Weight uint16
}
