package main

import "github.com/spf13/cobra"

func newStakeCmd(a *app) *cobra.Command { return notBuilt("stake", "Stake TAO to a hotkey") }
