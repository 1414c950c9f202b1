package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/wallet"
)

func newWalletCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "wallet",
		Short: "Create, restore and show Bittensor-compatible wallets",
		Long: `Create, restore and show Bittensor-compatible wallets.

Wallets live under --wallet.path (default ~/.bittensor/wallets) in Bittensor's
layout: <name>/coldkey (encrypted unless --no-password), <name>/coldkeypub.txt
and <name>/hotkeys/<hotkey>; btcli and nicompute read each other's files.

A coldkey password is read from --password-file, else from the environment
variable ` + passwordEnv + ` (meant for automation), else from a
prompt on the terminal, else from the first line of stdin. Passwords are never
taken as command-line arguments.`,
	}
	cmd.AddCommand(
		newWalletNewColdkeyCmd(a),
		newWalletNewHotkeyCmd(a),
		newWalletRegenColdkeyCmd(a),
		newWalletRegenHotkeyCmd(a),
		newWalletRegenColdkeypubCmd(a),
		newWalletShowCmd(a),
		newWalletListCmd(a),
	)
	return cmd
}

// explainExists adds the flag to use when a file already exists.
func explainExists(err error) error {
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w (use --overwrite to replace it)", err)
	}
	return err
}

// coldkeyOpts are the flags of commands that write a coldkey.
type coldkeyOpts struct {
	noPassword   bool
	passwordFile string
	overwrite    bool
}

func (o *coldkeyOpts) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.noPassword, "no-password", false, "store the coldkey unencrypted")
	cmd.Flags().StringVar(&o.passwordFile, "password-file", "", "read the coldkey password from the first line of this file")
	cmd.Flags().BoolVar(&o.overwrite, "overwrite", false, "replace existing key files")
}

// writeColdkey asks for a password (unless --no-password) and writes the
// coldkey and coldkeypub.txt, refusing existing files before asking.
func (a *app) writeColdkey(w walletFlags, o coldkeyOpts, kp *keys.Keypair) error {
	wal, err := a.openWallet(w)
	if err != nil {
		return err
	}
	if o.noPassword && o.passwordFile != "" {
		return usageErr("--no-password and --password-file exclude each other")
	}
	if !o.overwrite {
		// Refuse before prompting or deriving the (slow) encryption key.
		if err := wal.CheckNewColdkey(); err != nil {
			return explainExists(err)
		}
	}
	var pw []byte
	if !o.noPassword {
		if pw, err = a.readPassword(passwordSource{file: o.passwordFile, confirm: true},
			fmt.Sprintf("Password to encrypt coldkey %s: ", w.name)); err != nil {
			return fmt.Errorf("%w (or use --no-password to store the coldkey unencrypted)", err)
		}
	}
	return explainExists(wal.WriteColdkey(kp, pw, o.overwrite))
}

// freshKey makes a key from a new mnemonic of the given length.
func freshKey(words int) (string, *keys.Keypair, error) {
	mnemonic, err := keys.NewMnemonic(words)
	if err != nil {
		return "", nil, usageErr("--n-words: %v", err)
	}
	kp, err := keys.FromMnemonic(mnemonic, "")
	return mnemonic, kp, err
}

// printNewKey reports a key made by freshKey: its address and, once, its
// mnemonic. kind is "coldkey" or "hotkey"; label names the key's file.
func (a *app) printNewKey(kind, label string, kp *keys.Keypair, mnemonic string, asJSON bool) error {
	if asJSON {
		return a.printJSON(map[string]string{kind: kp.SS58(), "mnemonic": mnemonic})
	}
	fmt.Fprintf(a.Out, "The mnemonic of the new %s is:\n\n    %s\n\n", kind, mnemonic)
	fmt.Fprintln(a.Out, "Write it down and keep it secret: it is shown only once and is the only way to restore the key.")
	fmt.Fprintf(a.Out, "%s %s: %s\n", kind, label, kp.SS58())
	return nil
}

