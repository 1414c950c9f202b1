package local

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
)

// Call names of the extrinsics and who signs them.
const (
	callCreateSubnet = "create_subnet"             // coldkey: the subnet's owner
	callSetHyper     = "set_hyperparameters"       // coldkey: the subnet's owner
	callRegister     = "burned_register"           // coldkey: pays the burn, owns the hotkey
	callAddStake     = "add_stake"                 // coldkey: pays the stake
	callTransfer     = "transfer"                  // coldkey: pays
	callServeAxon    = "serve_axon"                // hotkey
	callSetWeights   = "set_weights"               // hotkey
	callCommit       = "commit_timelocked_weights" // hotkey
)

// Mortality is the number of blocks an extrinsic stays valid after the
// block it names as its era (Substrate's mortal era); older ones are refused.
const Mortality = 64

// signingDomain separates this chain's signatures from every other use of
// the same keys.
const signingDomain = "nicompute-local-extrinsic-v1"

// extrinsic is a signed call as it travels.
type extrinsic struct {
	Call      string          `json:"call"`
	Signer    string          `json:"signer"`
	Nonce     uint64          `json:"nonce"`
	Era       uint64          `json:"era"`
	Args      json.RawMessage `json:"args"`
	Signature string          `json:"signature"`
}

// signingPayload is the canonical byte string a signer signs: the domain,
// the genesis hash, then each field length-prefixed or fixed-size, with the
// arguments as the exact JSON bytes that travel.
func signingPayload(genesis []byte, call string, signerPub []byte, nonce, era uint64, args []byte) []byte {
	var b bytes.Buffer
	b.WriteString(signingDomain)
	b.WriteByte(0)
	b.Write(genesis)
	putBytes := func(p []byte) {
		_ = binary.Write(&b, binary.BigEndian, uint32(len(p)))
		b.Write(p)
	}
	putBytes([]byte(call))
	putBytes(signerPub)
	_ = binary.Write(&b, binary.BigEndian, nonce)
	_ = binary.Write(&b, binary.BigEndian, era)
	putBytes(args)
	return b.Bytes()
}

// sign builds the extrinsic of call with args signed by signer.
func sign(genesis []byte, signer subnet.Signer, call string, args any, nonce, era uint64) (*extrinsic, error) {
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("encode %s arguments: %w", call, err)
	}
	sig, err := signer.Sign(signingPayload(genesis, call, signer.PublicKey(), nonce, era, raw))
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", call, err)
	}
	return &extrinsic{Call: call, Signer: signer.SS58(), Nonce: nonce, Era: era, Args: raw, Signature: "0x" + hex.EncodeToString(sig)}, nil
}

// verify checks the signature of x for the chain with genesis hash genesis.
func (x *extrinsic) verify(genesis []byte) error {
	pub, err := keys.PublicKeyFromSS58(x.Signer)
	if err != nil {
		return subnet.Errorf(subnet.EINVALID, "signer: %v", err)
	}
	sig, err := hex.DecodeString(strings.TrimPrefix(x.Signature, "0x"))
	if err != nil || len(sig) != keys.SignatureLen {
		return subnet.Errorf(subnet.EUNAUTHORIZED, "malformed signature")
	}
	ok, err := keys.VerifyPublic(pub, signingPayload(genesis, x.Call, pub, x.Nonce, x.Era, x.Args), sig)
	if err != nil || !ok {
		return subnet.Errorf(subnet.EUNAUTHORIZED, "bad signature for %s by %s", x.Call, x.Signer)
	}
	return nil
}

// Arguments of each call.

type createSubnetArgs struct {
	Tempo        uint16 `json:"tempo"`                   // 0: the genesis tempo
	CommitReveal *bool  `json:"commit_reveal,omitempty"` // nil: on
}

type registerArgs struct {
	NetUID subnet.NetUID `json:"netuid"`
	Hotkey string        `json:"hotkey"`
}

type addStakeArgs struct {
	NetUID subnet.NetUID  `json:"netuid"`
	Hotkey string         `json:"hotkey"`
	Amount subnet.Balance `json:"amount"`
}

type transferArgs struct {
	Dest   string         `json:"dest"`
	Amount subnet.Balance `json:"amount"`
}

type serveAxonArgs struct {
	NetUID   subnet.NetUID `json:"netuid"`
	Version  uint32        `json:"version"`
	IP       string        `json:"ip"`
	Port     uint16        `json:"port"`
	IPType   uint8         `json:"ip_type"`
	Protocol uint8         `json:"protocol"`
}

type setWeightsArgs struct {
	NetUID     subnet.NetUID `json:"netuid"`
	UIDs       []subnet.UID  `json:"uids"`
	Weights    []uint16      `json:"weights"`
	VersionKey uint64        `json:"version_key"`
}

// HyperparameterUpdate lists the subnet parameters an owner changes; nil
// fields keep their value.
type HyperparameterUpdate struct {
	Tempo                      *uint16         `json:"tempo,omitempty"`
	Burn                       *subnet.Balance `json:"burn,omitempty"`
	ImmunityPeriod             *uint64         `json:"immunity_period,omitempty"`
	MaxAllowedUIDs             *uint16         `json:"max_allowed_uids,omitempty"`
	WeightsRateLimit           *uint64         `json:"weights_rate_limit,omitempty"`
	WeightsVersion             *uint64         `json:"weights_version,omitempty"`
	MinAllowedWeights          *uint16         `json:"min_allowed_weights,omitempty"`
	MaxAllowedValidators       *uint16         `json:"max_allowed_validators,omitempty"`
	ActivityCutoff             *uint64         `json:"activity_cutoff,omitempty"`
	ServingRateLimit           *uint64         `json:"serving_rate_limit,omitempty"`
	MaxRegistrationsPerBlock   *uint16         `json:"max_registrations_per_block,omitempty"`
	CommitRevealWeightsEnabled *bool           `json:"commit_reveal_weights_enabled,omitempty"`
	RevealPeriodEpochs         *uint64         `json:"commit_reveal_period,omitempty"`
}

type setHyperArgs struct {
	NetUID subnet.NetUID        `json:"netuid"`
	Update HyperparameterUpdate `json:"update"`
}

// decodeArgs decodes x's arguments strictly into the call's type.
func (x *extrinsic) decodeArgs() (any, error) {
	var v any
	switch x.Call {
	case callCreateSubnet:
		v = &createSubnetArgs{}
	case callSetHyper:
		v = &setHyperArgs{}
	case callRegister:
		v = &registerArgs{}
	case callAddStake:
		v = &addStakeArgs{}
	case callTransfer:
		v = &transferArgs{}
	case callServeAxon:
		v = &serveAxonArgs{}
	case callSetWeights:
		v = &setWeightsArgs{}
	case callCommit:
		v = &commitWeightsArgs{}
	case callServePrometheus:
		v = &servePrometheusArgs{}
	default:
		return nil, subnet.Errorf(subnet.EINVALID, "unknown call %q", truncate(x.Call))
	}
	if err := decodeStrict(x.Args, v); err != nil {
		return nil, subnet.Errorf(subnet.EINVALID, "%s arguments: %v", x.Call, err)
	}
	return v, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
