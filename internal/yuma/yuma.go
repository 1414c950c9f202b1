// Package yuma computes one Yuma consensus epoch of a subnet the way
// subtensor's epoch does (pallets/subtensor/src/epoch/run_epoch.rs,
// epoch_mechanism, classic bonds, Yuma3 and liquid alpha off) in float64:
// activity and validator permits, stake-weighted median consensus with
// clipping at κ, ranks and incentive, bonds EMA, dividends, and each uid's
// share of the epoch's emission. It does no I/O; the embedded chain calls
// Epoch once per tempo and feeds Output.Bonds and Output.ValidatorPermit back
// into the next epoch's Input.
package yuma

// Params are the subnet hyperparameters the epoch uses.
type Params struct {
	// Kappa is the stake majority for consensus, in [0, 1] (subtensor:
	// 32767/65535).
	Kappa float64
	// BondsMovingAverage is the EMA weight of old bonds, in [0, 1]
	// (subtensor: 900000/1e6 = 0.9, so new bonds enter with alpha 0.1).
	BondsMovingAverage float64
	// BondsPenalty interpolates bonds weights between W (0) and clipped W̄
	// (1, subtensor's default 65535), in [0, 1].
	BondsPenalty float64
	// MaxAllowedValidators is k for the top-k-by-stake validator permits.
	MaxAllowedValidators int
	// ActivityCutoff is the number of blocks after the last weights update
	// during which a uid counts as active.
	ActivityCutoff uint64
	// StakeThreshold is the least stake (in Input.Stake's unit) a uid needs
	// to count at all; smaller stakes count as zero, except the owner's.
	// Zero disables the filter.
	StakeThreshold float64
}

// DefaultParams returns subtensor's defaults (max validators 64, as the
// embedded chain uses for small subnets).
func DefaultParams() Params {
	return Params{
		Kappa:                32767.0 / 65535.0,
		BondsMovingAverage:   0.9,
		BondsPenalty:         1,
		MaxAllowedValidators: 64,
		ActivityCutoff:       5000,
	}
}

// Weight is one entry of a weights row as the chain stores it (u16,
// max-upscaled; only the proportions within a row matter).
type Weight struct {
	UID   int
	Value uint16
}

// Input is the subnet state at the epoch block. Stake, LastUpdate and
// RegisteredAt have the same length N (the number of uids); ValidatorPermit
// is nil or of length N; Weights and Bonds have at most N rows of at most N
// entries (missing rows and entries count as zero, so the state of a subnet
// that has since grown can be passed as is).
//
// When a uid is re-registered the caller clears what belonged to the old
// neuron, as subtensor's replace_neuron does: its weights row, its bonds row
// and its validator permit, and sets its LastUpdate and RegisteredAt to the
// registration block.
type Input struct {
	// Block is the current block.
	Block uint64
	// LastEpochBlock is the block at which the previous epoch ran. Uids
	// registered after it (RegisteredAt > LastEpochBlock) count as recently
	// registered: the old bonds to them are dropped. (At a subnet's first
	// epoch subtensor uses Block − tempo instead; Bonds is empty then, so the
	// value does not matter.)
	LastEpochBlock uint64
	// Stake is each uid's stake, in any unit (only proportions matter);
	// finite and non-negative.
	Stake []float64
	// LastUpdate is the block of each uid's last set_weights (or of its
	// registration).
	LastUpdate []uint64
	// RegisteredAt is the block at which each uid was (re)registered.
	RegisteredAt []uint64
	// Weights[i] is the row set by uid i; entries to uids outside [0, N) are
	// ignored, and of duplicate uids in a row the last counts.
	Weights [][]Weight
	// Bonds is the previous epoch's Output.Bonds (nil at the first epoch).
	// Entries are in [0, 1]; each column's scale is irrelevant, so subtensor's
	// stored form (column max-upscaled u16 / 65535) works too.
	Bonds [][]float64
	// ValidatorPermit is the previous epoch's Output.ValidatorPermit. As in
	// subtensor, this epoch's weights and active stake use the previous
	// permits, while the top-k permits computed now are returned for the next
	// epoch. Nil uses this epoch's permits at once (subtensor would count no
	// validator at its first epoch).
	ValidatorPermit []bool
	// OwnerUID is the subnet owner's uid, whose self-weight is kept and who
	// always holds a validator permit and whose stake is exempt from
	// StakeThreshold; -1 (or any value outside [0, N)) when the owner has no
	// uid.
	OwnerUID int
}

// Output is the epoch's result per uid. Every slice has length N.
type Output struct {
	Active []bool
	// ValidatorPermit holds the top-k-by-stake permits (plus the owner's)
	// for the next epoch; pass it back as Input.ValidatorPermit.
	ValidatorPermit []bool
	// StakeWeight is the normalised stake after the threshold filter.
	StakeWeight []float64
	// Consensus, Rank, Trust, Incentive, Dividends and ValidatorTrust are
	// fractions in [0, 1]. Rank equals Incentive (the normalised ranks, as
	// subtensor stored them); Trust is rank after clipping over rank before
	// (subtensor no longer stores it).
	Consensus      []float64
	Rank           []float64
	Trust          []float64
	Incentive      []float64
	Dividends      []float64
	ValidatorTrust []float64
	// Bonds are the new bonds (rows: validators, columns: uids), column
	// normalised; rows of uids without a new validator permit are nil (the
	// chain clears them). Pass them back as Input.Bonds next epoch.
	Bonds [][]float64
	// ServerEmission and ValidatorEmission are each uid's share of the
	// epoch's emission as a miner (incentive) and as a validator
	// (dividends). Emission is their sum; it sums to 1, or to 0 when there
	// is no stake at all. With no incentive and no dividends the validator
	// share follows active stake, or stake when no stake is active.
	ServerEmission    []float64
	ValidatorEmission []float64
	Emission          []float64
}
