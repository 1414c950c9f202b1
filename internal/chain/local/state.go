package local

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
)

// queryer is what the state helpers need from a transaction.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// chainState is the single row of the chain table.
type chainState struct {
	genesisHash []byte
	genesis     Genesis
	block       uint64
	issuance    uint64
	nextNetUID  uint64

	// Set by the node for extrinsics: its beacon, wall clock and block
	// time (0: manual blocks).
	beacon    *beacon
	now       time.Time
	blockTime time.Duration
}

func loadChain(ctx context.Context, q queryer) (*chainState, error) {
	var c chainState
	var g string
	err := q.QueryRowContext(ctx, `SELECT genesis_hash, genesis, block, issuance, next_netuid FROM chain WHERE id = 1`).
		Scan(&c.genesisHash, &g, &c.block, &c.issuance, &c.nextNetUID)
	if err != nil {
		return nil, fmt.Errorf("read chain state: %w", err)
	}
	if err := json.Unmarshal([]byte(g), &c.genesis); err != nil {
		return nil, fmt.Errorf("read genesis: %w", err)
	}
	return &c, nil
}

func headBlock(ctx context.Context, q queryer) (uint64, error) {
	var b uint64
	if err := q.QueryRowContext(ctx, `SELECT block FROM chain WHERE id = 1`).Scan(&b); err != nil {
		return 0, fmt.Errorf("read block: %w", err)
	}
	return b, nil
}

// changeIssuance adds delta (negative: destroys) to the total issuance.
func changeIssuance(ctx context.Context, q queryer, delta int64) error {
	var iss int64
	if err := q.QueryRowContext(ctx, `SELECT issuance FROM chain WHERE id = 1`).Scan(&iss); err != nil {
		return fmt.Errorf("read issuance: %w", err)
	}
	if (delta > 0 && iss > maxAmount-delta) || iss+delta < 0 {
		return subnet.Errorf(subnet.EINVALID, "total issuance would leave its range")
	}
	_, err := q.ExecContext(ctx, `UPDATE chain SET issuance = ? WHERE id = 1`, iss+delta)
	return err
}

// account returns the free balance and next nonce of address (zero for an
// account the chain has never seen).
func account(ctx context.Context, q queryer, address string) (free subnet.Balance, nonce uint64, err error) {
	err = q.QueryRowContext(ctx, `SELECT free, nonce FROM accounts WHERE address = ?`, address).Scan(&free, &nonce)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read account: %w", err)
	}
	return free, nonce, nil
}

func credit(ctx context.Context, q queryer, address string, amount subnet.Balance) error {
	if amount == 0 {
		return nil
	}
	free, _, err := account(ctx, q, address)
	if err != nil {
		return err
	}
	if amount > maxAmount || free > maxAmount-amount {
		return subnet.Errorf(subnet.EINVALID, "balance of %s would exceed %s", address, subnet.Balance(maxAmount))
	}
	_, err = q.ExecContext(ctx, `INSERT INTO accounts (address, free) VALUES (?, ?)
		ON CONFLICT (address) DO UPDATE SET free = free + excluded.free`, address, int64(amount))
	if err != nil {
		return fmt.Errorf("credit account: %w", err)
	}
	return nil
}

// debit takes amount from address's free balance; what is a description of
// the payment for the refusal message.
func debit(ctx context.Context, q queryer, address string, amount subnet.Balance, what string) error {
	free, _, err := account(ctx, q, address)
	if err != nil {
		return err
	}
	if free < amount {
		return subnet.Errorf(subnet.EINSUFFICIENTBALANCE, "insufficient balance: %s has %s, %s needs %s", address, free, what, amount)
	}
	if amount == 0 {
		return nil
	}
	if _, err := q.ExecContext(ctx, `UPDATE accounts SET free = free - ? WHERE address = ?`, int64(amount), address); err != nil {
		return fmt.Errorf("debit account: %w", err)
	}
	return nil
}

// payFee debits and destroys the fee.
func payFee(ctx context.Context, q queryer, address string, fee subnet.Balance, what string) error {
	if fee == 0 {
		return nil
	}
	if err := debit(ctx, q, address, fee, what); err != nil {
		return err
	}
	return changeIssuance(ctx, q, -int64(fee))
}

