package pog

import (
	"math"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// Protocol constants. Changing any of them changes what a root commits to;
// bump ProtocolVersion with them.
const (
	// ProtocolVersion is sent in the worker's hello; a validator refuses
	// other versions. Version 2 added the round-trip pings, one commit
	// line per GPU as it finishes, and the residency round.
	ProtocolVersion = 2

	// ChunkValues is the number of fp32 values of C per Merkle leaf: 256
	// values (1 KiB) of one row. n is a multiple of it, so a chunk never
	// spans two rows.
	ChunkValues = 256
	// ChunkBytes is the size of a chunk.
	ChunkBytes = 4 * ChunkValues

	// MinN and MaxN bound the matrix size. MaxN keeps Σ k_a·k_b (|k| ≤ 2¹¹)
	// exact in int64 and float64 (n·2²² < 2⁵³), and 8·MaxN² bytes (512 GiB)
	// above any single GPU.
	MinN = ChunkValues
	MaxN = 1 << 18

	// MaxGPUs is the most GPUs one compute request may prove. Scores count
	// at most 8 GPUs too.
	MaxGPUs = 8
	// MaxReportedGPUs bounds the GPUs a hello may list.
	MaxReportedGPUs = 64

	// DefaultChallenges is the number of elements the validator checks per
	// GPU, each in a distinct row: a worker that computed a fraction q of
	// the rows passes with probability q^64 (q = 0.9: 1.2e-3; q = 0.5:
	// 5.4e-20 ≈ 2⁻⁶⁴).
	DefaultChallenges = 64
	// MaxChallenges bounds the elements per GPU of one challenge.
	MaxChallenges = 256

	// MemoryFill is the fraction of a GPU's memory the validator's choice
	// of n fills with the working set, WorkingSetBytes(n) = 6n²: B in
	// fp16 (2n²) and C in fp32 (4n²), A (2n²) living in the part of C not
	// yet written (the CUDA backend computes C in row blocks from the
	// top). C alone is then 0.92 × 4/6 = 61% of the memory: more than an
	// 80 GB card holds of an H200's test, which is what the residency
	// round proves (Policy.MinResidentFraction).
	MemoryFill = 0.92

	// PingCount is the number of round trips the validator times before
	// the compute request; the fastest is the session's fixed overhead.
	PingCount = 3

	// ResidencyPasses is the number of chained passes over C of the
	// residency round, ResidencyOpenings the chunks the validator opens
	// per pass, ResidencySums the int32 sums per chunk of each pass and
	// ChunksPerOutputLeaf the chunks whose sums make one 1 KiB leaf of a
	// pass's output tree. See residency.go.
	ResidencyPasses     = 8
	ResidencyOpenings   = 8
	ResidencySums       = 4
	ChunksPerOutputLeaf = ChunkBytes / (4 * ResidencySums)

	// DefaultSimTimeScale is the devnet speed factor: a simulated GPU takes
	// this fraction of the time its model would need at the nominal n.
	DefaultSimTimeScale = 0.05
	// SimN is the n a simulated GPU really computes (on the CPU).
	SimN = ChunkValues
)

// Scheduling defaults of the Python original, for the validator's sweep: a
// miner that fails is retried up to PoGRetryLimit times, PoGRetryInterval
// apart; each sweep starts after a random delay of up to MaxRandomDelay; at
// most MaxWorkers miners are tested at once (the original caps that further
// at 4×(CPU cores + 4)).
const (
	PoGRetryLimit    = 30                // compute/__init__.py pog_retry_limit
	PoGRetryInterval = 80 * time.Second  // compute/__init__.py pog_retry_interval
	MaxRandomDelay   = 900 * time.Second // config.yaml merkle_proof.max_random_delay
	MaxWorkers       = 64                // config.yaml merkle_proof.max_workers
)

// HonestErrorRMS is the largest rms error of C's elements that fp32
// accumulation of fp16-exact products produces at n on any tensor core
// of the table: the block-8 round-toward-zero model of errmodel_test.go
// (Ampere), 0.017 at n = 65,536, growing as n^1.5, with a floor of four
// fp32 ulps of C's spread for small n. VerifyGPU refuses a GPU whose 64
// errors have an rms above NumericsFactor times it.
func HonestErrorRMS(n int) float64 {
	model := 0.017 * math.Pow(float64(n)/65536, 1.5)
	floor := 4 * math.Sqrt(float64(n)) / 3 * math.Ldexp(1, -24)
	return max(model, floor)
}

// NumericsFactor: an honest GPU's 64 errors have an rms below
// HonestErrorRMS (their mean square follows σ²·χ²₆₄/64, which exceeds
// 4σ² with probability below 10⁻³⁰); fp16 accumulation flushed every 32
// products errs ~8× more at n = 65,536, one level of Strassen with fp16
// block sums ~5×.
const NumericsFactor = 2

// Tolerance is the largest |proven − exact| accepted for an element of C at
// size n: the spread of C (σ = √n/3) divided by 512, so 0.0104 at n = 256,
// 0.167 at n = 65,536, 0.198 at n = 92,160. A guess lands within it with
// probability ≈ 2/(512·√(2π)) ≈ 1.6e-3 per element at any n.
//
// Honest error: fp32 accumulation to nearest errs by ~4e-4 rms at
// n = 65,536; tensor cores accumulate blocks of 8 (Ampere) or 16 (Hopper)
// products with truncation, which the error models in errmodel_test.go
// put at 0.017 and 0.0086 rms there, growing as n^1.5: the tolerance is
// ≥ 6.9σ of the block-8 model up to n = 92,160 (80 GB), ≥ 10σ of the
// block-16 model up to n = 122,880 (H200). Shortcuts err as √n and fail
// it: one GEMM on bf16-rounded inputs (σ ≈ 0.16 at 65,536) keeps ~70% of
// elements within, so all 64 with p ≈ 1e-10; int8 inputs (σ ≈ 0.48) and
// fp8 inputs (σ ≈ 2.9) far less; C rounded to bf16 keeps ~79% (p ≈ 3e-7).
// C rounded to fp16 passes: it saves no multiplication, only a quarter of
// the working set.
func Tolerance(n int) float64 {
	return math.Sqrt(float64(n)) / 1536
}

// ChooseN returns the matrix size for a GPU: the largest multiple of 1024
// (of 256 below 8192) with 6n² ≤ MemoryFill × memory, within [MinN, MaxN].
// The memory is the claimed model's table memory when the model is known,
// lowered to reportedMemory when that is smaller and not 0; reportedMemory
// alone for an unknown model (pass nil). A GPU is credited only as a model
// whose memory the proven resident C fills at least by
// Policy.MinResidentFraction, so a worker gains nothing by reporting less
// memory.
func ChooseN(model *market.GPUModel, reportedMemory uint64) int {
	mem := reportedMemory
	if model != nil && (mem == 0 || model.MemoryBytes < mem) {
		mem = model.MemoryBytes
	}
	return nForMemory(float64(mem) * MemoryFill)
}

// nForMemory is the largest aligned n with 6n² ≤ bytes, clamped.
func nForMemory(bytes float64) int {
	raw := math.Sqrt(bytes / 6)
	align := 1024.0
	if raw < 8192 {
		align = ChunkValues
	}
	n := int(math.Floor(raw/align) * align)
	return min(max(n, MinN), MaxN)
}

// WorkingSetBytes is the device memory of one GPU's computation at n:
// B in fp16 and C in fp32, A inside C's free part (see MemoryFill).
func WorkingSetBytes(n int) uint64 { return 6 * uint64(n) * uint64(n) }

// ResidentBytes is what the residency round proves held in device memory
// at n: C in fp32.
func ResidentBytes(n int) uint64 { return 4 * uint64(n) * uint64(n) }

// Flops is the work of one multiplication at n: 2n³.
func Flops(n int) float64 { return 2 * float64(n) * float64(n) * float64(n) }

// validN reports whether n is a legal matrix size.
func validN(n int) bool { return n >= MinN && n <= MaxN && n%ChunkValues == 0 }

// Required returns how many of g tested GPUs must pass, the original's rule:
// all of up to 3, 3 of 4, ⌈75%⌉ of more than 4.
func Required(g int) int {
	switch {
	case g <= 3:
		return g
	case g == 4:
		return 3
	default:
		return (3*g + 3) / 4
	}
}
