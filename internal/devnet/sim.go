package devnet

import (
	"fmt"
	"strings"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/pog"
)

// DefaultSimGPUs are the devnet miners' simulated GPUs, one entry per
// miner in order (repeated when there are more miners).
var DefaultSimGPUs = []string{"NVIDIA H200", "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"}

// SimGPUs are one devnet miner's simulated GPUs.
type SimGPUs struct {
	Model market.GPUModel
	Count int
}

// ParseSimGPUs parses one "MODEL" or "COUNTxMODEL" entry per miner against
// the table. With fewer entries than miners the list repeats; a miner
// count of 0 parses the list alone.
func ParseSimGPUs(t *market.GPUTable, specs []string, miners int) ([]SimGPUs, error) {
	if len(specs) == 0 {
		if miners == 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("no simulated GPU models given for %d miners", miners)
	}
	parsed := make([]SimGPUs, len(specs))
	for i, s := range specs {
		m, n, err := pog.ParseSimulate(t, s)
		if err != nil {
			return nil, err
		}
		if n > pog.MaxGPUs {
			return nil, fmt.Errorf("simulate %q: at most %d GPUs per miner", s, pog.MaxGPUs)
		}
		parsed[i] = SimGPUs{Model: m, Count: n}
	}
	if miners == 0 {
		return parsed, nil
	}
	out := make([]SimGPUs, miners)
	for i := range out {
		out[i] = parsed[i%len(parsed)]
	}
	return out, nil
}

// Spec is the entry as the worker's simulation file takes it.
func (g SimGPUs) Spec() string { return fmt.Sprintf("%dx%s", g.Count, g.Model.Name) }

// String is "2 × NVIDIA H100".
func (g SimGPUs) String() string { return fmt.Sprintf("%d × %s", g.Count, g.Model.Name) }

// Devices returns the GPUs miner i reports: fixed ids unique to the miner,
// the model's name and memory.
func (g SimGPUs) Devices(miner int) []market.GPUDevice {
	out := make([]market.GPUDevice, g.Count)
	for j := range out {
		out[j] = market.GPUDevice{
			Index:       j,
			UUID:        fmt.Sprintf("GPU-devnet-%d-%d", miner, j),
			Name:        g.Model.Name,
			CapacityMiB: int64(g.Model.MemoryBytes >> 20),
		}
	}
	return out
}

// MinerIP is the loopback address devnet miner i serves on (127.0.0.2,
// 127.0.0.3, …), so every miner has an IP of its own and the validator's
// one-uid-per-IP rule holds unchanged.
func MinerIP(i int) string { return fmt.Sprintf("127.0.%d.%d", (i+2)/256, (i+2)%256) }

// SplitSimGPUs splits a --sim-gpus value on commas.
func SplitSimGPUs(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
