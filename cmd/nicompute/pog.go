package main

import (
	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/pog/pogcmd"
)

// newPoGCmd is the Proof-of-GPU worker with the cpu and sim backends; the
// CUDA backend lives in the separate nicompute-pog binary so this one stays
// static (see internal/pog/pogcmd).
func newPoGCmd(a *app) *cobra.Command {
	return pogcmd.New("pog", pogcmd.Options{In: a.In, Out: a.Out, Err: a.Err, Log: a.logger})
}
