// Package subnet holds the chain domain shared by every role: subnets and
// their neurons (uid, hotkey, coldkey, stake, axon, Yuma outputs), balances in
// rao, weights as the chain stores them, and the role interfaces through which
// services read and write a chain. It does no I/O; chain/local and
// chain/subtensor implement the interfaces.
package subnet

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// NetUID identifies a subnet. 0 is Bittensor's root network; the embedded
// chain assigns user subnets from 1.
type NetUID uint16

// UID is a neuron's slot in a subnet.
type UID uint16

// Balance is an amount in rao (1 TAO = 1e9 rao), as the chain stores it.
type Balance uint64

// RaoPerTAO is the number of rao in one TAO.
const RaoPerTAO = 1_000_000_000

// TAO converts a TAO amount to rao, rounding to the nearest rao.
func TAO(tao float64) Balance {
	if tao <= 0 || math.IsNaN(tao) {
		return 0
	}
	return Balance(math.Round(tao * RaoPerTAO))
}

// TAO returns the balance in TAO.
func (b Balance) TAO() float64 { return float64(b) / RaoPerTAO }

// String formats the balance in TAO with up to nine decimals.
func (b Balance) String() string {
	whole, frac := uint64(b)/RaoPerTAO, uint64(b)%RaoPerTAO
	if frac == 0 {
		return strconv.FormatUint(whole, 10) + " τ"
	}
	s := strings.TrimRight(fmt.Sprintf("%09d", frac), "0")
	return strconv.FormatUint(whole, 10) + "." + s + " τ"
}

// ParseTAO parses a decimal TAO amount ("1", "0.5", "1024.000000001") exactly
// into rao. Negative, non-numeric and sub-rao amounts are errors.
func ParseTAO(s string) (Balance, error) {
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "τ"))
	if s == "" {
		return 0, errors.New("empty amount")
	}
	whole, frac, hasFrac := strings.Cut(s, ".")
	if whole == "" {
		whole = "0"
	}
	if !isDigits(whole) || (hasFrac && (frac == "" || !isDigits(frac))) {
		return 0, fmt.Errorf("invalid TAO amount %q", s)
	}
	if len(frac) > 9 {
		return 0, fmt.Errorf("invalid TAO amount %q: more than 9 decimals (1 rao = 1e-9 TAO)", s)
	}
	w, err := strconv.ParseUint(whole, 10, 64)
	if err != nil || w > math.MaxUint64/RaoPerTAO-1 {
		return 0, fmt.Errorf("invalid TAO amount %q: too large", s)
	}
	var f uint64
	if frac != "" {
		f, _ = strconv.ParseUint(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
	}
	return Balance(w*RaoPerTAO + f), nil
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// AxonInfo is what a neuron serves on chain with serve_axon.
type AxonInfo struct {
	Block    uint64 `json:"block"`
	Version  uint32 `json:"version"`
	IP       string `json:"ip"`
	Port     uint16 `json:"port"`
	IPType   uint8  `json:"ip_type"`
	Protocol uint8  `json:"protocol"`
}

// PrometheusInfo is a neuron's published metrics endpoint, Bittensor's
// prometheus_info: validators serve it with their version, and SN27's
// miners read validators' versions from it.
type PrometheusInfo struct {
	Block   uint64 `json:"block"`
	Version uint32 `json:"version"`
	IP      string `json:"ip"`
	Port    uint16 `json:"port"`
	IPType  uint8  `json:"ip_type"`
}

// Served reports whether the axon has a reachable address (Bittensor's
// "is_serving": ip is set and not 0.0.0.0).
func (a AxonInfo) Served() bool {
	return a.IP != "" && a.IP != "0.0.0.0" && a.IP != "::" && a.Port != 0
}

// Addr returns host:port.
func (a AxonInfo) Addr() string {
	if strings.Contains(a.IP, ":") {
		return "[" + a.IP + "]:" + strconv.Itoa(int(a.Port))
	}
	return a.IP + ":" + strconv.Itoa(int(a.Port))
}

// Neuron is one registered hotkey of a subnet with the outputs of the last
// epoch. Fractions (trust, consensus, incentive, dividends) are in [0, 1].
type Neuron struct {
	UID             UID      `json:"uid"`
	Hotkey          string   `json:"hotkey"`
	Coldkey         string   `json:"coldkey"`
	Active          bool     `json:"active"`
	Stake           Balance  `json:"stake"`
	Axon            AxonInfo `json:"axon"`
	ValidatorPermit bool     `json:"validator_permit"`
	Rank            float64  `json:"rank"`
	Trust           float64  `json:"trust"`
	Consensus       float64  `json:"consensus"`
	Incentive       float64  `json:"incentive"`
	Dividends       float64  `json:"dividends"`
	ValidatorTrust  float64  `json:"validator_trust"`
	Emission        Balance  `json:"emission"`
	LastUpdate      uint64   `json:"last_update"`
	RegisteredAt    uint64   `json:"registered_at"`

	// Prometheus is the metrics endpoint the neuron published with
	// serve_prometheus (zero when it never did).
	Prometheus PrometheusInfo `json:"prometheus"`
}

// Metagraph is the state of a subnet's neurons at a block.
type Metagraph struct {
	NetUID  NetUID   `json:"netuid"`
	Block   uint64   `json:"block"`
	Neurons []Neuron `json:"neurons"`
}

// ByHotkey finds the neuron registered with hotkey.
func (m *Metagraph) ByHotkey(hotkey string) (Neuron, bool) {
	for _, n := range m.Neurons {
		if n.Hotkey == hotkey {
			return n, true
		}
	}
	return Neuron{}, false
}

// ByUID finds the neuron in slot uid.
func (m *Metagraph) ByUID(uid UID) (Neuron, bool) {
	for _, n := range m.Neurons {
		if n.UID == uid {
			return n, true
		}
	}
	return Neuron{}, false
}

// Hyperparameters are the subnet parameters the miner and validator use.
type Hyperparameters struct {
	Tempo                uint16  `json:"tempo"`
	WeightsRateLimit     uint64  `json:"weights_rate_limit"`
	WeightsVersionKey    uint64  `json:"weights_version"`
	ImmunityPeriod       uint64  `json:"immunity_period"`
	MinAllowedWeights    uint16  `json:"min_allowed_weights"`
	MaxWeightLimit       uint16  `json:"max_weights_limit"`
	MaxAllowedUIDs       uint16  `json:"max_allowed_uids"`
	MaxAllowedValidators uint16  `json:"max_allowed_validators"`
	ActivityCutoff       uint64  `json:"activity_cutoff"`
	Kappa                uint16  `json:"kappa"`
	BondsMovingAverage   uint64  `json:"bonds_moving_avg"`
	ServingRateLimit     uint64  `json:"serving_rate_limit"`
	Burn                 Balance `json:"burn"`
	CommitRevealEnabled  bool    `json:"commit_reveal_weights_enabled"`
	// RevealPeriodEpochs is the number of epochs after which the chain
	// reveals a timelocked weights commit (commit-reveal on).
	RevealPeriodEpochs  uint64 `json:"commit_reveal_period"`
	RegistrationAllowed bool   `json:"registration_allowed"`
}
