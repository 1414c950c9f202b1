package main

import "github.com/spf13/cobra"

func newSubnetCmd(a *app) *cobra.Command {
	return notBuilt("subnet", "Create, register on and inspect subnets")
}
