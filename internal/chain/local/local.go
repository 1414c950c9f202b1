// Package local is the embedded development chain: a single node that keeps
// Bittensor's subnet rules — balances and fees, burned registration with an
// immunity period and pruning, stake, serve_axon, rate-limited set_weights,
// commit-reveal weights (v4) timelocked to the chain's own beacon and
// revealed by the chain, and a Yuma consensus epoch every tempo with
// emission — in one SQLite file,
// and serves them to other processes as signed JSON calls over loopback HTTP.
//
// It is a development chain, not a blockchain: there is one node, no
// consensus between nodes and no block history, only the current state and
// the number of the best block. Node is the server; Client, from Dial,
// implements subnet.Chain for the miner and validator plus a few calls that
// exist only here (faucet, subnet creation, transfers).
//
// Calls that change state are extrinsics: the client signs a canonical
// encoding of (genesis hash, call, arguments, signer, nonce, era block) with
// the signing account's sr25519 key, and the node checks the signature, that
// the nonce is the account's next one and that the era is recent before it
// applies the call in one SQLite transaction together with all its checks.
// A call the rules refuse changes nothing but the signer's nonce, which it
// uses up as on Substrate so that it cannot be replayed later. Extrinsics take effect on receipt, in
// the state of the best block, and are stamped with its number; sealing a
// block only advances the number and runs the epochs that are due.
package local

import (
	"github.com/prometheus/client_golang/prometheus"

	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
)

// Genesis holds the parameters a new chain starts with. Subnet parameters
// are copied into each subnet when it is created; the owner may change them
// later with SetHyperparameters. They are stored in the chain file when it
// is created; reopening an existing file keeps the stored values.
type Genesis struct {
	// Burn is the TAO recycled by a burned registration (Bittensor adjusts
	// it towards a registration target; this chain keeps it fixed).
	Burn subnet.Balance `json:"burn"`
	// Fee is charged on every coldkey-paid call (registration, stake,
	// transfer, subnet creation) and destroyed; hotkey calls (serve_axon,
	// set_weights) are free, as on Bittensor.
	Fee subnet.Balance `json:"fee"`
	// ImmunityPeriod is the number of blocks after registration during which
	// a uid cannot be pruned.
	ImmunityPeriod uint64 `json:"immunity_period"`
	// MaxAllowedUIDs is the subnet size; registering on a full subnet prunes.
	MaxAllowedUIDs uint16 `json:"max_allowed_uids"`
	// Tempo is the number of blocks between epochs of a subnet.
	Tempo uint16 `json:"tempo"`
	// WeightsRateLimit is the number of blocks a hotkey waits between two
	// set_weights on a subnet.
	WeightsRateLimit uint64 `json:"weights_rate_limit"`
	// MinAllowedWeights is the minimum number of entries of a weights row
	// (capped at the subnet's size; a row holding only the setter's own uid
	// is always allowed).
	MinAllowedWeights uint16 `json:"min_allowed_weights"`
	// MaxAllowedValidators is k for the top-k-by-stake validator permits.
	MaxAllowedValidators uint16 `json:"max_allowed_validators"`
	// ActivityCutoff is the number of blocks after its last update during
	// which a uid counts as active in the epoch.
	ActivityCutoff uint64 `json:"activity_cutoff"`
	// ServingRateLimit is the number of blocks between two serve_axon of a
	// hotkey on a subnet (the first is always allowed).
	ServingRateLimit uint64 `json:"serving_rate_limit"`
	// MaxRegistrationsPerBlock limits registrations per subnet and block.
	MaxRegistrationsPerBlock uint16 `json:"max_registrations_per_block"`
	// Kappa is the consensus majority in 1/65535.
	Kappa uint16 `json:"kappa"`
	// BondsMovingAverage is the weight of old bonds in 1/1,000,000.
	BondsMovingAverage uint64 `json:"bonds_moving_avg"`
	// EmissionPerBlock is minted for each subnet every block and paid out
	// at its epochs.
	EmissionPerBlock subnet.Balance `json:"emission_per_block"`
	// OwnerCut is the subnet owner's share of each epoch's emission in
	// 1/65535 (Bittensor's 11796 ≈ 18%), paid to the owner's coldkey.
	OwnerCut uint16 `json:"owner_cut"`
	// FaucetLimit is the most the faucet credits in one call.
	FaucetLimit subnet.Balance `json:"faucet_limit"`
	// FaucetCap is the most the faucet mints over the chain's life
	// (0: DefaultFaucetCap). It keeps the total issuance far below the
	// range of an amount, so that no caller can fill it and make the
	// epochs' emission overflow.
	FaucetCap subnet.Balance `json:"faucet_cap,omitempty"`
}

