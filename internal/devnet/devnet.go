// Package devnet sets up a whole development subnet on the embedded chain:
// wallets for an owner, a validator and N miners (unencrypted, under the
// devnet's data directory), funds from the faucet, a subnet, registrations,
// and the validator's stake. Every step checks what already exists first,
// so running it again on the same data directory reuses everything.
package devnet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/nicompute/nicompute/internal/chain/local"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/wallet"
)

// HotkeyName is the hotkey every devnet wallet uses.
const HotkeyName = "default"

// Wallet names.
const (
	OwnerWallet     = "devnet-owner"
	ValidatorWallet = "devnet-validator"
)

// MinerWallet is the wallet name of miner i.
func MinerWallet(i int) string { return fmt.Sprintf("devnet-miner-%d", i) }

// Funding and stake targets. Registration burns 1 τ plus a fee; an account
// holding less than lowFunds is topped up to topUp.
var (
	lowFunds = subnet.TAO(10)
	topUp    = subnet.TAO(100)
	// ValidatorStake is well above the 1,024 τ that miners require of a
	// validator.
	ValidatorStake = subnet.TAO(10_000)
)

// Options describe the subnet to set up.
type Options struct {
	// WalletDir holds the devnet wallets.
	WalletDir string
	// Miners is the number of miner identities.
	Miners int
	// Tempo of the subnet when it is created.
	Tempo uint16
	// Progress, when set, is called before each step.
	Progress func(step string)
}

// Identity is one devnet neuron.
type Identity struct {
	Wallet  string
	Coldkey *keys.Keypair
	Hotkey  *keys.Keypair
	UID     subnet.UID
}

// Layout is what Bootstrap set up.
type Layout struct {
	NetUID    subnet.NetUID
	WalletDir string
	Owner     Identity
	Validator Identity
	Miners    []Identity
}

// Steps returns the number of Progress calls Bootstrap makes for opts.
func Steps(opts Options) int { return 4 + 2*opts.Miners + 3 }

// Bootstrap creates (or reuses) wallets, funds them, creates (or reuses) the
// owner's subnet, registers the validator and the miners, and stakes to the
// validator. It waits for one block after the last registration so that
// weights set afterwards count for every miner.
func Bootstrap(ctx context.Context, c *local.Client, opts Options) (*Layout, error) {
	if opts.Miners < 0 {
		return nil, fmt.Errorf("devnet: negative miner count %d", opts.Miners)
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(string) {}
	}
	l := &Layout{WalletDir: opts.WalletDir}
	var err error

	progress("wallets")
	if l.Owner, err = ensureIdentity(opts.WalletDir, OwnerWallet); err != nil {
		return nil, err
	}
	if l.Validator, err = ensureIdentity(opts.WalletDir, ValidatorWallet); err != nil {
		return nil, err
	}
	for i := range opts.Miners {
		id, err := ensureIdentity(opts.WalletDir, MinerWallet(i))
		if err != nil {
			return nil, err
		}
		l.Miners = append(l.Miners, id)
	}

	progress("funding the owner and the validator")
	if err := ensureFunds(ctx, c, l.Owner.Coldkey.SS58(), lowFunds, topUp); err != nil {
		return nil, err
	}
	if err := ensureFunds(ctx, c, l.Validator.Coldkey.SS58(), lowFunds, topUp); err != nil {
		return nil, err
	}

	progress("subnet")
	if l.NetUID, err = ensureSubnet(ctx, c, l.Owner.Coldkey, opts.Tempo); err != nil {
		return nil, err
	}

	progress("registering the validator")
	if l.Validator.UID, err = ensureRegistered(ctx, c, l.NetUID, l.Validator); err != nil {
		return nil, err
	}
	for i := range l.Miners {
		progress(fmt.Sprintf("funding miner %d", i))
		if err := ensureFunds(ctx, c, l.Miners[i].Coldkey.SS58(), lowFunds, topUp); err != nil {
			return nil, err
		}
		progress(fmt.Sprintf("registering miner %d", i))
		if l.Miners[i].UID, err = ensureRegistered(ctx, c, l.NetUID, l.Miners[i]); err != nil {
			return nil, err
		}
	}

	progress("staking to the validator")
	if err := ensureStake(ctx, c, l.NetUID, l.Validator, ValidatorStake); err != nil {
		return nil, err
	}

	progress("waiting for the next block")
	head, err := c.CurrentBlock(ctx)
	if err != nil {
		return nil, fmt.Errorf("devnet: %w", err)
	}
	if _, err := c.WaitForBlock(ctx, head+1); err != nil {
		return nil, fmt.Errorf("devnet: wait for block %d: %w", head+1, err)
	}
	progress("done")
	return l, nil
}

// ensureIdentity loads wallet name or creates it with fresh keys and no
// password (devnet wallets hold only devnet TAO).
func ensureIdentity(dir, name string) (Identity, error) {
	w := wallet.Open(dir, name)
	id := Identity{Wallet: name}
	cold, err := w.Coldkey(nil)
	switch {
	case err == nil:
		id.Coldkey = cold
	case errors.Is(err, fs.ErrNotExist):
		if id.Coldkey, err = newKey(); err != nil {
			return id, err
		}
		if err := w.WriteColdkey(id.Coldkey, nil, false); err != nil {
			return id, fmt.Errorf("devnet: create wallet %s: %w", name, err)
		}
	default:
		return id, fmt.Errorf("devnet: open wallet %s: %w", name, err)
	}
	hot, err := w.Hotkey(HotkeyName)
	switch {
	case err == nil:
		id.Hotkey = hot
	case errors.Is(err, fs.ErrNotExist):
		if id.Hotkey, err = newKey(); err != nil {
			return id, err
		}
		if err := w.WriteHotkey(HotkeyName, id.Hotkey, false); err != nil {
			return id, fmt.Errorf("devnet: create hotkey of %s: %w", name, err)
		}
	default:
		return id, fmt.Errorf("devnet: open hotkey of %s: %w", name, err)
	}
	return id, nil
}

