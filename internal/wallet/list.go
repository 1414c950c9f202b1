package wallet

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Info describes one wallet for listing. Problems with single keys are
// reported in the Error fields rather than failing the whole listing.
type Info struct {
	Name string `json:"name"`
	// Coldkey is the coldkey's SS58 address, "" when unknown.
	Coldkey string `json:"coldkey,omitempty"`
	// ColdkeyEncrypted reports an encrypted coldkey file.
	ColdkeyEncrypted bool         `json:"coldkey_encrypted"`
	Error            string       `json:"error,omitempty"`
	Hotkeys          []HotkeyInfo `json:"hotkeys"`
}

// HotkeyInfo describes one hotkey of a wallet.
type HotkeyInfo struct {
	Name  string `json:"name"`
	SS58  string `json:"hotkey,omitempty"`
	Error string `json:"error,omitempty"`
}

// List describes the wallets under the wallet path dir, sorted by name: every
// subdirectory holding a coldkey, coldkeypub.txt or a hotkeys directory. A
// missing dir gives an error wrapping fs.ErrNotExist.
func List(dir string) ([]Info, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list wallets: %w", err)
	}
	var out []Info
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || checkName("wallet", name) != nil {
			continue
		}
		w := Open(dir, name)
		if !w.looksLikeWallet() {
			continue
		}
		out = append(out, w.info())
	}
	return out, nil
}

func (w *Wallet) looksLikeWallet() bool {
	for _, p := range []string{w.ColdkeyPath(), w.ColdkeypubPath(), filepath.Join(w.Path(), hotkeysDir)} {
		if _, err := os.Lstat(p); err == nil {
			return true
		}
	}
	return false
}

func (w *Wallet) info() Info {
	in := Info{Name: w.name, Hotkeys: []HotkeyInfo{}}
	if addr, err := w.ColdkeyAddress(); err == nil {
		in.Coldkey = addr
	} else if !errors.Is(err, fs.ErrNotExist) {
		in.Error = err.Error()
	}
	if enc, err := w.ColdkeyEncrypted(); err == nil {
		in.ColdkeyEncrypted = enc
	}
	names, err := w.Hotkeys()
	if err != nil && !errors.Is(err, fs.ErrNotExist) && in.Error == "" {
		in.Error = err.Error()
	}
	for _, h := range names {
		hi := HotkeyInfo{Name: h}
		if addr, err := w.HotkeyAddress(h); err == nil {
			hi.SS58 = addr
		} else {
			hi.Error = err.Error()
		}
		in.Hotkeys = append(in.Hotkeys, hi)
	}
	return in
}

// Hotkeys returns the names of the wallet's hotkeys, sorted: the regular
// files in hotkeys/, less "<name>pub.txt" companions of hotkey <name> and
// hidden (temporary) files.
func (w *Wallet) Hotkeys() ([]string, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(w.Path(), hotkeysDir))
	if err != nil {
		return nil, fmt.Errorf("list hotkeys of wallet %q: %w", w.name, err)
	}
	files := map[string]bool{}
	for _, e := range entries {
		if e.Type().IsRegular() && checkName("hotkey", e.Name()) == nil {
			files[e.Name()] = true
		}
	}
	var names []string
	for n := range files {
		if base, ok := strings.CutSuffix(n, hotkeypubExt); ok && files[base] {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}
