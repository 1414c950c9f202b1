package main

import "github.com/spf13/cobra"

func newWeightsCmd(a *app) *cobra.Command { return notBuilt("weights", "Set weights") }