func bumpNonce(ctx context.Context, q queryer, address string) error {
	_, err := q.ExecContext(ctx, `INSERT INTO accounts (address, nonce) VALUES (?, 1)
		ON CONFLICT (address) DO UPDATE SET nonce = nonce + 1`, address)
	if err != nil {
		return fmt.Errorf("bump nonce: %w", err)
	}
	return nil
}

// subnetParams are a subnet's settable parameters.
type subnetParams struct {
	Tempo             uint16
	Burn              subnet.Balance
	ImmunityPeriod    uint64
	MaxUIDs           uint16
	WeightsRateLimit  uint64
	WeightsVersion    uint64
	MinAllowedWeights uint16
	MaxValidators     uint16
	ActivityCutoff    uint64
	ServingRateLimit  uint64
	MaxRegsPerBlock   uint16
	Kappa             uint16
	BondsMovingAvg    uint64
	EmissionPerBlock  subnet.Balance
	OwnerCut          uint16
	// CommitReveal: weights are committed timelocked and revealed by the
	// chain RevealPeriod epochs later; set_weights is refused.
	CommitReveal bool
	RevealPeriod uint64
}

func paramsFromGenesis(g Genesis) subnetParams {
	return subnetParams{
		Tempo:             g.Tempo,
		Burn:              g.Burn,
		ImmunityPeriod:    g.ImmunityPeriod,
		MaxUIDs:           g.MaxAllowedUIDs,
		WeightsRateLimit:  g.WeightsRateLimit,
		MinAllowedWeights: g.MinAllowedWeights,
		MaxValidators:     g.MaxAllowedValidators,
		ActivityCutoff:    g.ActivityCutoff,
		ServingRateLimit:  g.ServingRateLimit,
		MaxRegsPerBlock:   g.MaxRegistrationsPerBlock,
		Kappa:             g.Kappa,
		BondsMovingAvg:    g.BondsMovingAverage,
		EmissionPerBlock:  g.EmissionPerBlock,
		OwnerCut:          g.OwnerCut,
		CommitReveal:      true,
		RevealPeriod:      1,
	}
}

// subnetState is one row of the subnets table.
type subnetState struct {
	NetUID    subnet.NetUID
	Owner     string
	CreatedAt uint64
	LastEpoch uint64
	Epochs    uint64 // epochs run with at least one neuron
	// EpochIndex counts every epoch (subtensor's SubnetEpochIndex);
	// commits are filed under it.
	EpochIndex uint64
	RegsBlock  uint64
	RegsCount  uint64
	subnetParams
}

const subnetColumns = `netuid, owner, created_at, last_epoch, epochs, regs_block, regs_count, tempo, burn,
	immunity_period, max_uids, weights_rate_limit, weights_version, min_allowed_weights, max_validators,
	activity_cutoff, serving_rate_limit, max_regs_per_block, kappa, bonds_moving_avg, emission_per_block, owner_cut,
	commit_reveal, reveal_period, epoch_index`

type scanner interface{ Scan(dest ...any) error }

func scanSubnet(r scanner) (*subnetState, error) {
	var s subnetState
	err := r.Scan(&s.NetUID, &s.Owner, &s.CreatedAt, &s.LastEpoch, &s.Epochs, &s.RegsBlock, &s.RegsCount, &s.Tempo, &s.Burn,
		&s.ImmunityPeriod, &s.MaxUIDs, &s.WeightsRateLimit, &s.WeightsVersion, &s.MinAllowedWeights, &s.MaxValidators,
		&s.ActivityCutoff, &s.ServingRateLimit, &s.MaxRegsPerBlock, &s.Kappa, &s.BondsMovingAvg, &s.EmissionPerBlock, &s.OwnerCut,
		&s.CommitReveal, &s.RevealPeriod, &s.EpochIndex)
	return &s, err
}

// loadSubnet reads netuid; ENOSUBNET when it does not exist.
func loadSubnet(ctx context.Context, q queryer, netuid subnet.NetUID) (*subnetState, error) {
	s, err := scanSubnet(q.QueryRowContext(ctx, `SELECT `+subnetColumns+` FROM subnets WHERE netuid = ?`, netuid))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, subnet.Errorf(subnet.ENOSUBNET, "subnet %d does not exist", netuid)
	}
	if err != nil {
		return nil, fmt.Errorf("read subnet %d: %w", netuid, err)
	}
	return s, nil
}

