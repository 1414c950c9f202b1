package main

import "github.com/spf13/cobra"

func newChainCmd(a *app) *cobra.Command {
	return notBuilt("chain", "Run the embedded development chain")
}
