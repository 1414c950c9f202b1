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

// WriteSecret replaces the file at path with secret and a newline, mode
// 0600 (its directory 0700), atomically.
func WriteSecret(path, secret string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(secret + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
