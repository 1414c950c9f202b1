package wallet

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nicompute/nicompute/internal/keys"
)

// File names inside a wallet directory.
const (
	coldkeyFile    = "coldkey"
	coldkeypubFile = "coldkeypub.txt"
	hotkeysDir     = "hotkeys"
	hotkeypubExt   = "pub.txt"
)

// Wallet is one wallet directory, <dir>/<name>. Opening does not touch the
// disk; each method reads or writes the files it needs.
type Wallet struct {
	dir, name string
	kdf       kdfParams
}

// Open returns the wallet name under the wallet path dir (Bittensor's
// --wallet.path, e.g. ~/.bittensor/wallets, already expanded).
func Open(dir, name string) *Wallet {
	return &Wallet{dir: dir, name: name, kdf: sensitive}
}

// Name returns the wallet's name.
func (w *Wallet) Name() string { return w.name }

// Path returns the wallet's directory.
func (w *Wallet) Path() string { return filepath.Join(w.dir, w.name) }

// ColdkeyPath, ColdkeypubPath and HotkeyPath return where the keyfiles are.
func (w *Wallet) ColdkeyPath() string    { return filepath.Join(w.Path(), coldkeyFile) }
func (w *Wallet) ColdkeypubPath() string { return filepath.Join(w.Path(), coldkeypubFile) }
func (w *Wallet) HotkeyPath(name string) string {
	return filepath.Join(w.Path(), hotkeysDir, name)
}

func (w *Wallet) hotkeypubPath(name string) string {
	return filepath.Join(w.Path(), hotkeysDir, name+hotkeypubExt)
}

