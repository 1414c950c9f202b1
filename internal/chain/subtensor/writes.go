package subtensor

import (
	"context"
	"math/big"

	"github.com/nicompute/nicompute/internal/subnet"
)

// axonProtocol is the protocol number Bittensor's SDK serves axons with.
const axonProtocol = 4

// endpoint checks a served address (what: "axon", "prometheus") and
// encodes its IP as the chain takes it. Errors: EINVALID.
func endpoint(what, ipText string, port uint16, wantType uint8) (*big.Int, uint8, error) {
	ip, ipType, err := ipToU128(ipText)
	if err != nil {
		return nil, 0, subnet.Errorf(subnet.EINVALID, "invalid %s ip %q", what, ipText)
	}
	if port == 0 {
		return nil, 0, subnet.Errorf(subnet.EINVALID, "%s port must not be 0", what)
	}
	if wantType != 0 && wantType != ipType {
		return nil, 0, subnet.Errorf(subnet.EINVALID, "%s ip %s is IPv%d, not IPv%d", what, ipText, ipType, wantType)
	}
	return ip, ipType, nil
}

// BurnedRegister registers hotkey on netuid, paid and owned by coldkey,
// and returns its uid. A hotkey already registered returns its uid with
// EALREADY.
func (c *Client) BurnedRegister(ctx context.Context, coldkey subnet.Signer, netuid subnet.NetUID, hotkey string) (subnet.UID, error) {
	acct, err := account(hotkey)
	if err != nil {
		return 0, err
	}
	uid, ok, err := c.UIDForHotkey(ctx, netuid, hotkey)
	if err != nil {
		return 0, err
	}
	if ok {
		return uid, subnet.Errorf(subnet.EALREADY, "hotkey %s is already registered on subnet %d as uid %d", hotkey, netuid, uid)
	}
	block, err := c.submit(ctx, coldkey, "burned_register", map[string]any{
		"netuid": uint64(netuid),
		"hotkey": acct,
	})
	if err != nil {
		return 0, err
	}
	rctx, cancel := c.withTimeout(ctx)
	defer cancel()
	uid, ok, err = c.uidAt(rctx, block, netuid, hotkey)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, subnet.Errorf(subnet.EINTERNAL, "burned_register succeeded in block %s but hotkey %s has no uid there", block, hotkey)
	}
	return uid, nil
}

// ServeAxon publishes the signing hotkey's axon on netuid.
func (c *Client) ServeAxon(ctx context.Context, hotkey subnet.Signer, netuid subnet.NetUID, axon subnet.AxonInfo) error {
	ip, ipType, err := endpoint("axon", axon.IP, axon.Port, axon.IPType)
	if err != nil {
		return err
	}
	protocol := uint64(axon.Protocol)
	if protocol == 0 {
		protocol = axonProtocol
	}
	_, err = c.submit(ctx, hotkey, "serve_axon", map[string]any{
		"netuid":       uint64(netuid),
		"version":      uint64(axon.Version),
		"ip":           ip,
		"port":         uint64(axon.Port),
		"ip_type":      uint64(ipType),
		"protocol":     protocol,
		"placeholder1": uint64(0),
		"placeholder2": uint64(0),
	})
	return err
}

// ServePrometheus publishes the signing hotkey's metrics endpoint on
// netuid (subtensor's serve_prometheus: netuid, version, ip as u128, port,
// ip_type), as Bittensor's SDK does for validators.
func (c *Client) ServePrometheus(ctx context.Context, hotkey subnet.Signer, netuid subnet.NetUID, info subnet.PrometheusInfo) error {
	ip, ipType, err := endpoint("prometheus", info.IP, info.Port, info.IPType)
	if err != nil {
		return err
	}
	_, err = c.submit(ctx, hotkey, "serve_prometheus", map[string]any{
		"netuid":  uint64(netuid),
		"version": uint64(info.Version),
		"ip":      ip,
		"port":    uint64(info.Port),
		"ip_type": uint64(ipType),
	})
	return err
}

// SetWeights sets the signing hotkey's weights on netuid. A subnet with
// commit-reveal weights enabled is refused with ECOMMITREVEAL before
// anything is submitted: its weights are committed instead
// (CommitTimelockedWeights, see package weights).
func (c *Client) SetWeights(ctx context.Context, hotkey subnet.Signer, netuid subnet.NetUID, uids []subnet.UID, weights []uint16, version uint64) error {
	if len(uids) != len(weights) {
		return subnet.Errorf(subnet.EINVALIDWEIGHTS, "weights length mismatch: %d uids, %d weights", len(uids), len(weights))
	}
	if err := c.checkCommitReveal(ctx, netuid); err != nil {
		return err
	}
	dests, vals := make([]any, len(uids)), make([]any, len(weights))
	for i := range uids {
		dests[i], vals[i] = uint64(uids[i]), uint64(weights[i])
	}
	_, err := c.submit(ctx, hotkey, "set_weights", map[string]any{
		"netuid":      uint64(netuid),
		"dests":       dests,
		"weights":     vals,
		"version_key": version,
	})
	return err
}

// commitRevealMessage is the refusal for subnets with commit-reveal.
const commitRevealMessage = "subnet %d has commit-reveal weights enabled: weights must be committed (commit_timelocked_weights), not set; nothing was submitted"

func (c *Client) checkCommitReveal(ctx context.Context, netuid subnet.NetUID) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	m, err := c.metadata(ctx)
	if err != nil {
		return err
	}
	vals, err := c.readMany(ctx, m, "", []storageItem{
		{pallet: subtensorPallet, entry: "NetworksAdded", keys: []any{uint64(netuid)}},
		{pallet: subtensorPallet, entry: "CommitRevealWeightsEnabled", keys: []any{uint64(netuid)}},
	})
	if err != nil {
		return err
	}
	if ok, _ := unwrap(vals[0]).(bool); !ok {
		return noSubnet(netuid)
	}
	if cr, _ := unwrap(vals[1]).(bool); cr {
		return subnet.Errorf(subnet.ECOMMITREVEAL, commitRevealMessage, netuid)
	}
	return nil
}

// AddStake stakes amount rao from coldkey's balance to hotkey on netuid
// (dTAO add_stake).
func (c *Client) AddStake(ctx context.Context, coldkey subnet.Signer, netuid subnet.NetUID, hotkey string, amount subnet.Balance) error {
	acct, err := account(hotkey)
	if err != nil {
		return err
	}
	if amount == 0 {
		return subnet.Errorf(subnet.EINVALID, "stake amount must be positive")
	}
	_, err = c.submit(ctx, coldkey, "add_stake", map[string]any{
		"hotkey":        acct,
		"netuid":        uint64(netuid),
		"amount_staked": uint64(amount),
	})
	return err
}
