package devnet

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Endpoints names every URL a running devnet serves, by role: "chain",
// "api", and whatever else a service adds (endpoints["metrics"] = url).
// It is written as a flat JSON object to Paths.Endpoints, so scripts and
// other tools find the devnet without parsing its output.
type Endpoints map[string]string

// Write replaces the file at path with e, atomically.
func (e Endpoints) Write(path string) error {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, append(b, '\n'), 0o644)
}

// ReadEndpoints reads an endpoints file.
func ReadEndpoints(path string) (Endpoints, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var e Endpoints
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

// writeAtomic writes data to path with mode through a temporary file in
// its directory.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// WriteSecret replaces the file at path with secret and a newline, mode
// 0600 (its directory 0700).
func WriteSecret(path, secret string) error {
	return writeAtomic(path, []byte(secret+"\n"), 0o600)
}
