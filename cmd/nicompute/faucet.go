package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
)

func newFaucetCmd(a *app) *cobra.Command {
	var sf subtensorFlags
	var w walletFlags
	var amount, address string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "faucet",
		Short: "Credit TAO to the wallet's coldkey (embedded development chain only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			amt, err := subnet.ParseTAO(amount)
			if err != nil {
				return usageErr("--amount: %v", err)
			}
			addr, err := walletAddress(a, w, address)
			if err != nil {
				return err
			}
			ch, err := a.dialLocalOnly(ctx, sf, "wallet faucet")
			if err != nil {
				return err
			}
			defer ch.Close()
			bal, err := ch.Faucet(ctx, addr, amt)
			if err != nil {
				return chainErr("faucet: %w", err)
			}
			if asJSON {
				return a.printJSON(map[string]any{"address": addr, "amount": amt.TAO(), "balance": bal.TAO()})
			}
			fmt.Fprintf(a.Out, "credited %s to %s; balance %s\n", amt, addr, bal)
			return nil
		},
	}
	w.register(cmd.Flags())
	sf.register(cmd.Flags())
	cmd.Flags().StringVar(&amount, "amount", "", "TAO to credit")
	cmd.Flags().StringVar(&address, "address", "", "SS58 address to credit instead of the wallet's coldkey")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print one JSON object: {"address", "amount", "balance"} (TAO)`)
	_ = cmd.MarkFlagRequired("amount")
	return cmd
}

func newWalletBalanceCmd(a *app) *cobra.Command {
	var sf subtensorFlags
	var w walletFlags
	var address string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "balance",
		Short: "Show the free balance of the wallet's coldkey",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			addr, err := walletAddress(a, w, address)
			if err != nil {
				return err
			}
			ch, err := a.dialChain(ctx, sf)
			if err != nil {
				return err
			}
			defer ch.Close()
			bal, err := ch.Balance(ctx, addr)
			if err != nil {
				return chainErr("balance of %s: %w", addr, err)
			}
			if asJSON {
				return a.printJSON(map[string]any{"address": addr, "balance": bal.TAO()})
			}
			fmt.Fprintf(a.Out, "%s: %s\n", addr, bal)
			return nil
		},
	}
	w.register(cmd.Flags())
	sf.register(cmd.Flags())
	cmd.Flags().StringVar(&address, "address", "", "SS58 address to show instead of the wallet's coldkey")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print one JSON object: {"address", "balance"} (TAO)`)
	return cmd
}

// walletAddress is address when given, else the wallet's coldkey address
// (from coldkeypub.txt, without decrypting the coldkey).
func walletAddress(a *app, w walletFlags, address string) (string, error) {
	if address != "" {
		if !keys.ValidSS58(address) {
			return "", usageErr("--address %q is not an SS58 address", address)
		}
		return address, nil
	}
	return a.coldkeyAddress(w)
}