func newKey() (*keys.Keypair, error) {
	m, err := keys.NewMnemonic(12)
	if err != nil {
		return nil, err
	}
	return keys.FromMnemonic(m, "")
}

// ensureFunds tops addr up to target when it holds less than low, so
// repeated runs do not mint again for the fees earlier runs paid.
func ensureFunds(ctx context.Context, c *local.Client, addr string, low, target subnet.Balance) error {
	have, err := c.Balance(ctx, addr)
	if err != nil {
		return fmt.Errorf("devnet: balance of %s: %w", addr, err)
	}
	if have >= low {
		return nil
	}
	if _, err := c.Faucet(ctx, addr, target-have); err != nil {
		return fmt.Errorf("devnet: faucet to %s: %w", addr, err)
	}
	return nil
}

// ensureSubnet returns the owner's first subnet, creating it when the owner
// has none.
func ensureSubnet(ctx context.Context, c *local.Client, owner *keys.Keypair, tempo uint16) (subnet.NetUID, error) {
	nets, err := c.Subnets(ctx)
	if err != nil {
		return 0, fmt.Errorf("devnet: list subnets: %w", err)
	}
	for _, n := range nets {
		if n.Owner == owner.SS58() {
			return n.NetUID, nil
		}
	}
	netuid, err := c.CreateSubnet(ctx, owner, tempo)
	if err != nil {
		return 0, fmt.Errorf("devnet: create subnet: %w", err)
	}
	return netuid, nil
}

// ensureRegistered registers id's hotkey unless it already is, retrying in
// the next block when the chain's registrations-per-block limit is reached.
func ensureRegistered(ctx context.Context, c *local.Client, netuid subnet.NetUID, id Identity) (subnet.UID, error) {
	for attempt := 0; ; attempt++ {
		if uid, ok, err := c.UIDForHotkey(ctx, netuid, id.Hotkey.SS58()); err != nil {
			return 0, fmt.Errorf("devnet: look up %s: %w", id.Wallet, err)
		} else if ok {
			return uid, nil
		}
		uid, err := c.BurnedRegister(ctx, id.Coldkey, netuid, id.Hotkey.SS58())
		switch subnet.ErrorCode(err) {
		case "", subnet.EALREADY:
			return uid, nil
		case subnet.ERATELIMITED:
			if attempt >= 20 {
				return 0, fmt.Errorf("devnet: register %s: %w", id.Wallet, err)
			}
			head, herr := c.CurrentBlock(ctx)
			if herr != nil {
				return 0, fmt.Errorf("devnet: register %s: %w", id.Wallet, herr)
			}
			if _, werr := c.WaitForBlock(ctx, head+1); werr != nil {
				return 0, fmt.Errorf("devnet: register %s: %w", id.Wallet, werr)
			}
		default:
			return 0, fmt.Errorf("devnet: register %s: %w", id.Wallet, err)
		}
	}
}

func ensureStake(ctx context.Context, c *local.Client, netuid subnet.NetUID, id Identity, want subnet.Balance) error {
	n, err := c.Neuron(ctx, netuid, id.Hotkey.SS58())
	if err != nil {
		return fmt.Errorf("devnet: neuron of %s: %w", id.Wallet, err)
	}
	if n.Stake >= want {
		return nil
	}
	need := want - n.Stake
	if err := ensureFunds(ctx, c, id.Coldkey.SS58(), need+lowFunds, need+topUp); err != nil {
		return err
	}
	if err := c.AddStake(ctx, id.Coldkey, netuid, id.Hotkey.SS58(), want-n.Stake); err != nil {
		return fmt.Errorf("devnet: stake to %s: %w", id.Wallet, err)
	}
	return nil
}

// Paths of a devnet data directory.
type Paths struct {
	Root, Chain, Wallets, Miners, Validator, API string
	// Endpoints is the JSON file naming every URL the devnet serves
	// (EndpointsFile in Root).
	Endpoints string
	// AdminToken holds an admin token of the allocation API (0600).
	AdminToken string
}

// PathsOf returns the layout of data directory root.
func PathsOf(root string) Paths {
	return Paths{
		Root:       root,
		Chain:      filepath.Join(root, "chain"),
		Wallets:    filepath.Join(root, "wallets"),
		Miners:     filepath.Join(root, "miners"),
		Validator:  filepath.Join(root, "validator"),
		API:        filepath.Join(root, "api"),
		Endpoints:  filepath.Join(root, EndpointsFile),
		AdminToken: filepath.Join(root, "api", "admin.token"),
	}
}

// Genesis is the embedded chain's genesis for a devnet: fast registration,
// the given tempo, weights allowed twice per tempo, and no serve_axon rate
// limit (devnet miners serve again whenever a restart moves their axon).
func Genesis(tempo uint16) local.Genesis {
	g := local.DefaultGenesis()
	g.Tempo = tempo
	g.MaxRegistrationsPerBlock = 64
	g.WeightsRateLimit = uint64(max(tempo/2, 1))
	g.ServingRateLimit = 0
	return g
}

// Intervals are the validator's schedule in a devnet, scaled to the tempo
// so that tests, weights and consensus all happen within a few tempos: a
// sweep every 5 tempos, weights as often as the rate limit allows.
func Intervals(tempo uint16) (pog, weights uint64) {
	t := uint64(max(tempo, 1))
	return 5 * t, max(t/2, 1)
}
