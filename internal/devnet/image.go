package devnet

import (
	"context"
	"debug/elf"
	"fmt"

	"github.com/moby/moby/client"

	"github.com/nicompute/nicompute/internal/scratch"
)

// BaseImageRepo is the repository of the devnet's lease base image.
const BaseImageRepo = "nicompute-devnet"

// Network is the bridge network of devnet lease containers (the miners'
// runtime creates it with inter-container communication disabled).
const Network = "nicompute-devnet"

// BuildBaseImage builds, unless it exists, the image devnet miners run
// leases on: a scratch image with busybox (see scratch.Image). Nothing is
// pulled: no registry is needed. The miners bind-mount nicompute into it
// as for any image. host is the engine address (empty: DOCKER_HOST or the
// default socket). Errors wrap scratch.ErrNoBusybox when busybox is
// missing.
func BuildBaseImage(ctx context.Context, host string) (string, error) {
	opts := []client.Opt{client.FromEnv}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	cli, err := client.New(opts...)
	if err != nil {
		return "", fmt.Errorf("docker engine: %w", err)
	}
	defer cli.Close()
	return scratch.Build(ctx, cli, scratch.Image{Repo: BaseImageRepo, Labels: map[string]string{"nicompute.devnet": "true"}})
}

// CheckStatic refuses a binary that needs a dynamic loader: lease images
// such as the busybox one have no C library, and the binary runs there as
// the SSH server and the Proof-of-GPU worker.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s is not an ELF executable: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; lease containers need a static nicompute (build it with CGO_ENABLED=0) — pass one with --binary", path)
		}
	}
	return nil
}
