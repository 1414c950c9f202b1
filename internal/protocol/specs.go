package protocol

import (
	"encoding/json"
	"fmt"

	"github.com/nicompute/nicompute/internal/market"
)

// Specs is SN27's Specs synapse. The miner answers with SpecsOutput, a JSON
// string of market.Specs (SN27's keys plus nicompute's extras).
type Specs struct {
	SpecsInput  string `json:"specs_input"`
	SpecsOutput string `json:"specs_output"`
}

// MaxSpecsBytes bounds a specs answer.
const MaxSpecsBytes = 256 << 10

// EncodeSpecs fills the answer.
func EncodeSpecs(s market.Specs) (*Specs, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	return &Specs{SpecsOutput: string(b)}, nil
}

// DecodeSpecs parses a miner's specs answer, bounding sizes and counts.
func DecodeSpecs(out string) (market.Specs, error) {
	var s market.Specs
	if len(out) > MaxSpecsBytes {
		return s, fmt.Errorf("specs answer larger than %d bytes", MaxSpecsBytes)
	}
	if out == "" {
		return s, fmt.Errorf("empty specs answer")
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return s, fmt.Errorf("malformed specs answer: %s", jsonReason(err))
	}
	if len(s.GPU.Details) > 64 || s.GPU.Count < 0 || s.GPU.Count > 64 {
		return s, fmt.Errorf("specs answer lists an implausible number of GPUs")
	}
	return s, nil
}
