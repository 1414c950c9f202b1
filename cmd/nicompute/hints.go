package main

import (
	"strconv"
	"strings"
)

// Messages that suggest a command print it ready to run: with the flags
// that select the same wallet, chain and subnet as the command that failed
// (whether they came from the command line, the environment or a config
// file), and nothing that is at its default.

// Defaults of the wallet and chain flags.
const (
	defaultWalletPath = "~/.bittensor/wallets"
	defaultWalletName = "default"
	defaultHotkeyName = "default"
	defaultNetwork    = "local"
)

// args renders the wallet flags that differ from their defaults.
func (w walletFlags) args() []string {
	var out []string
	out = appendFlag(out, "wallet.path", w.path, defaultWalletPath)
	out = appendFlag(out, "wallet.name", w.name, defaultWalletName)
	return appendFlag(out, "wallet.hotkey", w.hotkey, defaultHotkeyName)
}

// args renders the chain flags that differ from their defaults.
func (s subtensorFlags) args() []string {
	var out []string
	out = appendFlag(out, "subtensor.network", s.network, defaultNetwork)
	return appendFlag(out, "subtensor.chain_endpoint", s.endpoint, "")
}

func appendFlag(out []string, name, value, def string) []string {
	if value == def {
		return out
	}
	return append(out, "--"+name, shellQuote(value))
}

// commandLine joins a command and its flags into one line to paste into a
// shell.
func commandLine(cmd string, netuid uint16, w walletFlags, s subtensorFlags, extra ...string) string {
	parts := []string{"nicompute", cmd, "--netuid", strconv.Itoa(int(netuid))}
	parts = append(parts, extra...)
	parts = append(parts, w.args()...)
	parts = append(parts, s.args()...)
	return strings.Join(parts, " ")
}

// shellQuote quotes s for a POSIX shell when it holds anything but
// characters that are safe unquoted.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./~_-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