func loadSubnets(ctx context.Context, q queryer) ([]*subnetState, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+subnetColumns+` FROM subnets ORDER BY netuid`)
	if err != nil {
		return nil, fmt.Errorf("list subnets: %w", err)
	}
	defer rows.Close()
	var out []*subnetState
	for rows.Next() {
		s, err := scanSubnet(rows)
		if err != nil {
			return nil, fmt.Errorf("list subnets: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func saveSubnetParams(ctx context.Context, q queryer, netuid subnet.NetUID, p subnetParams) error {
	_, err := q.ExecContext(ctx, `UPDATE subnets SET tempo = ?, burn = ?, immunity_period = ?, max_uids = ?,
		weights_rate_limit = ?, weights_version = ?, min_allowed_weights = ?, max_validators = ?, activity_cutoff = ?,
		serving_rate_limit = ?, max_regs_per_block = ?, kappa = ?, bonds_moving_avg = ?, emission_per_block = ?,
		owner_cut = ?, commit_reveal = ?, reveal_period = ? WHERE netuid = ?`,
		p.Tempo, int64(p.Burn), p.ImmunityPeriod, p.MaxUIDs, p.WeightsRateLimit, int64(p.WeightsVersion), p.MinAllowedWeights,
		p.MaxValidators, p.ActivityCutoff, p.ServingRateLimit, p.MaxRegsPerBlock, p.Kappa, p.BondsMovingAvg,
		int64(p.EmissionPerBlock), p.OwnerCut, p.CommitReveal, p.RevealPeriod, netuid)
	if err != nil {
		return fmt.Errorf("update subnet %d: %w", netuid, err)
	}
	return nil
}

func (s *subnetState) hyperparameters() subnet.Hyperparameters {
	return subnet.Hyperparameters{
		Tempo:                s.Tempo,
		WeightsRateLimit:     s.WeightsRateLimit,
		WeightsVersionKey:    s.WeightsVersion,
		ImmunityPeriod:       s.ImmunityPeriod,
		MinAllowedWeights:    s.MinAllowedWeights,
		MaxWeightLimit:       65535,
		MaxAllowedUIDs:       s.MaxUIDs,
		MaxAllowedValidators: s.MaxValidators,
		ActivityCutoff:       s.ActivityCutoff,
		Kappa:                s.Kappa,
		BondsMovingAverage:   s.BondsMovingAvg,
		ServingRateLimit:     s.ServingRateLimit,
		Burn:                 s.Burn,
		CommitRevealEnabled:  s.CommitReveal,
		RevealPeriodEpochs:   s.RevealPeriod,
		RegistrationAllowed:  true,
	}
}

// weightEntry is one stored weight: [uid, value].
type weightEntry [2]uint16

// neuronState is one neuron with the columns the rules and the epoch need.
type neuronState struct {
	subnet.Neuron
	WeightsAt *uint64
	Weights   []weightEntry
	Bonds     []float64
}

// loadNeurons reads netuid's neurons ordered by uid, with their stake (the
// sum over staking coldkeys) and the hotkey owner's coldkey.
func loadNeurons(ctx context.Context, q queryer, netuid subnet.NetUID) ([]neuronState, error) {
	rows, err := q.QueryContext(ctx, `SELECT n.uid, n.hotkey, h.coldkey, n.registered_at, n.last_update, n.weights_at,
		n.weights, n.bonds, n.axon_block, n.axon_version, n.axon_ip, n.axon_port, n.axon_ip_type, n.axon_protocol,
		n.active, n.validator_permit, n.rank, n.trust, n.consensus, n.incentive, n.dividends, n.validator_trust,
		n.emission, COALESCE((SELECT SUM(s.amount) FROM stakes s WHERE s.netuid = n.netuid AND s.hotkey = n.hotkey), 0)
		FROM neurons n JOIN hotkeys h ON h.hotkey = n.hotkey WHERE n.netuid = ? ORDER BY n.uid`, netuid)
	if err != nil {
		return nil, fmt.Errorf("read neurons of subnet %d: %w", netuid, err)
	}
	defer rows.Close()
	var out []neuronState
	for rows.Next() {
		var n neuronState
		var weights, bonds string
		var weightsAt sql.NullInt64
		a := &n.Axon
		err := rows.Scan(&n.UID, &n.Hotkey, &n.Coldkey, &n.RegisteredAt, &n.LastUpdate, &weightsAt,
			&weights, &bonds, &a.Block, &a.Version, &a.IP, &a.Port, &a.IPType, &a.Protocol,
			&n.Active, &n.ValidatorPermit, &n.Rank, &n.Trust, &n.Consensus, &n.Incentive, &n.Dividends, &n.ValidatorTrust,
			&n.Emission, &n.Stake)
		if err != nil {
			return nil, fmt.Errorf("read neurons of subnet %d: %w", netuid, err)
		}
		if weightsAt.Valid {
			v := uint64(weightsAt.Int64)
			n.WeightsAt = &v
		}
		if err := json.Unmarshal([]byte(weights), &n.Weights); err != nil {
			return nil, fmt.Errorf("read weights of uid %d: %w", n.UID, err)
		}
		if err := json.Unmarshal([]byte(bonds), &n.Bonds); err != nil {
			return nil, fmt.Errorf("read bonds of uid %d: %w", n.UID, err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// neuronByHotkey returns hotkey's uid on netuid.
func neuronByHotkey(ctx context.Context, q queryer, netuid subnet.NetUID, hotkey string) (subnet.UID, bool, error) {
	var uid subnet.UID
	err := q.QueryRowContext(ctx, `SELECT uid FROM neurons WHERE netuid = ? AND hotkey = ?`, netuid, hotkey).Scan(&uid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("look up hotkey: %w", err)
	}
	return uid, true, nil
}

func subnetworkN(ctx context.Context, q queryer, netuid subnet.NetUID) (uint16, error) {
	var n uint16
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM neurons WHERE netuid = ?`, netuid).Scan(&n); err != nil {
		return 0, fmt.Errorf("count neurons of subnet %d: %w", netuid, err)
	}
	return n, nil
}

// hotkeyOwner returns the coldkey that owns hotkey ("" when none does).
func hotkeyOwner(ctx context.Context, q queryer, hotkey string) (string, error) {
	var c string
	err := q.QueryRowContext(ctx, `SELECT coldkey FROM hotkeys WHERE hotkey = ?`, hotkey).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up hotkey owner: %w", err)
	}
	return c, nil
}

// addStake adds amount to coldkey's stake on hotkey in netuid.
func addStake(ctx context.Context, q queryer, netuid subnet.NetUID, hotkey, coldkey string, amount subnet.Balance) error {
	if amount == 0 {
		return nil
	}
	var have subnet.Balance
	err := q.QueryRowContext(ctx, `SELECT COALESCE(SUM(amount), 0) FROM stakes WHERE netuid = ? AND hotkey = ?`, netuid, hotkey).Scan(&have)
	if err != nil {
		return fmt.Errorf("read stake: %w", err)
	}
	if amount > maxAmount || have > maxAmount-amount {
		return subnet.Errorf(subnet.EINVALID, "stake of %s would exceed %s", hotkey, subnet.Balance(maxAmount))
	}
	_, err = q.ExecContext(ctx, `INSERT INTO stakes (netuid, hotkey, coldkey, amount) VALUES (?, ?, ?, ?)
		ON CONFLICT (netuid, hotkey, coldkey) DO UPDATE SET amount = amount + excluded.amount`,
		netuid, hotkey, coldkey, int64(amount))
	if err != nil {
		return fmt.Errorf("add stake: %w", err)
	}
	return nil
}

// unstakeAll returns every stake on hotkey in netuid to the staking
// coldkeys' free balances.
func unstakeAll(ctx context.Context, q queryer, netuid subnet.NetUID, hotkey string) error {
	rows, err := q.QueryContext(ctx, `SELECT coldkey, amount FROM stakes WHERE netuid = ? AND hotkey = ?`, netuid, hotkey)
	if err != nil {
		return fmt.Errorf("read stakes: %w", err)
	}
	type stake struct {
		coldkey string
		amount  subnet.Balance
	}
	var stakes []stake
	for rows.Next() {
		var s stake
		if err := rows.Scan(&s.coldkey, &s.amount); err != nil {
			rows.Close()
			return fmt.Errorf("read stakes: %w", err)
		}
		stakes = append(stakes, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read stakes: %w", err)
	}
	for _, s := range stakes {
		if err := credit(ctx, q, s.coldkey, s.amount); err != nil {
			return err
		}
	}
	if _, err := q.ExecContext(ctx, `DELETE FROM stakes WHERE netuid = ? AND hotkey = ?`, netuid, hotkey); err != nil {
		return fmt.Errorf("delete stakes: %w", err)
	}
	return nil
}
