package main

import "github.com/spf13/cobra"

func newDevnetCmd(a *app) *cobra.Command {
	return notBuilt("devnet", "Run a whole subnet on this machine")
}
