package docker

import (
	"crypto/rsa"
	"fmt"
	"path"
	"strings"

	"github.com/distribution/reference"
	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/sshd"
)

// Bounds on renter-supplied strings. They are far above any honest value and
// small enough that a hostile request cannot make the miner allocate much.
const (
	// MaxImageLen bounds an image reference (name, tag and digest).
	MaxImageLen = 512
	// MaxSSHKeys bounds the number of keys in one authorized_keys file.
	MaxSSHKeys = 16
	// MaxSSHKeysLen bounds the whole authorized_keys text.
	MaxSSHKeysLen = 32 << 10
	// MaxSSHKeyLineLen bounds one key line (a 16384-bit RSA key is ~2.8 KiB).
	MaxSSHKeyLineLen = 8 << 10
	// MinRSABits is the smallest RSA key accepted.
	MinRSABits = 2048
	// MaxVolumePathLen bounds a lease's volume path.
	MaxVolumePathLen = 256
	// MaxLeaseIDLen bounds a lease id (it is part of container names).
	MaxLeaseIDLen = 64
	// MinPasswordLen and MaxPasswordLen bound a lease password; the miner
	// generates it, so a short one is a bug, not a renter's choice.
	MinPasswordLen = 20
	MaxPasswordLen = 128
)

// ValidateImage checks a renter- or operator-supplied image reference and
// returns it in its familiar form with the default tag filled in
// ("ubuntu" → "ubuntu:latest"). It refuses references that do not parse as
// a Docker reference, are too long, contain control or non-ASCII characters,
// or are bare image ids. Errors are *market.Error with code EINVALID.
func ValidateImage(image string) (string, error) {
	switch {
	case image == "":
		return "", market.Errorf(market.EINVALID, "image reference is empty")
	case len(image) > MaxImageLen:
		return "", market.Errorf(market.EINVALID, "image reference is longer than %d bytes", MaxImageLen)
	}
	for i := 0; i < len(image); i++ {
		if c := image[i]; c <= ' ' || c >= 0x7f {
			return "", market.Errorf(market.EINVALID, "image reference contains a space, control or non-ASCII character")
		}
	}
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", market.Errorf(market.EINVALID, "image reference %q is not valid", image)
	}
	return reference.FamiliarString(reference.TagNameOnly(ref)), nil
}

// ParseSSHKeys parses a renter's public keys in OpenSSH authorized_keys
// format: one key per line, blank lines and '#' comment lines ignored. It
// refuses key options (command=, from=, …), certificates, RSA keys shorter
// than MinRSABits, control characters other than newline (so no '\r' or NUL
// tricks), more than MaxSSHKeys keys, and text longer than MaxSSHKeysLen.
// Comments after a key are dropped: the runtime writes only the canonical
// form of each key. Errors are *market.Error with code EINVALID.
func ParseSSHKeys(text string) ([]ssh.PublicKey, error) {
	if len(text) > MaxSSHKeysLen {
		return nil, market.Errorf(market.EINVALID, "ssh keys are longer than %d bytes", MaxSSHKeysLen)
	}
	var keys []ssh.PublicKey
	for n, line := range strings.Split(text, "\n") {
		n++ // 1-based line numbers in messages
		if len(line) > MaxSSHKeyLineLen {
			return nil, market.Errorf(market.EINVALID, "ssh key line %d is longer than %d bytes", n, MaxSSHKeyLineLen)
		}
		for i := 0; i < len(line); i++ {
			if c := line[i]; (c < ' ' && c != '\t') || c == 0x7f {
				return nil, market.Errorf(market.EINVALID, "ssh key line %d contains a control character", n)
			}
		}
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if len(keys) == MaxSSHKeys {
			return nil, market.Errorf(market.EINVALID, "more than %d ssh keys", MaxSSHKeys)
		}
		key, _, options, rest, err := ssh.ParseAuthorizedKey([]byte(trimmed))
		if err != nil {
			return nil, market.Errorf(market.EINVALID, "ssh key line %d is not an OpenSSH public key", n)
		}
		if len(options) > 0 {
			return nil, market.Errorf(market.EINVALID, "ssh key line %d has options; only plain keys are accepted", n)
		}
		if len(rest) > 0 {
			return nil, market.Errorf(market.EINVALID, "ssh key line %d holds more than one key", n)
		}
		if err := checkKey(key); err != nil {
			return nil, market.Errorf(market.EINVALID, "ssh key line %d: %s", n, err)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, market.Errorf(market.EINVALID, "no ssh public key given")
	}
	return keys, nil
}

// checkKey refuses key kinds the runtime does not hand to sshd.
func checkKey(key ssh.PublicKey) error {
	if _, ok := key.(*ssh.Certificate); ok {
		return fmt.Errorf("certificates are not accepted")
	}
	if ck, ok := key.(ssh.CryptoPublicKey); ok {
		if rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey); ok && rk.N.BitLen() < MinRSABits {
			return fmt.Errorf("rsa key shorter than %d bits", MinRSABits)
		}
	}
	return nil
}