// DefaultFaucetCap is the faucet's lifetime minting cap when the genesis
// sets none: one billion TAO, about a ninth of the range of an amount.
const DefaultFaucetCap = 1_000_000_000 * subnet.RaoPerTAO

// faucetCap returns g's effective faucet cap.
func (g Genesis) faucetCap() subnet.Balance {
	if g.FaucetCap == 0 {
		return DefaultFaucetCap
	}
	return g.FaucetCap
}

// DefaultGenesis returns the parameters of a new chain: Bittensor's
// defaults where they exist, a fixed burn of 1 TAO, a fee of 0.0001 TAO,
// 64 validator permits, at least 1 weight per row and a faucet of at most
// one million TAO per call and DefaultFaucetCap in all.
func DefaultGenesis() Genesis {
	return Genesis{
		Burn:                     subnet.RaoPerTAO,
		Fee:                      100_000,
		ImmunityPeriod:           4096,
		MaxAllowedUIDs:           256,
		Tempo:                    360,
		WeightsRateLimit:         100,
		MinAllowedWeights:        1,
		MaxAllowedValidators:     64,
		ActivityCutoff:           5000,
		ServingRateLimit:         50,
		MaxRegistrationsPerBlock: 1,
		Kappa:                    32767,
		BondsMovingAverage:       900_000,
		EmissionPerBlock:         subnet.RaoPerTAO,
		OwnerCut:                 11796,
		FaucetLimit:              1_000_000 * subnet.RaoPerTAO,
		FaucetCap:                DefaultFaucetCap,
	}
}

// maxAmount bounds every balance, stake and the total issuance: SQLite
// stores signed 64-bit integers (about 9.2 billion TAO).
const maxAmount = math.MaxInt64

func (g Genesis) validate() error {
	var errs []error
	if g.Tempo == 0 {
		errs = append(errs, errors.New("tempo must be at least 1"))
	}
	if g.MaxAllowedUIDs == 0 {
		errs = append(errs, errors.New("max allowed uids must be at least 1"))
	}
	if g.MaxRegistrationsPerBlock == 0 {
		errs = append(errs, errors.New("max registrations per block must be at least 1"))
	}
	if g.BondsMovingAverage > 1_000_000 {
		errs = append(errs, errors.New("bonds moving average must be at most 1000000"))
	}
	for _, v := range []subnet.Balance{g.Burn, g.Fee, g.EmissionPerBlock, g.FaucetLimit, g.FaucetCap} {
		if v > maxAmount/4 {
			errs = append(errs, fmt.Errorf("amount %s is too large", v))
		}
	}
	return errors.Join(errs...)
}

// Config configures a Node.
type Config struct {
	// DataDir holds the chain file (chain.db). Required.
	DataDir string
	// Listen is the TCP address of the HTTP endpoint; "" means
	// 127.0.0.1:0 (a free loopback port, see Node.Addr).
	Listen string
	// BlockTime is the interval between blocks; 0 seals blocks only when
	// Seal or Advance is called.
	BlockTime time.Duration
	// Genesis is used when DataDir holds no chain yet; nil means
	// DefaultGenesis().
	Genesis *Genesis
	// BeaconPeriod is the period of the chain's beacon when the chain is
	// created; 0 means BlockTime, or DefaultBeaconPeriod with manual blocks.
	BeaconPeriod time.Duration
	// Now is the wall clock the beacon publishes rounds by [time.Now].
	Now func() time.Time
	// Log receives the node's logs; nil discards them.
	Log *slog.Logger
	// Metrics, when set, receives the nicompute_chain_* series.
	Metrics prometheus.Registerer
}
