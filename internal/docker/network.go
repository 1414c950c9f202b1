package docker

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/nicompute/nicompute/internal/market"
)

// iccOption is the bridge driver option that, set to "false", stops
// containers on the network from reaching each other.
const iccOption = "com.docker.network.bridge.enable_icc"

// ensureNetwork creates the lease network if it is missing and checks that
// it isolates containers. It runs before every create (one inspect), so an
// operator pruning networks does not break later leases. It holds r.netMu for
// the whole check.
// Errors: ECONFLICT (a network of that name exists without isolation),
// EUNAVAILABLE.
func (r *Runtime) ensureNetwork(ctx context.Context) error {
	r.netMu.Lock()
	defer r.netMu.Unlock()
	ctx, cancel := r.call(ctx)
	defer cancel()
	name := r.cfg.Network
	res, err := r.cli.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		_, err = r.cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{
			Driver:  "bridge",
			Options: map[string]string{iccOption: "false"},
			Labels:  map[string]string{LabelManaged: "true"},
		})
		if err != nil && !cerrdefs.IsConflict(err) && !cerrdefs.IsAlreadyExists(err) {
			return wrap(ctx, "create network", "network "+name, err)
		}
		// Created here or, concurrently, by another runtime: check it.
		res, err = r.cli.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
		if err == nil {
			r.log.Info("lease network ready", "network", name, "id", shortID(res.Network.ID))
		}
	}
	if err != nil {
		return wrap(ctx, "inspect network", "network "+name, err)
	}
	if err := checkNetwork(res.Network.Network); err != nil {
		return fmt.Errorf("lease network: %w", err)
	}
	return nil
}

// checkNetwork refuses a network that would let tenants reach each other
// or that is not a local bridge.
func checkNetwork(n network.Network) error {
	if n.Driver != "bridge" || n.Options[iccOption] != "false" {
		return market.Errorf(market.ECONFLICT, "network %s exists but is not a bridge with inter-container communication disabled; remove it or configure another network name", n.Name)
	}
	return nil
}