// checkName rejects names that are not a single path element.
func checkName(kind, name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("invalid %s name %q", kind, name)
	case strings.ContainsAny(name, `/\`), strings.ContainsRune(name, 0):
		return fmt.Errorf("invalid %s name %q: must not contain a path separator", kind, name)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("invalid %s name %q: must not start with a dot", kind, name)
	}
	return nil
}

func (w *Wallet) check() error { return checkName("wallet", w.name) }

func (w *Wallet) checkHotkey(name string) error {
	if err := w.check(); err != nil {
		return err
	}
	return checkName("hotkey", name)
}

// readKeyfile reads a keyfile, wrapping a missing file with a readable
// message around fs.ErrNotExist.
func (w *Wallet) readKeyfile(what, path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("wallet %q has no %s (%s): %w", w.name, what, path, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return data, nil
}

func (w *Wallet) loadKeypair(what, path string, password []byte) (*keys.Keypair, error) {
	data, err := w.readKeyfile(what, path)
	if err != nil {
		return nil, err
	}
	if m := EncryptionMethod(data); m != "" {
		if password == nil {
			return nil, fmt.Errorf("%s %s: %w (%s); a password is needed", what, path, ErrEncrypted, m)
		}
		if data, err = decrypt(data, password, w.kdf); err != nil {
			return nil, fmt.Errorf("decrypt %s %s: %w", what, path, err)
		}
	}
	kf, err := ParseKeyfile(data)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if kf.Keypair == nil {
		return nil, fmt.Errorf("%s %s: %w: it holds a public key only", what, path, ErrCorrupt)
	}
	return kf.Keypair, nil
}

// Hotkey loads hotkeys/<name>. An encrypted hotkey (btwallet can encrypt
// hotkeys) gives an error wrapping ErrEncrypted; use HotkeyWithPassword.
func (w *Wallet) Hotkey(name string) (*keys.Keypair, error) {
	return w.HotkeyWithPassword(name, nil)
}

// HotkeyWithPassword loads hotkeys/<name>, decrypting it with password if
// it is encrypted (password is ignored otherwise).
func (w *Wallet) HotkeyWithPassword(name string, password []byte) (*keys.Keypair, error) {
	if err := w.checkHotkey(name); err != nil {
		return nil, err
	}
	return w.loadKeypair("hotkey "+name, w.HotkeyPath(name), password)
}

// HotkeyEncrypted reports whether hotkeys/<name> is encrypted.
func (w *Wallet) HotkeyEncrypted(name string) (bool, error) {
	if err := w.checkHotkey(name); err != nil {
		return false, err
	}
	return w.encrypted("hotkey "+name, w.HotkeyPath(name))
}

// HotkeyAddress returns the SS58 address of hotkeys/<name> without a
// password: from the hotkey file, or from hotkeys/<name>pub.txt when the
// hotkey is encrypted.
func (w *Wallet) HotkeyAddress(name string) (string, error) {
	if err := w.checkHotkey(name); err != nil {
		return "", err
	}
	what := "hotkey " + name
	data, err := w.readKeyfile(what, w.HotkeyPath(name))
	if err != nil {
		return "", err
	}
	if EncryptionMethod(data) != "" {
		pubPath := w.hotkeypubPath(name)
		if data, err = w.readKeyfile(what+" public key", pubPath); err != nil {
			return "", fmt.Errorf("hotkey %s is encrypted: %w", name, err)
		}
		what += " public key"
	}
	kf, err := ParseKeyfile(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return kf.SS58, nil
}

// Coldkey loads the coldkey, decrypting it with password when it is
// encrypted (password is ignored otherwise). An encrypted coldkey and a nil
// password give an error wrapping ErrEncrypted; a wrong password one
// wrapping ErrWrongPassword.
func (w *Wallet) Coldkey(password []byte) (*keys.Keypair, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	return w.loadKeypair("coldkey", w.ColdkeyPath(), password)
}

// ColdkeyEncrypted reports whether the coldkey file is encrypted.
func (w *Wallet) ColdkeyEncrypted() (bool, error) {
	if err := w.check(); err != nil {
		return false, err
	}
	return w.encrypted("coldkey", w.ColdkeyPath())
}

func (w *Wallet) encrypted(what, path string) (bool, error) {
	data, err := w.readKeyfile(what, path)
	if err != nil {
		return false, err
	}
	return EncryptionMethod(data) != "", nil
}

// ColdkeyAddress returns the coldkey's SS58 address from coldkeypub.txt,
// decrypting nothing. When coldkeypub.txt is missing it falls back to an
// unencrypted coldkey file.
func (w *Wallet) ColdkeyAddress() (string, error) {
	if err := w.check(); err != nil {
		return "", err
	}
	data, err := w.readKeyfile("coldkeypub.txt", w.ColdkeypubPath())
	if errors.Is(err, fs.ErrNotExist) {
		if cold, cerr := os.ReadFile(w.ColdkeyPath()); cerr == nil && EncryptionMethod(cold) == "" {
			if kf, perr := ParseKeyfile(cold); perr == nil {
				return kf.SS58, nil
			}
		}
	}
	if err != nil {
		return "", err
	}
	kf, err := ParseKeyfile(data)
	if err != nil {
		return "", fmt.Errorf("coldkeypub.txt %s: %w", w.ColdkeypubPath(), err)
	}
	return kf.SS58, nil
}

// WriteColdkey writes the coldkey and coldkeypub.txt. A nil password writes
// the coldkey unencrypted; otherwise it is encrypted in the "$NACL" format
// (an empty, non-nil password is refused). Without overwrite, an existing
// coldkey or coldkeypub.txt gives an error wrapping fs.ErrExist and nothing
// is written. Files are written to temporary names and renamed into place.
func (w *Wallet) WriteColdkey(kp *keys.Keypair, password []byte, overwrite bool) error {
	if err := w.check(); err != nil {
		return err
	}
	if !overwrite {
		// Fail before the slow key derivation.
		if err := w.CheckNewColdkey(); err != nil {
			return err
		}
	}
	data := MarshalKeyfile(kp)
	if password != nil {
		var err error
		if data, err = encrypt(data, password, w.kdf); err != nil {
			return fmt.Errorf("encrypt coldkey: %w", err)
		}
	}
	pub, err := MarshalPublicKeyfile(kp.PublicKey())
	if err != nil {
		return err
	}
	files := map[string][]byte{w.ColdkeyPath(): data, w.ColdkeypubPath(): pub}
	return writeFiles(files, []string{w.ColdkeyPath(), w.ColdkeypubPath()}, overwrite)
}

// CheckNewColdkey returns an error wrapping fs.ErrExist when the coldkey or
// coldkeypub.txt exists, so a command can refuse before asking for a
// password.
func (w *Wallet) CheckNewColdkey() error {
	if err := w.check(); err != nil {
		return err
	}
	for _, p := range []string{w.ColdkeyPath(), w.ColdkeypubPath()} {
		if _, err := os.Lstat(p); err == nil {
			return existsError(p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check %s: %w", p, err)
		}
	}
	return nil
}

// WriteColdkeypub writes coldkeypub.txt alone for the public key pub (as
// regen-coldkeypub does for a wallet whose coldkey lives elsewhere).
func (w *Wallet) WriteColdkeypub(pub []byte, overwrite bool) error {
	if err := w.check(); err != nil {
		return err
	}
	data, err := MarshalPublicKeyfile(pub)
	if err != nil {
		return err
	}
	return writeFiles(map[string][]byte{w.ColdkeypubPath(): data}, []string{w.ColdkeypubPath()}, overwrite)
}

// WriteHotkey writes hotkeys/<name> unencrypted, as Bittensor does, and
// hotkeys/<name>pub.txt as btwallet 3+ does. Without overwrite, either file
// existing gives an error wrapping fs.ErrExist and nothing is written.
func (w *Wallet) WriteHotkey(name string, kp *keys.Keypair, overwrite bool) error {
	if err := w.checkHotkey(name); err != nil {
		return err
	}
	pub, err := MarshalPublicKeyfile(kp.PublicKey())
	if err != nil {
		return err
	}
	path, pubPath := w.HotkeyPath(name), w.hotkeypubPath(name)
	files := map[string][]byte{path: MarshalKeyfile(kp), pubPath: pub}
	return writeFiles(files, []string{path, pubPath}, overwrite)
}