func newWalletNewColdkeyCmd(a *app) *cobra.Command {
	var w walletFlags
	var o coldkeyOpts
	var words int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "new-coldkey",
		Short: "Create a coldkey from a fresh mnemonic (printed once)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			mnemonic, kp, err := freshKey(words)
			if err != nil {
				return err
			}
			if err := a.writeColdkey(w, o, kp); err != nil {
				return err
			}
			return a.printNewKey("coldkey", w.name, kp, mnemonic, asJSON)
		},
	}
	w.register(cmd.Flags())
	o.register(cmd)
	cmd.Flags().IntVar(&words, "n-words", 12, "mnemonic length: 12, 15, 18, 21 or 24 words")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"coldkey": address, "mnemonic": phrase}`)
	return cmd
}

func newWalletNewHotkeyCmd(a *app) *cobra.Command {
	var w walletFlags
	var words int
	var overwrite, asJSON bool
	cmd := &cobra.Command{
		Use:   "new-hotkey",
		Short: "Create a hotkey from a fresh mnemonic (printed once)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			mnemonic, kp, err := freshKey(words)
			if err != nil {
				return err
			}
			wal, err := a.openWallet(w)
			if err != nil {
				return err
			}
			if err := wal.WriteHotkey(w.hotkey, kp, overwrite); err != nil {
				return explainExists(err)
			}
			return a.printNewKey("hotkey", w.name+"/"+w.hotkey, kp, mnemonic, asJSON)
		},
	}
	w.register(cmd.Flags())
	cmd.Flags().IntVar(&words, "n-words", 12, "mnemonic length: 12, 15, 18, 21 or 24 words")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace an existing hotkey file")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"hotkey": address, "mnemonic": phrase}`)
	return cmd
}

// secretOpts are the ways to give an existing key.
type secretOpts struct {
	mnemonic, seed, uri string
}

func (s *secretOpts) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.mnemonic, "mnemonic", "", `BIP-39 mnemonic (12–24 words, quoted), or "-" to read it from the first line of stdin`)
	cmd.Flags().StringVar(&s.seed, "seed", "", `32-byte seed (mini secret) as 0x-prefixed hex, or "-" for stdin`)
	cmd.Flags().StringVar(&s.uri, "uri", "", `Substrate secret URI, e.g. //Alice or "<mnemonic>//hard/soft", or "-" for stdin`)
}

// keypair derives the key from the one secret given. A value of "-" is read
// from a line of stdin, which keeps real secrets out of the process list;
// a coldkey password, if also read from stdin, is the next line.
func (s secretOpts) keypair(a *app) (*keys.Keypair, error) {
	n := 0
	for _, v := range []string{s.mnemonic, s.seed, s.uri} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return nil, usageErr("give exactly one of --mnemonic, --seed or --uri")
	}
	for _, v := range []*string{&s.mnemonic, &s.seed, &s.uri} {
		if *v != "-" {
			continue
		}
		if a.In == nil {
			return nil, errors.New("no stdin to read the secret from")
		}
		line, err := readSecretLine(a.In)
		if err != nil {
			return nil, fmt.Errorf("read the secret from stdin: %w", err)
		}
		if *v = strings.TrimSpace(string(line)); *v == "" {
			return nil, errors.New("empty secret on stdin")
		}
	}
	switch {
	case s.mnemonic != "":
		return keys.FromMnemonic(s.mnemonic, "")
	case s.seed != "":
		if !strings.HasPrefix(strings.TrimSpace(s.seed), "0x") {
			return nil, errors.New("--seed must be 0x-prefixed hex")
		}
		return keys.FromSeedHex(s.seed)
	default:
		return keys.FromURI(s.uri)
	}
}

func newWalletRegenColdkeyCmd(a *app) *cobra.Command {
	var w walletFlags
	var o coldkeyOpts
	var s secretOpts
	cmd := &cobra.Command{
		Use:   "regen-coldkey",
		Short: "Restore a coldkey from its mnemonic, seed or secret URI",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			kp, err := s.keypair(a)
			if err != nil {
				return err
			}
			if err := a.writeColdkey(w, o, kp); err != nil {
				return err
			}
			fmt.Fprintf(a.Out, "coldkey %s: %s\n", w.name, kp.SS58())
			return nil
		},
	}
	w.register(cmd.Flags())
	o.register(cmd)
	s.register(cmd)
	return cmd
}

