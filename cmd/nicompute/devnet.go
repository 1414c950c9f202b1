package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/nicompute/nicompute/internal/chain/local"
	"github.com/nicompute/nicompute/internal/devnet"
)

// devnetOptions are the devnet command's flags.
type devnetOptions struct {
	dataDir   string
	listen    string
	blockTime time.Duration
	tempo     uint16
	miners    int
}

func newDevnetCmd(a *app) *cobra.Command {
	var o devnetOptions
	cmd := &cobra.Command{
		Use:   "devnet",
		Short: "Run a whole development subnet on this machine",
		Long: `Run a whole development subnet on this machine: an embedded chain with fast
blocks, a subnet, and wallets for its owner, a validator (staked for a
validator permit) and --miners miners, all registered. State lives under
--data; running devnet again on the same directory reuses the chain, the
wallets and the registrations. It runs until interrupted (Ctrl-C), then
stops cleanly.

The chain is a development chain: its faucet mints TAO for anyone who can
reach --chain.listen, so keep it on a loopback address.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runDevnet(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data", ".devnet", "directory holding the devnet's chain, wallets and service state")
	f.StringVar(&o.listen, "chain.listen", "127.0.0.1:9944", "address the embedded chain listens on")
	f.DurationVar(&o.blockTime, "block-time", time.Second, "time between blocks")
	f.Uint16Var(&o.tempo, "tempo", 20, "blocks between epochs of the devnet subnet (when it is created)")
	f.IntVar(&o.miners, "miners", 3, "number of miners")
	return cmd
}

func (a *app) runDevnet(ctx context.Context, o devnetOptions) error {
	if o.miners < 0 || o.miners > 200 {
		return usageErr("--miners must be between 0 and 200")
	}
	if o.blockTime < 10*time.Millisecond {
		return usageErr("--block-time must be at least 10ms")
	}
	if o.tempo == 0 {
		return usageErr("--tempo must be at least 1")
	}
	dir, err := expandHome(o.dataDir)
	if err != nil {
		return err
	}
	paths := devnet.PathsOf(dir)
	log := a.logger()

	genesis := devnet.Genesis(o.tempo)
	node, err := local.Open(ctx, local.Config{
		DataDir: paths.Chain, Listen: o.listen, BlockTime: o.blockTime, Genesis: &genesis, Log: log.With("component", "chain"),
	})
	if err != nil {
		return fmt.Errorf("start the embedded chain: %w", err)
	}
	defer node.Close()
	client, err := local.Dial(ctx, node.Endpoint())
	if err != nil {
		return fmt.Errorf("connect to the embedded chain: %w", err)
	}
	defer client.Close()

	opts := devnet.Options{WalletDir: paths.Wallets, Miners: o.miners, Tempo: o.tempo}
	p := a.newProgress(devnet.Steps(opts), "devnet")
	opts.Progress = p.step
	layout, err := devnet.Bootstrap(ctx, client, opts)
	p.finish()
	if err != nil {
		return err
	}

	m, err := client.Metagraph(ctx, layout.NetUID)
	if err != nil {
		return fmt.Errorf("metagraph: %w", err)
	}
	if err := printMetagraph(a.Out, m); err != nil {
		return err
	}
	a.printDevnetLayout(node, paths, layout)

	select {
	case <-ctx.Done():
		fmt.Fprintln(a.Err, "devnet: stopping")
	case <-node.Done():
		if err := node.Err(); err != nil {
			return fmt.Errorf("embedded chain stopped: %w", err)
		}
	}
	return nil
}

func (a *app) printDevnetLayout(node *local.Node, paths devnet.Paths, l *devnet.Layout) {
	fmt.Fprintf(a.Out, "\ndevnet is running (Ctrl-C stops it)\n")
	tw := tabwriter.NewWriter(a.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  chain\t%s (data %s)\n", node.Endpoint(), paths.Chain)
	fmt.Fprintf(tw, "  subnet\tnetuid %d\n", l.NetUID)
	fmt.Fprintf(tw, "  wallets\t%s (no passwords; hotkey %q)\n", paths.Wallets, devnet.HotkeyName)
	fmt.Fprintf(tw, "  owner\t%s coldkey %s\n", l.Owner.Wallet, l.Owner.Coldkey.SS58())
	fmt.Fprintf(tw, "  validator\t%s uid %d hotkey %s\n", l.Validator.Wallet, l.Validator.UID, l.Validator.Hotkey.SS58())
	for _, mi := range l.Miners {
		fmt.Fprintf(tw, "  miner\t%s uid %d hotkey %s\n", mi.Wallet, mi.UID, mi.Hotkey.SS58())
	}
	tw.Flush()
	fmt.Fprintf(a.Out, "\ntry:\n  nicompute subnet metagraph --netuid %d --subtensor.chain_endpoint %s\n", l.NetUID, node.Endpoint())
	fmt.Fprintf(a.Out, "  nicompute wallet show --wallet.path %s --wallet.name %s --json\n", paths.Wallets, l.Validator.Wallet)
}

// progress shows the steps of a start-up: a bar on a terminal, one line
// per step otherwise.
type progress struct {
	bar  *progressbar.ProgressBar
	out  io.Writer
	name string
}

func (a *app) newProgress(total int, name string) *progress {
	p := &progress{out: a.Err, name: name}
	if f, ok := a.Err.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(a.Err),
			progressbar.OptionSetDescription(name),
			progressbar.OptionShowCount(),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetWidth(30),
		)
	}
	return p
}

func (p *progress) step(what string) {
	if p.bar == nil {
		fmt.Fprintf(p.out, "%s: %s\n", p.name, what)
		return
	}
	p.bar.Describe(p.name + ": " + what)
	_ = p.bar.Add(1)
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
