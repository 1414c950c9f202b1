package main

import "github.com/spf13/cobra"

func newFaucetCmd(a *app) *cobra.Command {
	return notBuilt("faucet", "Credit a coldkey on the embedded chain")
}
