package docker

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/nicompute/nicompute/internal/market"
)

// ensureImage makes image present locally, pulling it when missing. It
// never builds. Errors: ENOTFOUND (the registry does not have it),
// EUNAVAILABLE (engine down, or the pull failed: no registry access).
func (r *Runtime) ensureImage(ctx context.Context, image string) error {
	ictx, cancel := r.call(ctx)
	_, err := r.cli.ImageInspect(ictx, image)
	cancel()
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return wrap(ictx, "inspect image", "image "+image, err)
	}
	r.log.Info("pulling image", "image", image)
	pctx, cancel := context.WithTimeout(ctx, r.cfg.PullTimeout)
	defer cancel()
	resp, err := r.cli.ImagePull(pctx, image, client.ImagePullOptions{})
	if err == nil {
		err = resp.Wait(pctx)
		resp.Close()
	}
	if err == nil {
		r.log.Info("image pulled", "image", image)
		return nil
	}
	switch {
	case client.IsErrConnectionFailed(err):
		return wrap(pctx, "pull image", "image "+image, err)
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("pull image: %w (%w)", market.Errorf(market.ENOTFOUND, "image %s is not present on this miner and its registry does not have it", image), err)
	default:
		return fmt.Errorf("pull image: %w (%w)", market.Errorf(market.EUNAVAILABLE, "image %s is not present on this miner and could not be pulled", image), err)
	}
}
