package local

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
)

// The rules below run inside one write transaction each; an error rolls
// the whole call back. head is the best block, c the chain row.

// apply runs an extrinsic whose signature has been checked: nonce and era
// first, then the call, then the nonce bump. It returns what the call
// returns to the client, the call's refusal by a rule (refused), and err
// for anything that must abort the transaction (a stale, future or expired
// extrinsic, a storage failure).
//
// A refused call changes nothing but the signer's nonce, which it uses up
// as a dispatch error does on Substrate: the nonce is the replay
// protection, and an extrinsic refused now (too early, too poor, not yet
// registered) must not be replayable by whoever saw it once the
// circumstances change within its mortality. The call runs in a savepoint
// that a refusal rolls back, so balances, stakes and everything else stay
// as they were.
func apply(ctx context.Context, q queryer, c *chainState, x *extrinsic, args any) (res any, refused, err error) {
	_, nonce, err := account(ctx, q, x.Signer)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case x.Nonce < nonce:
		return nil, nil, subnet.Errorf(subnet.EUNAUTHORIZED, "stale nonce %d for %s (next is %d): already used by an applied or refused call (a replay, or another client signing with this key)", x.Nonce, x.Signer, nonce)
	case x.Nonce > nonce:
		return nil, nil, subnet.Errorf(subnet.EUNAUTHORIZED, "future nonce %d for %s (next is %d)", x.Nonce, x.Signer, nonce)
	case x.Era > c.block:
		return nil, nil, subnet.Errorf(subnet.EUNAUTHORIZED, "era block %d is ahead of the best block %d", x.Era, c.block)
	case c.block-x.Era > Mortality:
		return nil, nil, subnet.Errorf(subnet.EUNAUTHORIZED, "extrinsic expired: signed at block %d, best block is %d (mortality %d blocks)", x.Era, c.block, Mortality)
	}
	if _, err := q.ExecContext(ctx, `SAVEPOINT extrinsic_call`); err != nil {
		return nil, nil, fmt.Errorf("begin call: %w", err)
	}
	res, callErr := dispatchCall(ctx, q, c, x, args)
	var rule *subnet.Error
	switch {
	case callErr == nil:
	case errors.As(callErr, &rule):
		if _, err := q.ExecContext(ctx, `ROLLBACK TO extrinsic_call`); err != nil {
			return nil, nil, fmt.Errorf("undo refused call: %w", err)
		}
		refused = callErr
	default:
		return nil, nil, callErr
	}
	if _, err := q.ExecContext(ctx, `RELEASE extrinsic_call`); err != nil {
		return nil, nil, fmt.Errorf("end call: %w", err)
	}
	if err := bumpNonce(ctx, q, x.Signer); err != nil {
		return nil, nil, err
	}
	return res, refused, nil
}

// dispatchCall runs the call of x.
func dispatchCall(ctx context.Context, q queryer, c *chainState, x *extrinsic, args any) (res any, err error) {
	switch a := args.(type) {
	case *createSubnetArgs:
		res, err = createSubnet(ctx, q, c, x.Signer, a)
	case *setHyperArgs:
		err = setHyperparameters(ctx, q, x.Signer, a)
	case *registerArgs:
		res, err = register(ctx, q, c, x.Signer, a)
	case *addStakeArgs:
		err = stake(ctx, q, c, x.Signer, a)
	case *transferArgs:
		err = transfer(ctx, q, c, x.Signer, a)
	case *serveAxonArgs:
		err = serveAxon(ctx, q, c, x.Signer, a)
	case *setWeightsArgs:
		err = setWeights(ctx, q, c, x.Signer, a)
	case *commitWeightsArgs:
		err = commitWeights(ctx, q, c, x.Signer, a)
	case *servePrometheusArgs:
		err = servePrometheus(ctx, q, c, x.Signer, a)
	default:
		err = subnet.Errorf(subnet.EINVALID, "unknown call %q", truncate(x.Call))
	}
	return res, err
}

type netuidResult struct {
	NetUID subnet.NetUID `json:"netuid"`
}

type uidResult struct {
	UID subnet.UID `json:"uid"`
}

