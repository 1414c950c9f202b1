package subtensor

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
)

const (
	subtensorPallet = "SubtensorModule"
	apiNeuronsLite  = "NeuronInfoRuntimeApi_get_neurons_lite"
	apiSubnetState  = "SubnetInfoRuntimeApi_get_subnet_state"
)

// cachedGraph is the metagraph of one netuid at one block, or the fetch in
// progress (done open).
type cachedGraph struct {
	hash string
	done chan struct{}
	mg   *subnet.Metagraph
	err  error
}

func copyGraph(g *subnet.Metagraph) *subnet.Metagraph {
	c := *g
	c.Neurons = slices.Clone(g.Neurons)
	return &c
}

// account decodes an SS58 address into its 32-byte id.
func account(ss58 string) ([]byte, error) {
	pub, err := keys.PublicKeyFromSS58(ss58)
	if err != nil {
		return nil, subnet.Errorf(subnet.EINVALID, "invalid address %q: %v", ss58, err)
	}
	return pub, nil
}

// Metagraph returns all neurons of netuid at the best block. Results are
// cached per block; concurrent callers share one fetch.
func (c *Client) Metagraph(ctx context.Context, netuid subnet.NetUID) (*subnet.Metagraph, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	m, err := c.metadata(ctx)
	if err != nil {
		return nil, err
	}
	hash, number, err := c.head(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	g := c.graphs[netuid]
	if g != nil && g.hash == hash {
		c.mu.Unlock()
		select {
		case <-g.done:
		case <-ctx.Done():
			return nil, classifyRPC("metagraph", ctx.Err())
		}
		if g.err == nil {
			return copyGraph(g.mg), nil
		}
		// The shared fetch failed (perhaps its caller gave up): fetch alone.
		return c.fetchMetagraph(ctx, m, netuid, hash, number)
	}
	g = &cachedGraph{hash: hash, done: make(chan struct{})}
	c.graphs[netuid] = g
	c.mu.Unlock()

	g.mg, g.err = c.fetchMetagraph(ctx, m, netuid, hash, number)
	close(g.done)
	if g.err != nil {
		c.mu.Lock()
		if c.graphs[netuid] == g {
			delete(c.graphs, netuid)
		}
		c.mu.Unlock()
		return nil, g.err
	}
	return copyGraph(g.mg), nil
}

func (c *Client) fetchMetagraph(ctx context.Context, m *Metadata, netuid subnet.NetUID, hash string, number uint64) (*subnet.Metagraph, error) {
	var (
		wg       sync.WaitGroup
		state    any
		stateErr error
	)
	_, hasState := m.apis[apiSubnetState]
	if hasState {
		wg.Add(1)
		go func() {
			defer wg.Done()
			state, stateErr = c.stateCall(ctx, m, hash, apiSubnetState, uint64(netuid))
		}()
	}
	lite, liteErr := c.stateCall(ctx, m, hash, apiNeuronsLite, uint64(netuid))
	wg.Wait()
	if liteErr != nil {
		return nil, liteErr
	}
	if stateErr != nil {
		return nil, stateErr
	}
	list, ok := lite.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: want a list, got %T", apiNeuronsLite, lite)
	}
	var ss *subnetState
	if hasState {
		inner, some, err := optionValue(state)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", apiSubnetState, err)
		}
		if !some {
			return nil, noSubnet(netuid)
		}
		if ss, err = parseSubnetState(inner, netuid); err != nil {
			return nil, subnet.Errorf(subnet.EINTERNAL, "%s: %v", apiSubnetState, err)
		}
	} else if len(list) == 0 {
		if err := c.requireSubnet(ctx, m, hash, netuid); err != nil {
			return nil, err
		}
	}
	mg := &subnet.Metagraph{NetUID: netuid, Block: number, Neurons: make([]subnet.Neuron, 0, len(list))}
	for i, v := range list {
		n, err := neuronFromLite(v, netuid)
		if err != nil {
			return nil, subnet.Errorf(subnet.EINTERNAL, "%s: neuron %d: %v", apiNeuronsLite, i, err)
		}
		mg.Neurons = append(mg.Neurons, n)
	}
	if ss != nil {
		if err := mergeState(mg.Neurons, ss); err != nil {
			return nil, subnet.Errorf(subnet.EINTERNAL, "metagraph of netuid %d: %v", netuid, err)
		}
	}
	return mg, nil
}

func noSubnet(netuid subnet.NetUID) error {
	return subnet.Errorf(subnet.ENOSUBNET, "subnet %d does not exist", netuid)
}

