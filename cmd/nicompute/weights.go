package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/subnet"
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
	var weights []float64
	var versionKey uint64
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Set the wallet hotkey's weights on a subnet",
		Long: `Set the wallet hotkey's weights on a subnet. Weights are relative: they are
max-upscaled to u16 as Bittensor does (the largest becomes 65535, zeros are
dropped). --version-key defaults to the subnet's weights version.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			u, w, err := subnet.ParseUIDWeights(uids, weights)
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
			if err := ch.SetWeights(ctx, hotkey, subnet.NetUID(netuid), upUIDs, upWeights, versionKey); err != nil {
				return chainErr("set weights of %s on subnet %d: %w", hotkey.SS58(), netuid, err)
			}
			if f.asJSON {
				return a.printJSON(map[string]any{"netuid": netuid, "uids": upUIDs, "weights": upWeights, "version_key": versionKey})
			}
			fmt.Fprintf(a.Out, "set weights of %s on subnet %d: uids %v, u16 weights %v (version key %d)\n", hotkey.SS58(), netuid, upUIDs, upWeights, versionKey)
			return nil
		},
	}
	f.register(cmd, `{"netuid", "uids", "weights" (u16 as sent), "version_key"}`)
	netuidFlag(cmd, &netuid)
	cmd.Flags().IntSliceVar(&uids, "uids", nil, "comma-separated uids")
	cmd.Flags().Float64SliceVar(&weights, "weights", nil, "comma-separated weights, one per uid")
	cmd.Flags().Uint64Var(&versionKey, "version-key", 0, "weights version key (default: the subnet's weights version)")
	_ = cmd.MarkFlagRequired("uids")
	_ = cmd.MarkFlagRequired("weights")
	return cmd
}