func createSubnet(ctx context.Context, q queryer, c *chainState, owner string, a *createSubnetArgs) (any, error) {
	p := paramsFromGenesis(c.genesis)
	if a.Tempo != 0 {
		p.Tempo = a.Tempo
	}
	if a.CommitReveal != nil {
		p.CommitReveal = *a.CommitReveal
	}
	if c.nextNetUID > math.MaxUint16 {
		return nil, subnet.Errorf(subnet.EINVALID, "no netuid left")
	}
	if err := payFee(ctx, q, owner, c.genesis.Fee, "the subnet creation fee"); err != nil {
		return nil, err
	}
	netuid := subnet.NetUID(c.nextNetUID)
	_, err := q.ExecContext(ctx, `INSERT INTO subnets (netuid, owner, created_at, last_epoch, tempo, burn,
		immunity_period, max_uids, weights_rate_limit, weights_version, min_allowed_weights, max_validators,
		activity_cutoff, serving_rate_limit, max_regs_per_block, kappa, bonds_moving_avg, emission_per_block, owner_cut)
		VALUES (?, ?, ?, ?, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)`, netuid, owner, c.block, c.block)
	if err != nil {
		return nil, fmt.Errorf("create subnet: %w", err)
	}
	if err := saveSubnetParams(ctx, q, netuid, p); err != nil {
		return nil, err
	}
	if _, err := q.ExecContext(ctx, `UPDATE chain SET next_netuid = next_netuid + 1 WHERE id = 1`); err != nil {
		return nil, fmt.Errorf("create subnet: %w", err)
	}
	return netuidResult{NetUID: netuid}, nil
}

func setHyperparameters(ctx context.Context, q queryer, signer string, a *setHyperArgs) error {
	s, err := loadSubnet(ctx, q, a.NetUID)
	if err != nil {
		return err
	}
	if s.Owner != signer {
		return subnet.Errorf(subnet.EUNAUTHORIZED, "only the owner of subnet %d (%s) may change its hyperparameters", a.NetUID, s.Owner)
	}
	p, u := s.subnetParams, a.Update
	setIf(&p.Tempo, u.Tempo)
	setIf(&p.Burn, u.Burn)
	setIf(&p.ImmunityPeriod, u.ImmunityPeriod)
	setIf(&p.MaxUIDs, u.MaxAllowedUIDs)
	setIf(&p.WeightsRateLimit, u.WeightsRateLimit)
	setIf(&p.WeightsVersion, u.WeightsVersion)
	setIf(&p.MinAllowedWeights, u.MinAllowedWeights)
	setIf(&p.MaxValidators, u.MaxAllowedValidators)
	setIf(&p.ActivityCutoff, u.ActivityCutoff)
	setIf(&p.ServingRateLimit, u.ServingRateLimit)
	setIf(&p.MaxRegsPerBlock, u.MaxRegistrationsPerBlock)
	setIf(&p.CommitReveal, u.CommitRevealWeightsEnabled)
	setIf(&p.RevealPeriod, u.RevealPeriodEpochs)
	n, err := subnetworkN(ctx, q, a.NetUID)
	if err != nil {
		return err
	}
	switch {
	case p.Tempo == 0:
		return subnet.Errorf(subnet.EINVALID, "tempo must be at least 1")
	case p.MaxUIDs == 0 || p.MaxUIDs < n:
		return subnet.Errorf(subnet.EINVALID, "max allowed uids must be at least 1 and at least the %d registered uids", n)
	case p.MaxRegsPerBlock == 0:
		return subnet.Errorf(subnet.EINVALID, "max registrations per block must be at least 1")
	case p.Burn > maxAmount/4:
		return subnet.Errorf(subnet.EINVALID, "burn %s is too large", p.Burn)
	case p.WeightsVersion > maxAmount:
		return subnet.Errorf(subnet.EINVALID, "weights version %d is too large", p.WeightsVersion)
	case p.RevealPeriod < 1 || p.RevealPeriod > MaxRevealPeriod:
		return subnet.Errorf(subnet.EINVALID, "reveal period must be 1 to %d epochs", MaxRevealPeriod)
	}
	return saveSubnetParams(ctx, q, a.NetUID, p)
}

