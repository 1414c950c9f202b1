package main

import "github.com/spf13/cobra"

func newWalletCmd(a *app) *cobra.Command {
	return notBuilt("wallet", "Create, restore and show Bittensor-compatible wallets")
}
