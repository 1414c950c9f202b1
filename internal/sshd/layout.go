// Package sshd is the SSH server that runs as the entrypoint of every rented
// container: the miner bind-mounts the static nicompute binary read-only into
// the container and starts `nicompute sshd`. It imports nothing else from
// nicompute, so it stays small and free of Docker or chain code.
package sshd

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Paths inside a container. The miner's runtime writes the files in Dir
// before the container starts; the server re-reads them on every login, so
// replacing authorized_keys takes effect without a restart.
const (
	// BinaryPath is where the runtime bind-mounts the nicompute binary.
	BinaryPath = "/.nicompute/bin/nicompute"
	// Dir holds the server's configuration files.
	Dir = "/etc/nicompute"
	// AuthorizedKeysFile (in Dir) holds the renter's keys in OpenSSH
	// authorized_keys format.
	AuthorizedKeysFile = "authorized_keys"
	// PasswordFile (in Dir) holds HashPassword's output when the lease
	// asked for SN27-compatible password login. Password login is offered
	// only while it holds a hash: absent, empty or white space, it is off.
	PasswordFile = "password"
	// HostKeyFile (in Dir) is the ed25519 host key, generated on first start.
	HostKeyFile = "ssh_host_ed25519_key"
)

// Entrypoint is the container command that starts the server on port 22,
// with port forwarding allowed or not.
func Entrypoint(forwarding bool) []string {
	return []string{BinaryPath, "sshd", "--dir", Dir, "--listen", ":22", "--allow-tcp-forwarding=" + strconv.FormatBool(forwarding)}
}

// HashPassword returns a salted SHA-256 hash of password in the form
// "sha256$<hex salt>$<hex digest>". Lease passwords are random and at least
// 20 characters (≥ 119 bits), so a fast hash suffices; a slow KDF would only
// let login attempts exhaust the container's memory or CPU.
func HashPassword(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	sum := sha256.Sum256(append(salt, password...))
	return "sha256$" + hex.EncodeToString(salt) + "$" + hex.EncodeToString(sum[:]), nil
}

// CheckPassword reports whether password matches a HashPassword hash, in
// constant time.
func CheckPassword(hash, password string) bool {
	parts := strings.Split(strings.TrimSpace(hash), "$")
	if len(parts) != 3 || parts[0] != "sha256" {
		return false
	}
	salt, err1 := hex.DecodeString(parts[1])
	want, err2 := hex.DecodeString(parts[2])
	if err1 != nil || err2 != nil || len(salt) < 16 || len(want) != sha256.Size {
		return false
	}
	got := sha256.Sum256(append(salt, password...))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}

// MaxHashedFile bounds the file HashFile reads: far above any worker
// binary, far below what would keep a lease's CPU busy for long.
const MaxHashedFile = 1 << 30

// HashFile returns the SHA-256 of the regular file at path, in lower-case
// hex: the helper a validator runs (`nicompute sshd sha256 FILE`) to check
// its cached worker before running it. A symbolic link, a directory, a
// device, a FIFO or a file over MaxHashedFile is refused.
func HashFile(path string) (string, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if fi2, err := f.Stat(); err != nil || !os.SameFile(fi, fi2) {
		return "", fmt.Errorf("%s changed while it was opened", path)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, MaxHashedFile+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if n > MaxHashedFile {
		return "", fmt.Errorf("%s is larger than %d bytes", path, MaxHashedFile)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