// register is burned registration. Checks, in order: hotkey address,
// subnet, hotkey ownership, already registered (EALREADY with the uid),
// registrations in this block, balance for burn + fee; then the burn and
// fee are destroyed and the hotkey takes the next free uid or, when the
// subnet is full, the uid chosen by prunable.
func register(ctx context.Context, q queryer, c *chainState, coldkey string, a *registerArgs) (any, error) {
	if !keys.ValidSS58(a.Hotkey) {
		return nil, subnet.Errorf(subnet.EINVALID, "hotkey %q is not an SS58 address", truncate(a.Hotkey))
	}
	s, err := loadSubnet(ctx, q, a.NetUID)
	if err != nil {
		return nil, err
	}
	owner, err := hotkeyOwner(ctx, q, a.Hotkey)
	if err != nil {
		return nil, err
	}
	if owner != "" && owner != coldkey {
		return nil, subnet.Errorf(subnet.EUNAUTHORIZED, "hotkey %s belongs to coldkey %s", a.Hotkey, owner)
	}
	if uid, ok, err := neuronByHotkey(ctx, q, a.NetUID, a.Hotkey); err != nil {
		return nil, err
	} else if ok {
		return uidResult{UID: uid}, subnet.Errorf(subnet.EALREADY, "hotkey %s is already registered on subnet %d as uid %d", a.Hotkey, a.NetUID, uid)
	}
	if s.RegsBlock == c.block && s.RegsCount >= uint64(s.MaxRegsPerBlock) {
		return nil, subnet.Errorf(subnet.ERATELIMITED, "subnet %d allows %d registrations per block and block %d has them; retry next block", a.NetUID, s.MaxRegsPerBlock, c.block)
	}
	cost := s.Burn + c.genesis.Fee
	if err := debit(ctx, q, coldkey, cost, fmt.Sprintf("registration (burn %s + fee %s)", s.Burn, c.genesis.Fee)); err != nil {
		return nil, err
	}
	if err := changeIssuance(ctx, q, -int64(cost)); err != nil {
		return nil, err
	}
	if owner == "" {
		if _, err := q.ExecContext(ctx, `INSERT INTO hotkeys (hotkey, coldkey, created_at) VALUES (?, ?, ?)`, a.Hotkey, coldkey, c.block); err != nil {
			return nil, fmt.Errorf("record hotkey owner: %w", err)
		}
	}
	neurons, err := loadNeurons(ctx, q, a.NetUID)
	if err != nil {
		return nil, err
	}
	var uid subnet.UID
	if len(neurons) < int(s.MaxUIDs) {
		uid = subnet.UID(len(neurons))
		_, err = q.ExecContext(ctx, `INSERT INTO neurons (netuid, uid, hotkey, registered_at, last_update) VALUES (?, ?, ?, ?, ?)`,
			a.NetUID, uid, a.Hotkey, c.block, c.block)
		if err != nil {
			return nil, fmt.Errorf("register: %w", err)
		}
	} else {
		victim, ok := prunable(neurons, c.block, s.ImmunityPeriod)
		if !ok {
			return nil, subnet.Errorf(subnet.EFULL, "subnet %d is full (%d uids) and every uid is still immune", a.NetUID, len(neurons))
		}
		uid = victim.UID
		if err := unstakeAll(ctx, q, a.NetUID, victim.Hotkey); err != nil {
			return nil, err
		}
		_, err = q.ExecContext(ctx, `UPDATE neurons SET hotkey = ?, registered_at = ?, last_update = ?, weights_at = NULL,
			weights = '[]', bonds = '[]', axon_block = 0, axon_version = 0, axon_ip = '0.0.0.0', axon_port = 0,
			axon_ip_type = 4, axon_protocol = 0, axon_served = 0, active = 0, validator_permit = 0, rank = 0,
			trust = 0, consensus = 0, incentive = 0, dividends = 0, validator_trust = 0, emission = 0
			WHERE netuid = ? AND uid = ?`, a.Hotkey, c.block, c.block, a.NetUID, uid)
		if err != nil {
			return nil, fmt.Errorf("replace uid %d: %w", uid, err)
		}
	}
	regs := uint64(1)
	if s.RegsBlock == c.block {
		regs = s.RegsCount + 1
	}
	if _, err := q.ExecContext(ctx, `UPDATE subnets SET regs_block = ?, regs_count = ? WHERE netuid = ?`, c.block, regs, a.NetUID); err != nil {
		return nil, fmt.Errorf("count registration: %w", err)
	}
	return uidResult{UID: uid}, nil
}

