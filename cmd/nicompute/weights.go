package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/weights"
)

func newWeightsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "weights",
		Short: "Set weights",
	}
	cmd.AddCommand(newWeightsSetCmd(a))
	return cmd
}

func newWeightsSetCmd(a *app) *cobra.Command {
	var f chainFlags
	var netuid uint16
	var uids []int
	var relWeights []float64
	var versionKey uint64
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Set the wallet hotkey's weights on a subnet",
		Long: `Set the wallet hotkey's weights on a subnet. Weights are relative: they are
max-upscaled to u16 as Bittensor does (the largest becomes 65535, zeros are
dropped). --version-key defaults to the subnet's weights version.

Where the subnet has commit-reveal weights on (every Bittensor subnet by
default), the weights are committed instead: timelock-encrypted to the beacon
round the Bittensor SDK would choose (drand quicknet on Bittensor, the
embedded chain's own beacon there) and submitted with
commit_timelocked_weights; the chain reveals them by itself in the reveal
epoch.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			u, w, err := subnet.ParseUIDWeights(uids, relWeights)
			if err != nil {
				return err
			}
			upUIDs, upWeights, err := subnet.MaxUpscale(u, w)
			if err != nil {
				return err
			}
			hotkey, err := a.loadHotkey(f.w)
			if err != nil {
				return err
			}
			ch, err := a.dialChain(ctx, f.sf)
			if err != nil {
				return err
			}
			defer ch.Close()
			if !cmd.Flags().Changed("version-key") {
				h, err := ch.Hyperparameters(ctx, subnet.NetUID(netuid))
				if err != nil {
					return chainErr("set weights on subnet %d: %w", netuid, err)
				}
				versionKey = h.WeightsVersionKey
			}
			sub := &weights.Submitter{Chain: ch}
			res, err := sub.Submit(ctx, hotkey, subnet.NetUID(netuid), upUIDs, upWeights, versionKey)
			if err != nil {
				return chainErr("%s weights of %s on subnet %d: %w", res.Mode, hotkey.SS58(), netuid, err)
			}
			out := map[string]any{"netuid": netuid, "uids": upUIDs, "weights": upWeights, "version_key": versionKey, "mode": res.Mode}
			if res.Mode == weights.ModeCommit {
				out["reveal_round"], out["reveal_epoch"], out["reveal_block"] = res.Plan.Round, res.Plan.RevealEpoch, res.Plan.RevealBlock
			}
			if f.asJSON {
				return a.printJSON(out)
			}
			if res.Mode == weights.ModeCommit {
				fmt.Fprintf(a.Out, "committed weights of %s on subnet %d for reveal in round %d (epoch %d, from about block %d): uids %v, u16 weights %v (version key %d)\n",
					hotkey.SS58(), netuid, res.Plan.Round, res.Plan.RevealEpoch, res.Plan.RevealBlock, upUIDs, upWeights, versionKey)
				return nil
			}
			fmt.Fprintf(a.Out, "set weights of %s on subnet %d: uids %v, u16 weights %v (version key %d)\n", hotkey.SS58(), netuid, upUIDs, upWeights, versionKey)
			return nil
		},
	}
	f.register(cmd, `{"netuid", "uids", "weights" (u16 as sent), "version_key", "mode" ("set" or "commit"), and for a commit "reveal_round", "reveal_epoch", "reveal_block"}`)
	netuidFlag(cmd, &netuid)
	cmd.Flags().IntSliceVar(&uids, "uids", nil, "comma-separated uids")
	cmd.Flags().Float64SliceVar(&relWeights, "weights", nil, "comma-separated weights, one per uid")
	cmd.Flags().Uint64Var(&versionKey, "version-key", 0, "weights version key (default: the subnet's weights version)")
	_ = cmd.MarkFlagRequired("uids")
	_ = cmd.MarkFlagRequired("weights")
	return cmd
}