func newWalletRegenHotkeyCmd(a *app) *cobra.Command {
	var w walletFlags
	var s secretOpts
	var overwrite bool
	cmd := &cobra.Command{
		Use:   "regen-hotkey",
		Short: "Restore a hotkey from its mnemonic, seed or secret URI",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			kp, err := s.keypair(a)
			if err != nil {
				return err
			}
			wal, err := a.openWallet(w)
			if err != nil {
				return err
			}
			if err := wal.WriteHotkey(w.hotkey, kp, overwrite); err != nil {
				return explainExists(err)
			}
			fmt.Fprintf(a.Out, "hotkey %s/%s: %s\n", w.name, w.hotkey, kp.SS58())
			return nil
		},
	}
	w.register(cmd.Flags())
	s.register(cmd)
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace an existing hotkey file")
	return cmd
}

func newWalletRegenColdkeypubCmd(a *app) *cobra.Command {
	var w walletFlags
	var ss58, pubHex string
	var overwrite bool
	cmd := &cobra.Command{
		Use:   "regen-coldkeypub",
		Short: "Write coldkeypub.txt from an SS58 address or a public key",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if (ss58 == "") == (pubHex == "") {
				return usageErr("give exactly one of --ss58 or --public-key")
			}
			var pub []byte
			var err error
			if ss58 != "" {
				pub, err = keys.PublicKeyFromSS58(strings.TrimSpace(ss58))
			} else {
				pub, err = parsePublicKeyHex(pubHex)
			}
			if err != nil {
				return err
			}
			wal, err := a.openWallet(w)
			if err != nil {
				return err
			}
			if err := wal.WriteColdkeypub(pub, overwrite); err != nil {
				return explainExists(err)
			}
			fmt.Fprintf(a.Out, "coldkeypub %s: %s\n", w.name, keys.SS58Encode(pub))
			return nil
		},
	}
	w.register(cmd.Flags())
	cmd.Flags().StringVar(&ss58, "ss58", "", "coldkey SS58 address")
	cmd.Flags().StringVar(&pubHex, "public-key", "", "coldkey public key as 0x-prefixed hex (32 bytes)")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace an existing coldkeypub.txt")
	return cmd
}

func parsePublicKeyHex(s string) ([]byte, error) {
	h, ok := strings.CutPrefix(strings.TrimSpace(s), "0x")
	b, err := hex.DecodeString(h)
	if !ok || err != nil || len(b) != keys.PublicKeyLen {
		return nil, fmt.Errorf("--public-key must be 0x and %d hex digits", 2*keys.PublicKeyLen)
	}
	return b, nil
}

func newWalletShowCmd(a *app) *cobra.Command {
	var w walletFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show the coldkey and hotkey addresses of a wallet (no password needed)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			wal, err := a.openWallet(w)
			if err != nil {
				return err
			}
			cold, err := wal.ColdkeyAddress()
			if err != nil {
				return err
			}
			hot, err := wal.HotkeyAddress(w.hotkey)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(map[string]string{"coldkey": cold, "hotkey": hot})
			}
			fmt.Fprintf(a.Out, "coldkey %s: %s\nhotkey  %s/%s: %s\n", w.name, cold, w.name, w.hotkey, hot)
			return nil
		},
	}
	w.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"coldkey": address, "hotkey": address}`)
	return cmd
}

func newWalletListCmd(a *app) *cobra.Command {
	var w walletFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the wallets under --wallet.path with their hotkeys and addresses",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			dir, err := w.dir()
			if err != nil {
				return err
			}
			infos, err := wallet.List(dir)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if infos == nil {
				infos = []wallet.Info{}
			}
			if asJSON {
				return a.printJSON(infos)
			}
			if len(infos) == 0 {
				fmt.Fprintf(a.Out, "no wallets in %s\n", dir)
				return nil
			}
			tw := tabwriter.NewWriter(a.Out, 0, 4, 2, ' ', 0)
			for _, in := range infos {
				addr := in.Coldkey
				if addr == "" {
					addr = "?"
				}
				note := ""
				if in.Error != "" {
					note = "  (" + in.Error + ")"
				}
				fmt.Fprintf(tw, "%s\t%s%s\n", in.Name, addr, note)
				for _, h := range in.Hotkeys {
					addr := h.SS58
					if h.Error != "" {
						addr = "? (" + h.Error + ")"
					}
					fmt.Fprintf(tw, "  └ %s\t%s\n", h.Name, addr)
				}
			}
			return tw.Flush()
		},
	}
	w.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
