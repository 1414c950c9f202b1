package docker

import (
	"context"
	"fmt"
	"net/netip"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/nicompute/nicompute/internal/market"
)

// iccOption is the bridge driver option that, set to "false", stops
// containers on the network from reaching each other.
const iccOption = "com.docker.network.bridge.enable_icc"

// ensureNetwork creates the lease network if it is missing and checks that
// it isolates containers. It runs before every create (one list call), so an
// operator pruning networks does not break later leases. It holds r.netMu for
// the whole check.
//
// Engines older than API 1.44 do not refuse a second network with the same
// name, so runtimes (several miners on one engine, or miners in separate
// processes) that create the network at the same moment can make several.
// Every runtime then keeps the same one — the oldest, ties broken by id —
// and removes the others, which were created a moment ago and hold no
// containers. It returns the kept network, whose id containers attach to,
// so a duplicate that cannot be removed (another process attached a
// container to it first) is left alone and logged without breaking leases.
// Errors: ECONFLICT (the network exists without isolation), EUNAVAILABLE.
func (r *Runtime) ensureNetwork(ctx context.Context) (network.Network, error) {
	r.netMu.Lock()
	defer r.netMu.Unlock()
	ctx, cancel := r.call(ctx)
	defer cancel()
	name := r.cfg.Network
	nets, err := r.networksNamed(ctx, name)
	if err != nil {
		return network.Network{}, wrap(ctx, "list networks", "network "+name, err)
	}
	if len(nets) == 0 {
		_, err = r.cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{
			Driver:  "bridge",
			Options: map[string]string{iccOption: "false"},
			Labels:  map[string]string{LabelManaged: "true"},
		})
		if err != nil && !cerrdefs.IsConflict(err) && !cerrdefs.IsAlreadyExists(err) {
			return network.Network{}, wrap(ctx, "create network", "network "+name, err)
		}
		// Created here or, concurrently, by another runtime: look again.
		if nets, err = r.networksNamed(ctx, name); err != nil {
			return network.Network{}, wrap(ctx, "list networks", "network "+name, err)
		}
		if len(nets) == 0 {
			return network.Network{}, market.Errorf(market.EINTERNAL, "network %s vanished right after it was created", name)
		}
	}
	keep := electNetwork(nets)
	for _, n := range nets {
		if n.ID == keep.ID {
			continue
		}
		if _, err := r.cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			r.log.Warn("cannot remove a duplicate lease network; leases use the oldest", "network", name, "id", shortID(n.ID), "kept", shortID(keep.ID), "err", err)
			continue
		}
		r.log.Info("removed a duplicate lease network", "network", name, "id", shortID(n.ID), "kept", shortID(keep.ID))
	}
	if err := checkNetwork(keep); err != nil {
		return network.Network{}, fmt.Errorf("lease network: %w", err)
	}
	return keep, nil
}

// networksNamed lists the networks whose name is exactly name (the
// engine's name filter also matches substrings).
func (r *Runtime) networksNamed(ctx context.Context, name string) ([]network.Network, error) {
	res, err := r.cli.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("name", name)})
	if err != nil {
		return nil, err
	}
	var out []network.Network
	for _, n := range res.Items {
		if n.Name == name {
			out = append(out, n.Network)
		}
	}
	return out, nil
}

// electNetwork picks the network every runtime keeps among duplicates: the
// oldest, then the lowest id.
func electNetwork(nets []network.Network) network.Network {
	keep := nets[0]
	for _, n := range nets[1:] {
		if n.Created.Before(keep.Created) || (n.Created.Equal(keep.Created) && n.ID < keep.ID) {
			keep = n
		}
	}
	return keep
}

// checkNetwork refuses a network that would let tenants reach each other
// or that is not a local bridge.
func checkNetwork(n network.Network) error {
	if n.Driver != "bridge" || n.Options[iccOption] != "false" {
		return market.Errorf(market.ECONFLICT, "network %s exists but is not a bridge with inter-container communication disabled; remove it or configure another network name", n.Name)
	}
	return nil
}

// bridgeNameOption is the bridge driver option naming the host interface.
const bridgeNameOption = "com.docker.network.bridge.name"

// LeaseNetwork is the lease network as the host's packet filter sees it.
type LeaseNetwork struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Bridge is the network's interface on the engine's host.
	Bridge string `json:"bridge"`
	// IPv6 is true when the network gives containers IPv6 addresses.
	IPv6     bool           `json:"ipv6"`
	Subnets  []netip.Prefix `json:"subnets"`
	Gateways []netip.Addr   `json:"gateways"`
}

func leaseNetworkOf(n network.Network) LeaseNetwork {
	ln := LeaseNetwork{ID: n.ID, Name: n.Name, IPv6: n.EnableIPv6, Bridge: n.Options[bridgeNameOption]}
	if ln.Bridge == "" && len(n.ID) >= 12 {
		ln.Bridge = "br-" + n.ID[:12] // the bridge driver's default name
	}
	for _, c := range n.IPAM.Config {
		if c.Subnet.IsValid() {
			ln.Subnets = append(ln.Subnets, c.Subnet)
		}
		if c.Gateway.IsValid() {
			ln.Gateways = append(ln.Gateways, c.Gateway)
		}
	}
	return ln
}

// LeaseNetwork returns the lease network, creating it if it is missing.
// Errors: ECONFLICT (a network of that name does not isolate containers),
// EUNAVAILABLE.
func (r *Runtime) LeaseNetwork(ctx context.Context) (LeaseNetwork, error) {
	n, err := r.ensureNetwork(ctx)
	if err != nil {
		return LeaseNetwork{}, err
	}
	if len(n.IPAM.Config) == 0 {
		// The list call leaves IPAM out on some engines: inspect.
		cctx, cancel := r.call(ctx)
		defer cancel()
		res, err := r.cli.NetworkInspect(cctx, n.ID, client.NetworkInspectOptions{})
		if err != nil {
			return LeaseNetwork{}, wrap(cctx, "inspect network", "network "+n.Name, err)
		}
		n = res.Network.Network
	}
	return leaseNetworkOf(n), nil
}

// FindLeaseNetwork returns the lease network without creating it; found
// is false when there is none. Errors: EUNAVAILABLE.
func (r *Runtime) FindLeaseNetwork(ctx context.Context) (ln LeaseNetwork, found bool, err error) {
	ctx, cancel := r.call(ctx)
	defer cancel()
	nets, err := r.networksNamed(ctx, r.cfg.Network)
	if err != nil {
		return LeaseNetwork{}, false, wrap(ctx, "list networks", "network "+r.cfg.Network, err)
	}
	if len(nets) == 0 {
		return LeaseNetwork{}, false, nil
	}
	return leaseNetworkOf(electNetwork(nets)), true, nil
}

// NetworkInUse reports whether any container, of any miner and in any
// state (created ones included), is attached to the lease network with
// id. Errors: EUNAVAILABLE.
func (r *Runtime) NetworkInUse(ctx context.Context, id string) (bool, error) {
	ctx, cancel := r.call(ctx)
	defer cancel()
	f := client.Filters{}.Add("network", id)
	res, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f, Limit: 1})
	if err != nil {
		return false, wrap(ctx, "list containers", "network "+id, err)
	}
	return len(res.Items) > 0, nil
}