// prunable picks the uid a registration on a full subnet replaces: among
// uids out of their immunity period (registered at least immunity blocks
// ago), the lowest emission at the last epoch, then the lowest incentive,
// then the oldest registration, then the lowest uid.
func prunable(neurons []neuronState, block, immunity uint64) (neuronState, bool) {
	var cands []neuronState
	for _, n := range neurons {
		if block-n.RegisteredAt >= immunity {
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 {
		return neuronState{}, false
	}
	return slices.MinFunc(cands, func(a, b neuronState) int {
		switch {
		case a.Emission != b.Emission:
			return cmpOrder(a.Emission < b.Emission)
		case a.Incentive != b.Incentive:
			return cmpOrder(a.Incentive < b.Incentive)
		case a.RegisteredAt != b.RegisteredAt:
			return cmpOrder(a.RegisteredAt < b.RegisteredAt)
		default:
			return cmpOrder(a.UID < b.UID)
		}
	}), true
}

func setIf[T any](dst, v *T) {
	if v != nil {
		*dst = *v
	}
}

func cmpOrder(less bool) int {
	if less {
		return -1
	}
	return 1
}

// stake moves amount from the coldkey's balance to its stake on a hotkey
// registered on the subnet (any registered hotkey may receive stake, as
// delegation does on Bittensor), paying the fee.
func stake(ctx context.Context, q queryer, c *chainState, coldkey string, a *addStakeArgs) error {
	if a.Amount == 0 {
		return subnet.Errorf(subnet.EINVALID, "stake amount must be positive")
	}
	if _, err := loadSubnet(ctx, q, a.NetUID); err != nil {
		return err
	}
	if _, ok, err := neuronByHotkey(ctx, q, a.NetUID, a.Hotkey); err != nil {
		return err
	} else if !ok {
		return subnet.Errorf(subnet.ENOTREGISTERED, "hotkey %s is not registered on subnet %d", truncate(a.Hotkey), a.NetUID)
	}
	if a.Amount > maxAmount-c.genesis.Fee {
		return subnet.Errorf(subnet.EINSUFFICIENTBALANCE, "stake amount %s is more than any balance", a.Amount)
	}
	if err := debit(ctx, q, coldkey, a.Amount+c.genesis.Fee, fmt.Sprintf("staking %s (+ fee %s)", a.Amount, c.genesis.Fee)); err != nil {
		return err
	}
	if err := changeIssuance(ctx, q, -int64(c.genesis.Fee)); err != nil {
		return err
	}
	return addStake(ctx, q, a.NetUID, a.Hotkey, coldkey, a.Amount)
}

func transfer(ctx context.Context, q queryer, c *chainState, from string, a *transferArgs) error {
	if !keys.ValidSS58(a.Dest) {
		return subnet.Errorf(subnet.EINVALID, "destination %q is not an SS58 address", truncate(a.Dest))
	}
	if a.Amount == 0 {
		return subnet.Errorf(subnet.EINVALID, "transfer amount must be positive")
	}
	if a.Amount > maxAmount-c.genesis.Fee {
		return subnet.Errorf(subnet.EINSUFFICIENTBALANCE, "transfer amount %s is more than any balance", a.Amount)
	}
	if err := debit(ctx, q, from, a.Amount+c.genesis.Fee, fmt.Sprintf("transferring %s (+ fee %s)", a.Amount, c.genesis.Fee)); err != nil {
		return err
	}
	if err := changeIssuance(ctx, q, -int64(c.genesis.Fee)); err != nil {
		return err
	}
	return credit(ctx, q, a.Dest, a.Amount)
}

// validAxonIP checks ip against ipType (4 or 6; 0 infers it) and refuses
// addresses no one can connect to (unspecified, broadcast, multicast).
// Loopback and private addresses are allowed: this is a development chain.
func validAxonIP(ip string, ipType uint8) (netip.Addr, uint8, error) {
	addr, err := netip.ParseAddr(ip)
	if err != nil || addr.Zone() != "" {
		return netip.Addr{}, 0, subnet.Errorf(subnet.EINVALID, "axon ip %q is not an IPv4 or IPv6 address", truncate(ip))
	}
	addr = addr.Unmap()
	typ := uint8(6)
	if addr.Is4() {
		typ = 4
	}
	if ipType != 0 && ipType != typ {
		return netip.Addr{}, 0, subnet.Errorf(subnet.EINVALID, "axon ip %s is IPv%d, ip_type says %d", addr, typ, ipType)
	}
	if addr.IsUnspecified() || addr.IsMulticast() || addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, 0, subnet.Errorf(subnet.EINVALID, "axon ip %s is not a connectable address", addr)
	}
	return addr, typ, nil
}

// serveAxon publishes the signing hotkey's axon. The first serve of a
// neuron is always allowed; later ones wait serving_rate_limit blocks.
func serveAxon(ctx context.Context, q queryer, c *chainState, hotkey string, a *serveAxonArgs) error {
	s, err := loadSubnet(ctx, q, a.NetUID)
	if err != nil {
		return err
	}
	uid, ok, err := neuronByHotkey(ctx, q, a.NetUID, hotkey)
	if err != nil {
		return err
	}
	if !ok {
		return subnet.Errorf(subnet.ENOTREGISTERED, "hotkey %s is not registered on subnet %d", hotkey, a.NetUID)
	}
	addr, typ, err := validAxonIP(a.IP, a.IPType)
	if err != nil {
		return err
	}
	if a.Port == 0 {
		return subnet.Errorf(subnet.EINVALID, "axon port must be 1–65535")
	}
	var served bool
	var last uint64
	err = q.QueryRowContext(ctx, `SELECT axon_served, axon_block FROM neurons WHERE netuid = ? AND uid = ?`, a.NetUID, uid).Scan(&served, &last)
	if err != nil {
		return fmt.Errorf("read axon: %w", err)
	}
	if served && c.block-last < s.ServingRateLimit {
		return subnet.Errorf(subnet.ERATELIMITED, "serve_axon rate limit on subnet %d: last served at block %d, next allowed at block %d", a.NetUID, last, last+s.ServingRateLimit)
	}
	_, err = q.ExecContext(ctx, `UPDATE neurons SET axon_block = ?, axon_version = ?, axon_ip = ?, axon_port = ?,
		axon_ip_type = ?, axon_protocol = ?, axon_served = 1 WHERE netuid = ? AND uid = ?`,
		c.block, a.Version, addr.String(), a.Port, typ, a.Protocol, a.NetUID, uid)
	if err != nil {
		return fmt.Errorf("serve axon: %w", err)
	}
	return nil
}

// setWeights stores the signing hotkey's weights row. A subnet with
// commit-reveal on refuses it (CommitRevealEnabled): its weights are
// committed and revealed by the chain (see commitWeights).
func setWeights(ctx context.Context, q queryer, c *chainState, hotkey string, a *setWeightsArgs) error {
	s, err := loadSubnet(ctx, q, a.NetUID)
	if err != nil {
		return err
	}
	if s.CommitReveal {
		return subnet.Errorf(subnet.ECOMMITREVEAL, "CommitRevealEnabled: subnet %d has commit-reveal weights on: commit weights with commit_timelocked_weights; the chain reveals them %d epoch(s) later", a.NetUID, s.RevealPeriod)
	}
	return applyWeights(ctx, q, s, c.block, hotkey, a, false)
}

// applyWeights checks and stores a weights row of hotkey at block, set
// directly or revealed from a commit. Checks, in order: registration,
// equal lengths, version key ≥ the subnet's weights version, rate limit
// (not for a reveal: its commit was rate limited; the first set is always
// allowed), distinct uids below the subnet size, at least
// min(min_allowed_weights, n) entries and a validator permit, unless the
// row is only the setter's own uid (as on subtensor, a hotkey without a
// permit may set only its self-weight). A set also counts as activity
// (last_update); a revealed commit does not, its commit did.
func applyWeights(ctx context.Context, q queryer, s *subnetState, block uint64, hotkey string, a *setWeightsArgs, reveal bool) error {
	uid, ok, err := neuronByHotkey(ctx, q, a.NetUID, hotkey)
	if err != nil {
		return err
	}
	if !ok {
		return subnet.Errorf(subnet.ENOTREGISTERED, "hotkey %s is not registered on subnet %d", hotkey, a.NetUID)
	}
	if len(a.UIDs) != len(a.Weights) {
		return subnet.Errorf(subnet.EINVALIDWEIGHTS, "weights length mismatch: %d uids, %d weights", len(a.UIDs), len(a.Weights))
	}
	if a.VersionKey < s.WeightsVersion {
		return subnet.Errorf(subnet.EINVALIDWEIGHTS, "weights version key %d is below subnet %d's weights version %d: update the validator", a.VersionKey, a.NetUID, s.WeightsVersion)
	}
	var last sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT weights_at FROM neurons WHERE netuid = ? AND uid = ?`, a.NetUID, uid).Scan(&last); err != nil {
		return fmt.Errorf("read weights block: %w", err)
	}
	if !reveal && last.Valid && block-uint64(last.Int64) < s.WeightsRateLimit {
		at := uint64(last.Int64)
		return subnet.Errorf(subnet.ERATELIMITED, "set_weights rate limit on subnet %d: last set at block %d, next allowed at block %d (best block %d)",
			a.NetUID, at, at+s.WeightsRateLimit, block)
	}
	n, err := subnetworkN(ctx, q, a.NetUID)
	if err != nil {
		return err
	}
	seen := make(map[subnet.UID]bool, len(a.UIDs))
	for _, u := range a.UIDs {
		if seen[u] {
			return subnet.Errorf(subnet.EINVALIDWEIGHTS, "duplicate uid %d in weights", u)
		}
		seen[u] = true
		if uint16(u) >= n {
			return subnet.Errorf(subnet.EINVALIDWEIGHTS, "uid %d does not exist on subnet %d (%d uids)", u, a.NetUID, n)
		}
	}
	minLen := min(s.MinAllowedWeights, n)
	selfOnly := len(a.UIDs) == 1 && a.UIDs[0] == uid
	if len(a.UIDs) < int(minLen) && !selfOnly {
		return subnet.Errorf(subnet.EINVALIDWEIGHTS, "%d weights given, subnet %d needs at least %d", len(a.UIDs), a.NetUID, minLen)
	}
	if !selfOnly {
		var permit bool
		if err := q.QueryRowContext(ctx, `SELECT validator_permit FROM neurons WHERE netuid = ? AND uid = ?`, a.NetUID, uid).Scan(&permit); err != nil {
			return fmt.Errorf("read validator permit: %w", err)
		}
		if !permit {
			return subnet.Errorf(subnet.EINVALIDWEIGHTS, "hotkey %s (uid %d) has no validator permit on subnet %d: only a weight on its own uid is allowed until an epoch grants one (permits go to the top %d uids by stake)",
				hotkey, uid, a.NetUID, s.MaxValidators)
		}
	}
	entries := make([]weightEntry, len(a.UIDs))
	for i := range a.UIDs {
		entries[i] = weightEntry{uint16(a.UIDs[i]), a.Weights[i]}
	}
	w, err := json.Marshal(entries)
	if err != nil {
		return fmt.Errorf("encode weights: %w", err)
	}
	if reveal {
		_, err = q.ExecContext(ctx, `UPDATE neurons SET weights = ?, weights_at = ? WHERE netuid = ? AND uid = ?`,
			string(w), block, a.NetUID, uid)
	} else {
		_, err = q.ExecContext(ctx, `UPDATE neurons SET weights = ?, weights_at = ?, last_update = ? WHERE netuid = ? AND uid = ?`,
			string(w), block, block, a.NetUID, uid)
	}
	if err != nil {
		return fmt.Errorf("store weights: %w", err)
	}
	return nil
}

// faucet credits amount to address, minting it, within the per-call limit
// and the chain's lifetime faucet cap.
func faucet(ctx context.Context, q queryer, c *chainState, address string, amount subnet.Balance) (subnet.Balance, error) {
	if !keys.ValidSS58(address) {
		return 0, subnet.Errorf(subnet.EINVALID, "%q is not an SS58 address", truncate(address))
	}
	if amount == 0 || amount > c.genesis.FaucetLimit {
		return 0, subnet.Errorf(subnet.EINVALID, "faucet amount must be between 1 rao and %s", c.genesis.FaucetLimit)
	}
	var minted subnet.Balance
	if err := q.QueryRowContext(ctx, `SELECT faucet_minted FROM chain WHERE id = 1`).Scan(&minted); err != nil {
		return 0, fmt.Errorf("read faucet total: %w", err)
	}
	capacity := c.genesis.faucetCap()
	if minted >= capacity || amount > capacity-minted {
		return 0, subnet.Errorf(subnet.EINSUFFICIENTBALANCE, "the faucet is exhausted: it has minted %s of its lifetime cap of %s (genesis faucet_cap), %s left",
			minted, capacity, capacity-min(minted, capacity))
	}
	if _, err := q.ExecContext(ctx, `UPDATE chain SET faucet_minted = ? WHERE id = 1`, int64(minted+amount)); err != nil {
		return 0, fmt.Errorf("record faucet total: %w", err)
	}
	if err := changeIssuance(ctx, q, int64(amount)); err != nil {
		return 0, err
	}
	if err := credit(ctx, q, address, amount); err != nil {
		return 0, err
	}
	free, _, err := account(ctx, q, address)
	return free, err
}
