package subtensor

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/tlock"
)

// Commit-reveal v4 on subtensor (pallets/subtensor subnets/weights.rs and
// coinbase/reveal_commits.rs): a validator submits
// commit_timelocked_weights(netuid, commit, reveal_round,
// commit_reveal_version) signed by its hotkey; the chain files it under the
// current epoch and, at the start of the epoch RevealPeriodEpochs later,
// decrypts it with drand quicknet's pulse for reveal_round and applies the
// weights with set_weights' checks. Runtimes that count epochs
// (SubnetEpochIndex) expose the schedule the reveal round is computed from.

// defaultBlockTime is Bittensor's block time, for runtimes that declare
// no slot duration.
const defaultBlockTime = 12 * time.Second

// CommitReveal reads netuid's commit-reveal settings, the epoch schedule
// where the runtime keeps one, and the best block. The beacon is drand
// quicknet, the one subtensor's Drand pallet ingests.
func (c *Client) CommitReveal(ctx context.Context, netuid subnet.NetUID) (subnet.CommitReveal, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	m, err := c.metadata(ctx)
	if err != nil {
		return subnet.CommitReveal{}, err
	}
	hash, block, err := c.head(ctx)
	if err != nil {
		return subnet.CommitReveal{}, err
	}
	key := []any{uint64(netuid)}
	items := []storageItem{
		{pallet: subtensorPallet, entry: "NetworksAdded", keys: key},
		{pallet: subtensorPallet, entry: "CommitRevealWeightsEnabled", keys: key},
		{pallet: subtensorPallet, entry: "RevealPeriodEpochs", keys: key},
		{pallet: subtensorPallet, entry: "Tempo", keys: key},
		{pallet: subtensorPallet, entry: "CommitRevealWeightsVersion"},
	}
	p, _ := m.pallet(subtensorPallet)
	_, counted := p.storage["SubnetEpochIndex"]
	if counted {
		for _, e := range []string{"SubnetEpochIndex", "LastEpochBlock", "PendingEpochAt", "BlocksSinceLastStep"} {
			items = append(items, storageItem{pallet: subtensorPallet, entry: e, keys: key})
		}
	}
	vals, err := c.readMany(ctx, m, hash, items)
	if err != nil {
		return subnet.CommitReveal{}, err
	}
	if ok, _ := unwrap(vals[0]).(bool); !ok {
		return subnet.CommitReveal{}, noSubnet(netuid)
	}
	var bad []string
	u := func(i int, max uint64) uint64 {
		v, ok := asUint64(unwrap(vals[i]))
		if !ok || v > max {
			bad = append(bad, items[i].entry)
		}
		return v
	}
	enabled, ok := unwrap(vals[1]).(bool)
	if !ok {
		bad = append(bad, items[1].entry)
	}
	q := tlock.Quicknet()
	cr := subnet.CommitReveal{
		NetUID:             netuid,
		Enabled:            enabled,
		RevealPeriodEpochs: u(2, math.MaxUint64),
		Tempo:              uint16(u(3, math.MaxUint16)),
		Version:            uint16(u(4, math.MaxUint16)),
		Block:              block,
		BlockTime:          blockTime(m),
		Beacon:             subnet.Beacon{PublicKey: q.PublicKey, Genesis: q.Genesis, Period: q.Period},
	}
	if counted {
		cr.Schedule = &subnet.EpochSchedule{
			EpochIndex: u(5, math.MaxUint64), LastEpochBlock: u(6, math.MaxUint64),
			PendingEpochAt: u(7, math.MaxUint64), BlocksSinceLastStep: u(8, math.MaxUint64),
		}
	}
	if len(bad) > 0 {
		return subnet.CommitReveal{}, fmt.Errorf("commit-reveal settings of netuid %d: unexpected types for %v", netuid, bad)
	}
	return cr, nil
}

// blockTime is the runtime's Aura.SlotDuration, or twice
// Timestamp.MinimumPeriod, or 12 s.
func blockTime(m *Metadata) time.Duration {
	for _, c := range []struct {
		pallet, name string
		factor       uint64
	}{{"Aura", "SlotDuration", 1}, {"Timestamp", "MinimumPeriod", 2}} {
		p, err := m.pallet(c.pallet)
		if err != nil || len(p.constants[c.name]) != 8 {
			continue
		}
		if ms := binary.LittleEndian.Uint64(p.constants[c.name]) * c.factor; ms > 0 && ms <= 10*60*1000 {
			return time.Duration(ms) * time.Millisecond
		}
	}
	return defaultBlockTime
}

// CommitTimelockedWeights submits commit_timelocked_weights signed by the
// hotkey, or commit_timelocked_mechanism_weights for mechanism 0 when the
// runtime offers only that.
func (c *Client) CommitTimelockedWeights(ctx context.Context, hotkey subnet.Signer, netuid subnet.NetUID, commit []byte, revealRound uint64, version uint16) error {
	if len(commit) == 0 || len(commit) > tlock.MaxCiphertextSize {
		return subnet.Errorf(subnet.EINVALID, "a timelocked commit holds 1 to %d bytes, not %d", tlock.MaxCiphertextSize, len(commit))
	}
	args := map[string]any{
		"netuid":                uint64(netuid),
		"commit":                commit,
		"reveal_round":          revealRound,
		"commit_reveal_version": uint64(version),
	}
	call := "commit_timelocked_weights"
	mctx, cancel := c.withTimeout(ctx)
	m, err := c.metadata(mctx)
	cancel()
	if err != nil {
		return err
	}
	if _, _, err := m.call(subtensorPallet, call); err != nil {
		call = "commit_timelocked_mechanism_weights"
		args["mecid"] = uint64(0)
	}
	_, err = c.submit(ctx, hotkey, call, args)
	return err
}

// Weights reads the weights row of uid on netuid (mechanism 0).
func (c *Client) Weights(ctx context.Context, netuid subnet.NetUID, uid subnet.UID) ([]subnet.UID, []uint16, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	m, err := c.metadata(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := c.requireSubnet(ctx, m, "", netuid); err != nil {
		return nil, nil, err
	}
	v, _, err := c.readStorage(ctx, m, "", subtensorPallet, "Weights", uint64(netuid), uint64(uid))
	if err != nil {
		return nil, nil, err
	}
	list, ok := unwrap(v).([]any)
	if !ok && unwrap(v) != nil {
		return nil, nil, fmt.Errorf("storage %s.Weights: want a list, got %T", subtensorPallet, v)
	}
	uids, vals := make([]subnet.UID, 0, len(list)), make([]uint16, 0, len(list))
	for _, e := range list {
		pair, ok := e.([]any)
		if !ok || len(pair) != 2 {
			return nil, nil, fmt.Errorf("storage %s.Weights: want (u16, u16) pairs", subtensorPallet)
		}
		a, ok1 := asUint64(pair[0])
		b, ok2 := asUint64(pair[1])
		if !ok1 || !ok2 || a > math.MaxUint16 || b > math.MaxUint16 {
			return nil, nil, fmt.Errorf("storage %s.Weights: want (u16, u16) pairs", subtensorPallet)
		}
		uids, vals = append(uids, subnet.UID(a)), append(vals, uint16(b))
	}
	return uids, vals, nil
}
