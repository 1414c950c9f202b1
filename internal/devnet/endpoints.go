package devnet

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// EndpointsFile is the file in a devnet's data directory that lists its
// endpoints: a flat JSON object of name → URL with sorted keys ("chain",
// "chain.metrics", "validator.metrics", "validator.dashboard",
// "miner-0.metrics", …), so scripts find every endpoint without reading
// logs.
const EndpointsFile = "endpoints.json"

// WriteEndpoints writes eps to root/endpoints.json (0644), replacing the
// file atomically.
func WriteEndpoints(root string, eps map[string]string) error {
	b, err := json.MarshalIndent(eps, "", "  ") // map keys are sorted
	if err != nil {
		return fmt.Errorf("encode endpoints: %w", err)
	}
	p := filepath.Join(root, EndpointsFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write endpoints: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("write endpoints: %w", err)
	}
	return nil
}

// MinerName is miner i's name in the endpoints file.
func MinerName(i int) string { return fmt.Sprintf("miner-%d", i) }
