// Command nicompute is the single binary of the NI Compute GPU market: wallet
// and chain tools, the embedded development chain, the miner, the validator,
// the renter CLI, the SSH server injected into rented containers, the
// Proof-of-GPU worker, and devnet, which runs a whole subnet on one machine.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
