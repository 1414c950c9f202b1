package market

import (
	"sort"
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
	// Code classifies the outcome (PoGOK for a full pass); Reason says it
	// in words.
	Code   PoGCode
	Reason string
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

// PoGCode is a stable short code for why a Proof-of-GPU test failed or
// credited less than was claimed. Codes are fit for metric labels and
// never change meaning; Explain gives each its consequence and remedy.
type PoGCode string

// Codes of a test's outcome.
const (
	// PoGOK: every tested GPU was credited as claimed.
	PoGOK PoGCode = "ok"
	// PoGDowngraded: the measured throughput proved a lower model than
	// the one claimed.
	PoGDowngraded PoGCode = "downgraded"
	// PoGTooSlow: a GPU's measured throughput reached no model's
	// threshold (or no commitment came within the compute limit).
	PoGTooSlow PoGCode = "too_slow"
	// PoGNotConcurrent: some GPUs of the lease met the rate and others
	// did not: their results were not produced concurrently.
	PoGNotConcurrent PoGCode = "not_concurrent"
	// PoGNotResident: the residency round was answered too late or wrong,
	// so C was not held in the GPU's memory.
	PoGNotResident PoGCode = "not_resident"
	// PoGNumerics: proven values were outside the tolerance or their
	// errors did not fit fp32 accumulation.
	PoGNumerics PoGCode = "numerics"
	// PoGBadProof: a Merkle path did not lead to the committed root, or a
	// proof was missing.
	PoGBadProof PoGCode = "bad_proof"
	// PoGWrongSize: a commitment for another matrix size than requested.
	PoGWrongSize PoGCode = "wrong_size"
	// PoGWorkerError: the worker reported an error or could not start.
	PoGWorkerError PoGCode = "worker_error"
	// PoGProtocol: the worker broke the session protocol or went silent.
	PoGProtocol PoGCode = "protocol"
	// PoGNoGPU: the worker reported no GPU.
	PoGNoGPU PoGCode = "no_gpu"
	// PoGSimulated: a simulated GPU outside devnet.
	PoGSimulated PoGCode = "simulated"
	// PoGUnknownModel: no model of the table matches what was proven.
	PoGUnknownModel PoGCode = "unknown_model"
	// PoGUnrecognized: the miner's specs name no GPU of the table; not
	// tested.
	PoGUnrecognized PoGCode = "unrecognized"
	// PoGCodeUnreachable: no test lease or no SSH login.
	PoGCodeUnreachable PoGCode = "unreachable"
)

// PoGExplanation says what a code costs a miner and what it can do.
type PoGExplanation struct {
	Consequence string `json:"consequence"`
	Remedy      string `json:"remedy"`
}

var pogExplanations = map[PoGCode]PoGExplanation{
	PoGOK: {"full credit for every GPU tested", "nothing"},
	PoGDowngraded: {"credited as the model the measured throughput proves, which scores lower than the claim",
		"check the GPU runs at full clocks and power (nvidia-smi -q -d PERFORMANCE), that nothing else uses it, and that the name the driver reports is the card's own"},
	PoGTooSlow: {"the GPUs are not credited: score 0 until a test passes",
		"run `nicompute-pog bench --n N` on the card and compare its TFLOPS with the table; look for throttling (power, temperature), shared use, or a card slower than its name"},
	PoGNotConcurrent: {"only the GPUs that proved their throughput concurrently are credited",
		"give the lease every GPU the specs declare, each a separate device; a slow or shared device lowers the count"},
	PoGNotResident: {"memory is not proven: the GPUs are not credited",
		"the test lease must own the whole GPU: no other process may use its memory, and the card must hold C in its own memory (not host memory)"},
	PoGNumerics: {"the proof failed: score 0, and the sweep does not retry",
		"run the validator's own worker unmodified; fp16 accumulation, reduced-precision inputs or fast-multiplication shortcuts are refused"},
	PoGBadProof: {"the proof failed: score 0, and the sweep does not retry",
		"run the validator's own worker unmodified and keep the lease's memory free for it until the test ends"},
	PoGWrongSize: {"the proof failed: score 0, and the sweep does not retry", "run the validator's own worker unmodified"},
	PoGWorkerError: {"not credited in this test; retried within the sweep",
		"read the worker's error; check the CUDA driver and that the lease image can run the worker (`nicompute-pog info` in a test lease)"},
	PoGProtocol: {"not credited in this test; a violation after the challenge fails the sweep",
		"run the validator's own worker unmodified and keep the SSH session open until the test ends"},
	PoGNoGPU:        {"score 0", "make the GPUs visible to lease containers (NVIDIA container toolkit)"},
	PoGSimulated:    {"score 0: simulated GPUs count only in devnet", "run real GPUs outside devnet"},
	PoGUnknownModel: {"score 0", "the GPU is not in the validator's GPU table; ask the validator operator to add it"},
	PoGUnrecognized: {"not tested; score 0", "report a GPU of the table in Specs, or ask the validator to test unrecognized GPUs"},
	PoGCodeUnreachable: {"keeps its last score until the score window is all unreachable",
		"check the axon answers Allocate, the SSH port is reachable from the internet and the miner has a free GPU for test leases"},
}

// Explain returns a code's consequence and remedy; an unknown code gets
// an empty explanation.
func (c PoGCode) Explain() PoGExplanation { return pogExplanations[c] }

// PoGCodes returns every code, for metric label sets and documentation.
func PoGCodes() []PoGCode {
	out := make([]PoGCode, 0, len(pogExplanations))
	for c := range pogExplanations {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