// requireSubnet fails with ENOSUBNET unless netuid exists at block at.
func (c *Client) requireSubnet(ctx context.Context, m *Metadata, at string, netuid subnet.NetUID) error {
	v, _, err := c.readStorage(ctx, m, at, subtensorPallet, "NetworksAdded", uint64(netuid))
	if err != nil {
		return err
	}
	if ok, _ := unwrap(v).(bool); !ok {
		return noSubnet(netuid)
	}
	return nil
}

// readUint reads a storage value that must be an unsigned integer.
func (c *Client) readUint(ctx context.Context, m *Metadata, at, entry string, keys ...any) (uint64, error) {
	v, _, err := c.readStorage(ctx, m, at, subtensorPallet, entry, keys...)
	if err != nil {
		return 0, err
	}
	u, ok := asUint64(unwrap(v))
	if !ok {
		return 0, fmt.Errorf("storage %s.%s: want an integer, got %T", subtensorPallet, entry, v)
	}
	return u, nil
}

// UIDForHotkey returns hotkey's uid on netuid.
func (c *Client) UIDForHotkey(ctx context.Context, netuid subnet.NetUID, hotkey string) (subnet.UID, bool, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	return c.uidAt(ctx, "", netuid, hotkey)
}

func (c *Client) uidAt(ctx context.Context, at string, netuid subnet.NetUID, hotkey string) (subnet.UID, bool, error) {
	acct, err := account(hotkey)
	if err != nil {
		return 0, false, err
	}
	m, err := c.metadata(ctx)
	if err != nil {
		return 0, false, err
	}
	v, found, err := c.readStorage(ctx, m, at, subtensorPallet, "Uids", uint64(netuid), acct)
	if err != nil {
		return 0, false, err
	}
	if !found {
		return 0, false, c.requireSubnet(ctx, m, at, netuid)
	}
	u, ok := asUint64(unwrap(v))
	if !ok || u > math.MaxUint16 {
		return 0, false, fmt.Errorf("storage %s.Uids: want a u16, got %v", subtensorPallet, v)
	}
	return subnet.UID(u), true, nil
}

// keysPageSize is the page size of storage key listings (the SDK's).
const keysPageSize = 100

// NetUIDsForHotkey lists the subnets where hotkey is registered, from the
// IsNetworkMember map as the Bittensor SDK reads it.
func (c *Client) NetUIDsForHotkey(ctx context.Context, hotkey string) ([]subnet.NetUID, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	acct, err := account(hotkey)
	if err != nil {
		return nil, err
	}
	m, err := c.metadata(ctx)
	if err != nil {
		return nil, err
	}
	prefixKey, e, err := m.storageKey(subtensorPallet, "IsNetworkMember", acct)
	if err != nil {
		return nil, err
	}
	if len(e.hashers) != 2 || e.hashers[1] != hashIdentity {
		return nil, fmt.Errorf("storage %s.IsNetworkMember: unexpected key layout", subtensorPallet)
	}
	prefix := hexBytes(prefixKey)
	var out []subnet.NetUID
	start := prefix
	for page := 0; page <= math.MaxUint16/keysPageSize; page++ {
		ks, err := c.keysPaged(ctx, prefix, start, keysPageSize, "")
		if err != nil {
			return nil, err
		}
		if len(ks) == 0 {
			break
		}
		values, err := c.queryStorage(ctx, ks, "")
		if err != nil {
			return nil, err
		}
		for _, k := range ks {
			net, err := netuidSuffix(k, prefix)
			if err != nil {
				return nil, err
			}
			if b := values[k]; b != nil {
				v, err := m.decodeAll(b, e.value)
				if err != nil {
					return nil, fmt.Errorf("decode %s.IsNetworkMember: %w", subtensorPallet, err)
				}
				if member, _ := unwrap(v).(bool); member {
					out = append(out, net)
				}
			}
		}
		if len(ks) < keysPageSize {
			break
		}
		start = ks[len(ks)-1]
	}
	slices.Sort(out)
	return out, nil
}

// netuidSuffix reads the identity-hashed u16 netuid at the end of a key.
func netuidSuffix(key, prefix string) (subnet.NetUID, error) {
	b, err := parseHex("0x" + strings.TrimPrefix(key, prefix))
	if err != nil || len(b) != 2 {
		return 0, fmt.Errorf("storage key %s: not a netuid suffix", key)
	}
	return subnet.NetUID(uint16(b[0]) | uint16(b[1])<<8), nil
}

// SubnetworkN returns the number of registered uids of netuid.
func (c *Client) SubnetworkN(ctx context.Context, netuid subnet.NetUID) (uint16, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	m, err := c.metadata(ctx)
	if err != nil {
		return 0, err
	}
	if err := c.requireSubnet(ctx, m, "", netuid); err != nil {
		return 0, err
	}
	n, err := c.readUint(ctx, m, "", "SubnetworkN", uint64(netuid))
	if err != nil {
		return 0, err
	}
	if n > math.MaxUint16 {
		return 0, fmt.Errorf("storage %s.SubnetworkN: %d out of range", subtensorPallet, n)
	}
	return uint16(n), nil
}

