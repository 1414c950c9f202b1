package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/wallet"
)

// Wallet keys sign extrinsics and axon requests.
var _ subnet.Signer = (*keys.Keypair)(nil)

// passwordEnv holds a coldkey password for automation (CI, devnet scripts).
// It is read only when set; an interactive prompt is the default.
const passwordEnv = "NICOMPUTE_WALLET_PASSWORD"

// maxPasswordLen bounds a password read from stdin or a file.
const maxPasswordLen = 4096

// openWallet opens the wallet named by the flags, with ~ expanded.
func (a *app) openWallet(w walletFlags) (*wallet.Wallet, error) {
	dir, err := w.dir()
	if err != nil {
		return nil, err
	}
	return wallet.Open(dir, w.name), nil
}

// loadHotkey loads the hotkey named by the wallet flags. An encrypted hotkey
// asks for its password like a coldkey.
func (a *app) loadHotkey(w walletFlags) (*keys.Keypair, error) {
	wal, err := a.openWallet(w)
	if err != nil {
		return nil, err
	}
	kp, err := wal.Hotkey(w.hotkey)
	if errors.Is(err, wallet.ErrEncrypted) {
		pw, perr := a.readPassword(passwordSource{}, fmt.Sprintf("Password for hotkey %s/%s: ", w.name, w.hotkey))
		if perr != nil {
			return nil, perr
		}
		kp, err = wal.HotkeyWithPassword(w.hotkey, pw)
	}
	if err != nil {
		return nil, fmt.Errorf("load hotkey: %w", err)
	}
	return kp, nil
}

// loadColdkey loads (decrypting, with a password prompt when needed) the
// coldkey named by the wallet flags.
func (a *app) loadColdkey(w walletFlags) (*keys.Keypair, error) {
	return a.loadColdkeyFrom(w, passwordSource{})
}

func (a *app) loadColdkeyFrom(w walletFlags, src passwordSource) (*keys.Keypair, error) {
	wal, err := a.openWallet(w)
	if err != nil {
		return nil, err
	}
	enc, err := wal.ColdkeyEncrypted()
	if err != nil {
		return nil, fmt.Errorf("load coldkey: %w", err)
	}
	var pw []byte
	if enc {
		if pw, err = a.readPassword(src, fmt.Sprintf("Password for coldkey %s: ", w.name)); err != nil {
			return nil, err
		}
	}
	kp, err := wal.Coldkey(pw)
	if err != nil {
		return nil, fmt.Errorf("load coldkey: %w", err)
	}
	return kp, nil
}

// coldkeyAddress returns the SS58 address of the wallet's coldkey from
// coldkeypub.txt, without decrypting anything.
func (a *app) coldkeyAddress(w walletFlags) (string, error) {
	wal, err := a.openWallet(w)
	if err != nil {
		return "", err
	}
	addr, err := wal.ColdkeyAddress()
	if err != nil {
		return "", fmt.Errorf("coldkey address: %w", err)
	}
	return addr, nil
}

// passwordSource says where a password comes from besides the defaults.
type passwordSource struct {
	// file is --password-file: the first line of the file is the password.
	file string
	// confirm asks twice on a terminal (creating a key).
	confirm bool
}

// readPassword returns a password from, in order: --password-file, the
// NICOMPUTE_WALLET_PASSWORD environment variable, a terminal prompt on
// stderr (no echo; twice when confirming), or one line of stdin. Like
// btwallet, it trims surrounding whitespace, so passwords typed into btcli
// and here derive the same key. The password never appears in errors.
func (a *app) readPassword(src passwordSource, prompt string) ([]byte, error) {
	if src.file != "" {
		f, err := os.Open(src.file)
		if err != nil {
			return nil, fmt.Errorf("password file: %w", err)
		}
		defer f.Close()
		line, err := readSecretLine(f)
		if err != nil {
			return nil, fmt.Errorf("password file %s: %w", src.file, err)
		}
		return nonEmptyPassword(line, "password file "+src.file)
	}
	if v, ok := os.LookupEnv(passwordEnv); ok {
		return nonEmptyPassword([]byte(v), passwordEnv)
	}
	if f, ok := a.In.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		pw, err := a.promptPassword(f, prompt)
		if err != nil {
			return nil, err
		}
		if src.confirm {
			again, err := a.promptPassword(f, "Retype the password: ")
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(pw, again) {
				return nil, errors.New("passwords do not match")
			}
		}
		return nonEmptyPassword(pw, "the prompt")
	}
	if a.In == nil {
		return nil, noPasswordError()
	}
	line, err := readSecretLine(a.In)
	if errors.Is(err, io.EOF) {
		return nil, noPasswordError()
	}
	if err != nil {
		return nil, fmt.Errorf("read password from stdin: %w", err)
	}
	return nonEmptyPassword(line, "stdin")
}

func noPasswordError() error {
	return fmt.Errorf("a password is needed: stdin is not a terminal and holds no password line; use --password-file or set %s", passwordEnv)
}

func (a *app) promptPassword(f *os.File, prompt string) ([]byte, error) {
	fmt.Fprint(a.Err, prompt)
	pw, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(a.Err)
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	return bytes.TrimSpace(pw), nil
}

func nonEmptyPassword(pw []byte, from string) ([]byte, error) {
	pw = bytes.TrimSpace(pw)
	if len(pw) == 0 {
		return nil, fmt.Errorf("empty password from %s", from)
	}
	return pw, nil
}

// readSecretLine reads up to a newline one byte at a time, so nothing after the
// line is consumed from a shared stdin. io.EOF means no bytes at all.
func readSecretLine(r io.Reader) ([]byte, error) {
	var line []byte
	var b [1]byte
	for len(line) <= maxPasswordLen {
		n, err := r.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				return bytes.TrimSuffix(line, []byte{'\r'}), nil
			}
			line = append(line, b[0])
			continue
		}
		if errors.Is(err, io.EOF) {
			if len(line) == 0 {
				return nil, io.EOF
			}
			return line, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("line longer than %d bytes", maxPasswordLen)
}
