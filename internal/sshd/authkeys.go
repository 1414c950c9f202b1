//go:build linux

package sshd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
)

// maxAuthFileSize bounds how much of authorized_keys or the password file
// is read on each login attempt.
const maxAuthFileSize = 1 << 20

// keyRestrictions are the authorized_keys options the server honours. Any
// other option makes the whole line unusable: granting a key that says
// command="..." or from="..." without enforcing it would give it more than
// its owner asked for.
type keyRestrictions struct {
	noPTY            bool
	noPortForwarding bool
}

// authorizedKey is one usable line of authorized_keys.
type authorizedKey struct {
	key ssh.PublicKey
	keyRestrictions
}

// skippedLine reports an authorized_keys line that was not used.
type skippedLine struct {
	line   int
	reason string
}

// parseAuthorizedKeys parses OpenSSH authorized_keys text. Blank lines and
// comments are ignored; lines that do not parse, or that carry an option
// the server cannot honour, are skipped and reported.
func parseAuthorizedKeys(data []byte) (keys []authorizedKey, skipped []skippedLine) {
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		pub, _, opts, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			skipped = append(skipped, skippedLine{i + 1, "not a public key"})
			continue
		}
		r, err := parseKeyOptions(opts)
		if err != nil {
			skipped = append(skipped, skippedLine{i + 1, err.Error()})
			continue
		}
		keys = append(keys, authorizedKey{key: pub, keyRestrictions: r})
	}
	return keys, skipped
}

// parseKeyOptions interprets the options the server honours: restrict,
// no-pty, no-port-forwarding and the ones naming features it never offers
// (agent and X11 forwarding, user rc), plus pty and port-forwarding, which
// lift restrict's limits again (sshd(8) AUTHORIZED_KEYS FILE FORMAT).
func parseKeyOptions(opts []string) (keyRestrictions, error) {
	var r keyRestrictions
	for _, o := range opts {
		switch strings.ToLower(o) {
		case "restrict":
			r.noPTY, r.noPortForwarding = true, true
		case "no-pty":
			r.noPTY = true
		case "pty":
			r.noPTY = false
		case "no-port-forwarding":
			r.noPortForwarding = true
		case "port-forwarding":
			r.noPortForwarding = false
		case "no-agent-forwarding", "no-x11-forwarding", "no-user-rc":
		default:
			name, _, _ := strings.Cut(o, "=")
			if len(name) > 32 {
				name = name[:32]
			}
			return r, fmt.Errorf("unsupported option %q", name)
		}
	}
	return r, nil
}

// readLimited reads at most maxAuthFileSize bytes of path; a larger file
// is an error rather than silently truncated.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAuthFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxAuthFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxAuthFileSize)
	}
	return b, nil
}

// findKey returns the authorized_keys entry for key. The file is read on
// every call so that a replaced file applies to the next login at once.
func findKey(path string, key ssh.PublicKey) (authorizedKey, []skippedLine, error) {
	data, err := readLimited(path)
	if err != nil {
		return authorizedKey{}, nil, err
	}
	keys, skipped := parseAuthorizedKeys(data)
	want := key.Marshal()
	for _, k := range keys {
		if bytes.Equal(k.key.Marshal(), want) {
			return k, skipped, nil
		}
	}
	return authorizedKey{}, skipped, errKeyNotAuthorized
}

var errKeyNotAuthorized = errors.New("key not in authorized_keys")

// readPasswordHash returns the HashPassword output stored in path, or
// ok=false when the file does not exist or holds only white space
// (password login disabled): the miner's runtime writes it empty for a
// lease without a password, so that an image cannot supply one.
func readPasswordHash(path string) (hash string, ok bool, err error) {
	b, err := readLimited(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	hash = strings.TrimSpace(string(b))
	return hash, hash != "", nil
}
