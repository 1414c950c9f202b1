// Package selfupdate installs signed releases of nicompute (--auto-update).
//
// A release is a manifest (manifest.json: the version and, per platform,
// each binary's URL, SHA-256 and size) and a detached Ed25519 signature
// over the manifest's exact bytes (manifest.json.sig, base64). The
// updater accepts a manifest only when the signature verifies against one
// of the trusted public keys (the key built into the binary at release
// time and --update.pubkey), only when its version is newer than the
// running one (so a replayed old manifest cannot downgrade), and a binary
// only when its size and SHA-256 match the manifest. The new binary is
// written beside the running one, must answer `version --json` with the
// manifest's version, and then replaces it by rename (atomic on one
// filesystem); the previous binary is kept as NAME.prev and a marker
// (NAME.update) records the change until the new binary has started its
// daemon. A binary that fails to start twice is rolled back by Boot.
//
// Ed25519 from the standard library over a signed manifest needs no
// dependency and is what minisign signs with; the manifest also pins
// every binary's digest, so one signature covers a whole release.
package selfupdate

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// ReleaseKey is the base64 Ed25519 public key of nicompute's releases and
// ReleaseURL the URL of their manifest, set at link time (-ldflags "-X
// …/selfupdate.ReleaseKey=…") by the release build; empty in development
// builds.
var (
	ReleaseKey = ""
	ReleaseURL = ""
)

// Manifest describes one release.
type Manifest struct {
	Version string `json:"version"`
	// Binaries maps "GOOS/GOARCH" to the release's binaries by name
	// ("nicompute", "nicompute-pog").
	Binaries map[string]map[string]Binary `json:"binaries"`
}

// Binary is one downloadable file of a release.
type Binary struct {
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Limits on what is read from a release feed.
const (
	MaxManifestBytes  = 64 << 10
	MaxSignatureBytes = 1 << 10
	MaxBinaryBytes    = 512 << 20
)

var binaryName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// ParseKeys decodes base64 Ed25519 public keys, skipping empty entries.
func ParseKeys(keys ...string) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	for _, k := range keys {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("update public key %q is not a base64 Ed25519 public key", clip(k))
		}
		out = append(out, ed25519.PublicKey(b))
	}
	return out, nil
}

// Sign returns the detached signature file of manifest: base64 of the
// Ed25519 signature over its exact bytes, and a newline.
func Sign(key ed25519.PrivateKey, manifest []byte) []byte {
	return []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(key, manifest)) + "\n")
}

// ErrBadSignature is returned when no trusted key signed the manifest.
var ErrBadSignature = errors.New("manifest signature does not verify against any trusted key")

// Verify checks sig (the signature file) over manifest with keys and
// parses the manifest. Nothing of an unsigned manifest is parsed.
func Verify(manifest, sig []byte, keys []ed25519.PublicKey) (*Manifest, error) {
	if len(keys) == 0 {
		return nil, errors.New("no trusted update key")
	}
	raw, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(sig)))
	if err != nil || len(raw) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: the signature file is not a base64 Ed25519 signature", ErrBadSignature)
	}
	ok := false
	for _, k := range keys {
		if ed25519.Verify(k, manifest, raw) {
			ok = true
			break
		}
	}
	if !ok {
		return nil, ErrBadSignature
	}
	return ParseManifest(manifest)
}

// ParseManifest decodes and validates a manifest (strictly: unknown
// fields are refused).
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestBytes {
		return nil, fmt.Errorf("manifest larger than %d bytes", MaxManifestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if dec.More() {
		return nil, errors.New("manifest: trailing data")
	}
	if _, err := ParseVersion(m.Version); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if len(m.Binaries) == 0 {
		return nil, errors.New("manifest: no binaries")
	}
	for plat, bins := range m.Binaries {
		if goos, goarch, ok := strings.Cut(plat, "/"); !ok || !binaryName.MatchString(goos) || !binaryName.MatchString(goarch) {
			return nil, fmt.Errorf("manifest: platform %q is not GOOS/GOARCH", clip(plat))
		}
		for name, bin := range bins {
			if !binaryName.MatchString(name) {
				return nil, fmt.Errorf("manifest: binary name %q", clip(name))
			}
			if err := bin.validate(); err != nil {
				return nil, fmt.Errorf("manifest: %s %s: %w", plat, name, err)
			}
		}
	}
	return &m, nil
}

func (b Binary) validate() error {
	u, err := url.Parse(b.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("url %q is not http(s)", clip(b.URL))
	}
	if d, err := hex.DecodeString(b.SHA256); err != nil || len(d) != 32 {
		return fmt.Errorf("sha256 %q is not 64 hex digits", clip(b.SHA256))
	}
	if b.Size <= 0 || b.Size > MaxBinaryBytes {
		return fmt.Errorf("size %d out of (0, %d]", b.Size, MaxBinaryBytes)
	}
	return nil
}

// Version is a parsed semantic version.
type Version struct {
	Major, Minor, Patch uint64
	Pre                 string // "" for a release
}

// ParseVersion parses MAJOR.MINOR.PATCH with an optional "v" and
// -prerelease (build metadata after "+" is ignored).
func ParseVersion(s string) (Version, error) {
	v := strings.TrimPrefix(strings.TrimSpace(s), "v")
	v, _, _ = strings.Cut(v, "+")
	core, pre, _ := strings.Cut(v, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 || len(s) > 64 {
		return Version{}, fmt.Errorf("version %q is not MAJOR.MINOR.PATCH", clip(s))
	}
	var n [3]uint64
	for i, p := range parts {
		x, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return Version{}, fmt.Errorf("version %q is not MAJOR.MINOR.PATCH", clip(s))
		}
		n[i] = x
	}
	return Version{n[0], n[1], n[2], pre}, nil
}

// Compare returns -1, 0 or 1 as v is older than, equal to or newer than
// w; a prerelease is older than its release, prereleases compare as text.
func (v Version) Compare(w Version) int {
	for _, d := range [][2]uint64{{v.Major, w.Major}, {v.Minor, w.Minor}, {v.Patch, w.Patch}} {
		if d[0] != d[1] {
			if d[0] < d[1] {
				return -1
			}
			return 1
		}
	}
	switch {
	case v.Pre == w.Pre:
		return 0
	case v.Pre == "":
		return 1
	case w.Pre == "":
		return -1
	}
	return strings.Compare(v.Pre, w.Pre)
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
