package selfupdate

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// File is one binary of a release being built.
type File struct {
	Platform, Name string // "linux/amd64", "nicompute"
	Path           string // local file
	URL            string // where it will be downloaded from
}

// BuildManifest reads each file's size and SHA-256 and returns the
// release's manifest (validated, as the updater will parse it).
func BuildManifest(version string, files []File) ([]byte, error) {
	m := Manifest{Version: version, Binaries: map[string]map[string]Binary{}}
	for _, f := range files {
		b, err := digest(f.Path)
		if err != nil {
			return nil, err
		}
		b.URL = f.URL
		if m.Binaries[f.Platform] == nil {
			m.Binaries[f.Platform] = map[string]Binary{}
		}
		m.Binaries[f.Platform][f.Name] = b
	}
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if _, err := ParseManifest(raw); err != nil {
		return nil, err
	}
	return append(raw, '\n'), nil
}

func digest(path string) (Binary, error) {
	f, err := os.Open(path)
	if err != nil {
		return Binary{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Binary{}, fmt.Errorf("read %s: %w", path, err)
	}
	return Binary{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

// GenerateKey writes a new signing key (the base64 Ed25519 seed) to path,
// which must not exist, and returns the base64 public key.
func GenerateKey(path string) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("create signing key: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(priv.Seed()) + "\n"); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(pub), nil
}

// LoadKey reads a signing key written by GenerateKey; it must be private
// to its owner (mode 0600 or stricter).
func LoadKey(path string) (ed25519.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s is readable by others (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, errors.New("signing key: not a base64 Ed25519 seed")
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// PublicKey is the base64 public key of k.
func PublicKey(k ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(k.Public().(ed25519.PublicKey))
}
