package main

import (
	"fmt"

	"github.com/nicompute/nicompute/internal/keys"
)

// loadHotkey loads the hotkey named by the wallet flags.
func (a *app) loadHotkey(w walletFlags) (*keys.Keypair, error) {
	return nil, fmt.Errorf("wallet %s: loading hotkeys is not available in this build", w.name)
}

// loadColdkey loads (decrypting, with a password prompt when needed) the
// coldkey named by the wallet flags.
func (a *app) loadColdkey(w walletFlags) (*keys.Keypair, error) {
	return nil, fmt.Errorf("wallet %s: loading coldkeys is not available in this build", w.name)
}

// coldkeyAddress returns the SS58 address of the wallet's coldkey from
// coldkeypub.txt, without decrypting anything.
func (a *app) coldkeyAddress(w walletFlags) (string, error) {
	return "", fmt.Errorf("wallet %s: reading coldkeypub.txt is not available in this build", w.name)
}
