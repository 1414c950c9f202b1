package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
)

func newStakeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stake",
		Short: "Stake TAO to a hotkey",
	}
	cmd.AddCommand(newStakeAddCmd(a))
	return cmd
}

func newStakeAddCmd(a *app) *cobra.Command {
	var f chainFlags
	var netuid uint16
	var amount, hotkeyAddr string
	cmd := &cobra.Command{
		Use:   "add",
		Short: "Stake TAO from the wallet's coldkey to its hotkey (or --hotkey) on a subnet",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			amt, err := subnet.ParseTAO(amount)
			if err != nil {
				return usageErr("--amount: %v", err)
			}
			if amt == 0 {
				return usageErr("--amount must be positive")
			}
			if hotkeyAddr != "" && !keys.ValidSS58(hotkeyAddr) {
				return usageErr("--hotkey %q is not an SS58 address", hotkeyAddr)
			}
			coldkey, err := a.loadColdkey(f.w)
			if err != nil {
				return err
			}
			if hotkeyAddr == "" {
				hk, err := a.loadHotkey(f.w)
				if err != nil {
					return err
				}
				hotkeyAddr = hk.SS58()
			}
			ch, err := a.dialChain(ctx, f.sf)
			if err != nil {
				return err
			}
			defer ch.Close()
			if err := ch.AddStake(ctx, coldkey, subnet.NetUID(netuid), hotkeyAddr, amt); err != nil {
				return chainErr("stake %s to %s on subnet %d: %w", amt, hotkeyAddr, netuid, err)
			}
			// The new total is informative; the stake is in either way.
			var total *float64
			if m, err := ch.Metagraph(ctx, subnet.NetUID(netuid)); err == nil {
				if n, ok := m.ByHotkey(hotkeyAddr); ok {
					v := n.Stake.TAO()
					total = &v
				}
			}
			if f.asJSON {
				return a.printJSON(map[string]any{"netuid": netuid, "hotkey": hotkeyAddr, "amount": amt.TAO(), "stake": total})
			}
			fmt.Fprintf(a.Out, "staked %s to %s on subnet %d", amt, hotkeyAddr, netuid)
			if total != nil {
				fmt.Fprintf(a.Out, "; its stake is now %s", subnet.TAO(*total))
			}
			fmt.Fprintln(a.Out)
			return nil
		},
	}
	f.register(cmd, `{"netuid", "hotkey", "amount", "stake"} (TAO)`)
	netuidFlag(cmd, &netuid)
	cmd.Flags().StringVar(&amount, "amount", "", "TAO to stake")
	cmd.Flags().StringVar(&hotkeyAddr, "hotkey", "", "SS58 address of the hotkey to stake to (default: the wallet's hotkey)")
	_ = cmd.MarkFlagRequired("amount")
	return cmd
}