// MarshalAuthorizedKeys returns keys in authorized_keys format, one
// canonical key per line, without comments or options.
func MarshalAuthorizedKeys(keys []ssh.PublicKey) []byte {
	var b []byte
	for _, k := range keys {
		b = append(b, ssh.MarshalAuthorizedKey(k)...)
	}
	return b
}

// reservedPaths are container paths a lease's volume path may not be, be
// under or contain: kernel filesystems the runtime provides, and the
// directories the injected SSH server lives in.
var reservedPaths = []string{"/proc", "/sys", "/dev", path.Dir(sshd.BinaryPath), sshd.Dir}

// ValidateVolumePath checks the container path of a lease's volume (a
// directory the runtime creates in the container's filesystem): absolute, already clean (no "..", "//" or trailing "/"), at most
// MaxVolumePathLen bytes of [A-Za-z0-9._-/], not "/" and not on or under
// /proc, /sys, /dev or the SSH server's directories. Errors are
// *market.Error with code EINVALID.
func ValidateVolumePath(p string) error {
	switch {
	case p == "":
		return market.Errorf(market.EINVALID, "volume path is empty")
	case len(p) > MaxVolumePathLen:
		return market.Errorf(market.EINVALID, "volume path is longer than %d bytes", MaxVolumePathLen)
	case !strings.HasPrefix(p, "/"):
		return market.Errorf(market.EINVALID, "volume path must be absolute")
	case p == "/":
		return market.Errorf(market.EINVALID, "volume path may not be /")
	case path.Clean(p) != p:
		return market.Errorf(market.EINVALID, "volume path must be clean (no .., //, or trailing /)")
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '/') {
			return market.Errorf(market.EINVALID, "volume path may contain only letters, digits, '.', '_', '-' and '/'")
		}
	}
	for _, r := range reservedPaths {
		if p == r || strings.HasPrefix(p, r+"/") || strings.HasPrefix(r, p+"/") {
			return market.Errorf(market.EINVALID, "volume path %s overlaps %s, which the runtime reserves", p, r)
		}
	}
	return nil
}

// CheckDockerfile refuses a renter-supplied Dockerfile. Building images per
// allocation runs renter-controlled steps on the miner's engine with network
// access (the original's injection hole) and is slow; renters ask for an
// image instead. An empty text is accepted (no build requested).
func CheckDockerfile(text string) error {
	if strings.TrimSpace(text) == "" {
		return nil
	}
	return market.Errorf(market.EINVALID, "custom dockerfiles are not supported by this miner; request a prebuilt image instead")
}

// validLeaseID reports whether id can be part of a container name:
// 1 to MaxLeaseIDLen bytes of [A-Za-z0-9_.-], starting with a letter or digit.
func validLeaseID(id string) bool {
	return validName(id, MaxLeaseIDLen)
}

// validName reports whether s is 1..max bytes of [A-Za-z0-9_.-] starting
// with a letter or digit (Docker's container-name alphabet).
func validName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

// ValidateLeaseID checks a lease id before it is used in container, volume
// and label names. Errors are *market.Error with code EINVALID.
func ValidateLeaseID(id string) error {
	if !validLeaseID(id) {
		return market.Errorf(market.EINVALID, "lease id must be 1 to %d characters of letters, digits, '_', '.', '-'", MaxLeaseIDLen)
	}
	return nil
}
