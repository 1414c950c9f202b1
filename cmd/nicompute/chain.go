package main

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/chain/local"
	"github.com/nicompute/nicompute/internal/subnet"
)

// genesisFlags are the parameters of a new embedded chain.
type genesisFlags struct {
	burn, fee, emission                                     string
	tempo, maxUIDs, maxValidators, regsPerBlock, minWeights uint16
	immunity, weightsRate, servingRate, activityCutoff      uint64
}

func (g *genesisFlags) register(cmd *cobra.Command) {
	d := local.DefaultGenesis()
	fs := cmd.Flags()
	fs.Uint16Var(&g.tempo, "tempo", d.Tempo, "blocks between epochs of a new subnet")
	fs.Uint64Var(&g.immunity, "immunity-period", d.ImmunityPeriod, "blocks after registration during which a uid cannot be pruned")
	fs.Uint16Var(&g.maxUIDs, "max-uids", d.MaxAllowedUIDs, "uids per subnet; registering on a full subnet prunes the lowest-emission uid")
	fs.Uint64Var(&g.weightsRate, "weights-rate-limit", d.WeightsRateLimit, "blocks a hotkey waits between two set_weights")
	fs.Uint16Var(&g.maxValidators, "max-validators", d.MaxAllowedValidators, "validator permits per subnet (top-k by stake)")
	fs.Uint16Var(&g.regsPerBlock, "registrations-per-block", d.MaxRegistrationsPerBlock, "registrations per subnet and block")
	fs.Uint16Var(&g.minWeights, "min-allowed-weights", d.MinAllowedWeights, "least entries of a weights row")
	fs.Uint64Var(&g.servingRate, "serving-rate-limit", d.ServingRateLimit, "blocks between two serve_axon of a hotkey")
	fs.Uint64Var(&g.activityCutoff, "activity-cutoff", d.ActivityCutoff, "blocks after its last update during which a uid is active")
	fs.StringVar(&g.burn, "burn", d.Burn.String(), "TAO recycled by a registration")
	fs.StringVar(&g.fee, "fee", d.Fee.String(), "TAO fee of each coldkey-paid call (registration, stake, transfer, subnet creation)")
	fs.StringVar(&g.emission, "emission", d.EmissionPerBlock.String(), "TAO emitted per block to each subnet, paid at its epochs")
}

func (g *genesisFlags) genesis() (local.Genesis, error) {
	out := local.DefaultGenesis()
	for _, p := range []struct {
		flag, val string
		dst       *subnet.Balance
	}{{"--burn", g.burn, &out.Burn}, {"--fee", g.fee, &out.Fee}, {"--emission", g.emission, &out.EmissionPerBlock}} {
		v, err := subnet.ParseTAO(p.val)
		if err != nil {
			return out, usageErr("%s: %v", p.flag, err)
		}
		*p.dst = v
	}
	out.Tempo = g.tempo
	out.ImmunityPeriod = g.immunity
	out.MaxAllowedUIDs = g.maxUIDs
	out.WeightsRateLimit = g.weightsRate
	out.MaxAllowedValidators = g.maxValidators
	out.MaxRegistrationsPerBlock = g.regsPerBlock
	out.MinAllowedWeights = g.minWeights
	out.ServingRateLimit = g.servingRate
	out.ActivityCutoff = g.activityCutoff
	return out, nil
}

func newChainCmd(a *app) *cobra.Command {
	var dataDir, listen string
	var blockTime time.Duration
	var g genesisFlags
	var obsFlags observeFlags
	cmd := &cobra.Command{
		Use:   "chain",
		Short: "Run the embedded development chain",
		Long: `Run the embedded development chain: one node with Bittensor's subnet rules
(balances and fees, burned registration with immunity and pruning, stake,
serve_axon, rate-limited weights, a Yuma epoch every tempo) kept in a SQLite
file under --data, so a restart continues where it stopped. Clients reach it
with --subtensor.network local (http://127.0.0.1:9944) or
--subtensor.chain_endpoint http://HOST:PORT.

It is a development chain, not a blockchain: one node, no peers, and a faucet
(nicompute wallet faucet) that mints TAO for anyone who can reach it, so keep
it on a loopback address. The genesis flags apply only when --data holds no
chain yet; an existing chain keeps its parameters.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			gen, err := g.genesis()
			if err != nil {
				return err
			}
			dir, err := expandHome(dataDir)
			if err != nil {
				return err
			}
			log := a.logger()
			if host, _, err := net.SplitHostPort(listen); err == nil {
				if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
					log.Warn("the embedded chain listens beyond loopback: anyone who reaches it can use its faucet", "listen", listen)
				}
			}
			ctx := cmd.Context()
			obs, err := a.startObserver("chain", obsFlags)
			if err != nil {
				return err
			}
			defer obs.Close()
			node, err := local.Open(ctx, local.Config{DataDir: dir, Listen: listen, BlockTime: blockTime, Genesis: &gen, Log: log, Metrics: obs.registerer()})
			if err != nil {
				return err
			}
			if err := a.publish(obs, obsFlags); err != nil {
				return errors.Join(err, node.Close())
			}
			fmt.Fprintf(a.Out, "embedded chain at %s (data %s, block %d)\n", node.Endpoint(), dir, node.Head())
			// Runs until a signal or the node's own end, speaking sd_notify.
			if err := a.lifecycle(ctx, "chain", node, nil, updateFlags{}, nil); err != nil {
				return fmt.Errorf("close chain: %w", err)
			}
			if stopErr := node.Err(); stopErr != nil {
				return fmt.Errorf("chain stopped: %w", stopErr)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dataDir, "data", "~/.nicompute/chain", "directory of the chain file (chain.db)")
	fs.StringVar(&listen, "chain.listen", "127.0.0.1:9944", "address of the HTTP endpoint")
	fs.DurationVar(&blockTime, "block-time", 12*time.Second, "time between blocks (0: blocks only when sealed by tests)")
	g.register(cmd)
	obsFlags.register(fs, false)
	return cmd
}
