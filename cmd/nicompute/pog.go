package main

import "github.com/spf13/cobra"

func newPoGCmd(a *app) *cobra.Command { return notBuilt("pog", "Proof-of-GPU worker") }