// BurnCost returns the current burned-registration cost of netuid.
func (c *Client) BurnCost(ctx context.Context, netuid subnet.NetUID) (subnet.Balance, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	m, err := c.metadata(ctx)
	if err != nil {
		return 0, err
	}
	if err := c.requireSubnet(ctx, m, "", netuid); err != nil {
		return 0, err
	}
	b, err := c.readUint(ctx, m, "", "Burn", uint64(netuid))
	return subnet.Balance(b), err
}

// Balance returns the free balance of the account ss58.
func (c *Client) Balance(ctx context.Context, ss58 string) (subnet.Balance, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	acct, err := account(ss58)
	if err != nil {
		return 0, err
	}
	m, err := c.metadata(ctx)
	if err != nil {
		return 0, err
	}
	v, _, err := c.readStorage(ctx, m, "", "System", "Account", acct)
	if err != nil {
		return 0, err
	}
	f := &fieldReader{v: v}
	free := f.uint("data", "free")
	if f.err != nil {
		return 0, fmt.Errorf("storage System.Account: %w", f.err)
	}
	return subnet.Balance(free), nil
}

// hyperparams lists the storage items behind subnet.Hyperparameters, read
// in one round trip.
var hyperparams = []string{
	"NetworksAdded", "Tempo", "WeightsSetRateLimit", "WeightsVersionKey", "ImmunityPeriod",
	"MinAllowedWeights", "MaxWeightsLimit", "MaxAllowedUids", "MaxAllowedValidators",
	"ActivityCutoff", "Kappa", "BondsMovingAverage", "ServingRateLimit", "Burn",
	"CommitRevealWeightsEnabled", "NetworkRegistrationAllowed", "RevealPeriodEpochs",
}

// Hyperparameters returns netuid's parameters.
func (c *Client) Hyperparameters(ctx context.Context, netuid subnet.NetUID) (subnet.Hyperparameters, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var h subnet.Hyperparameters
	m, err := c.metadata(ctx)
	if err != nil {
		return h, err
	}
	items := make([]storageItem, len(hyperparams))
	for i, name := range hyperparams {
		items[i] = storageItem{pallet: subtensorPallet, entry: name, keys: []any{uint64(netuid)}}
	}
	vals, err := c.readMany(ctx, m, "", items)
	if err != nil {
		return h, err
	}
	get := make(map[string]any, len(vals))
	for i, v := range vals {
		get[hyperparams[i]] = unwrap(v)
	}
	if ok, _ := get["NetworksAdded"].(bool); !ok {
		return h, noSubnet(netuid)
	}
	var bad []string
	u := func(name string, bits int) uint64 {
		v, ok := asUint64(get[name])
		if !ok || (bits < 64 && v >= 1<<bits) {
			bad = append(bad, name)
		}
		return v
	}
	b := func(name string) bool {
		v, ok := get[name].(bool)
		if !ok {
			bad = append(bad, name)
		}
		return v
	}
	h.Tempo = uint16(u("Tempo", 16))
	h.WeightsRateLimit = u("WeightsSetRateLimit", 64)
	h.WeightsVersionKey = u("WeightsVersionKey", 64)
	h.ImmunityPeriod = u("ImmunityPeriod", 64)
	h.MinAllowedWeights = uint16(u("MinAllowedWeights", 16))
	h.MaxWeightLimit = uint16(u("MaxWeightsLimit", 16))
	h.MaxAllowedUIDs = uint16(u("MaxAllowedUids", 16))
	h.MaxAllowedValidators = uint16(u("MaxAllowedValidators", 16))
	h.ActivityCutoff = u("ActivityCutoff", 64)
	h.Kappa = uint16(u("Kappa", 16))
	h.BondsMovingAverage = u("BondsMovingAverage", 64)
	h.ServingRateLimit = u("ServingRateLimit", 64)
	h.Burn = subnet.Balance(u("Burn", 64))
	h.CommitRevealEnabled = b("CommitRevealWeightsEnabled")
	h.RegistrationAllowed = b("NetworkRegistrationAllowed")
	h.RevealPeriodEpochs = u("RevealPeriodEpochs", 64)
	if len(bad) > 0 {
		return subnet.Hyperparameters{}, fmt.Errorf("hyperparameters of netuid %d: unexpected types for %s", netuid, strings.Join(bad, ", "))
	}
	return h, nil
}
