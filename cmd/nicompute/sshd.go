package main

import "github.com/spf13/cobra"

func newSSHDCmd(a *app) *cobra.Command {
	return notBuilt("sshd", "SSH server run inside rented containers")
}
