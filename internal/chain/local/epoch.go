package local

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/bits"

	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/yuma"
)

// epochDue reports whether s runs an epoch at block.
func (s *subnetState) epochDue(block uint64) bool {
	return block-s.LastEpoch >= uint64(s.Tempo)
}

// nextEpoch is the first block at which s's epoch is due.
func (s *subnetState) nextEpoch() uint64 { return s.LastEpoch + uint64(s.Tempo) }

// epochEmission is what s has accumulated for its epoch at block: the
// emission per block times the blocks since its last epoch, capped so the
// issuance stays in range.
func (s *subnetState) epochEmission(block uint64) subnet.Balance {
	hi, lo := bits.Mul64(uint64(s.EmissionPerBlock), block-s.LastEpoch)
	if hi != 0 || lo > maxAmount/4 {
		return maxAmount / 4
	}
	return subnet.Balance(lo)
}

// mulFrac returns v·num/den rounded down, without overflow.
func mulFrac(v, num, den uint64) uint64 {
	hi, lo := bits.Mul64(v, num)
	if den == 0 || hi >= den {
		return 0
	}
	q, _ := bits.Div64(hi, lo, den)
	return q
}

// runEpoch runs s's epoch at block: Yuma over the stored neurons, its
// outputs stored on each neuron, and the emission accumulated since the
// last epoch paid out — the owner cut to the owner's coldkey balance, the
// rest by each uid's Yuma emission share as stake on its hotkey (held by
// the hotkey's coldkey). Emission that no uid earns (no neurons, no stake)
// is not minted. A Yuma failure or a payout that cannot be made (an amount
// would leave its range) is logged and skips the payout, so a bad subnet
// never stops block production.
func runEpoch(ctx context.Context, q queryer, log *slog.Logger, s *subnetState, block uint64) error {
	total := s.epochEmission(block)
	neurons, err := loadNeurons(ctx, q, s.NetUID)
	if err != nil {
		return err
	}
	markEpoch := func(ran bool) error {
		inc := 0
		if ran {
			inc = 1
		}
		_, err := q.ExecContext(ctx, `UPDATE subnets SET last_epoch = ?, epochs = epochs + ?, epoch_index = epoch_index + 1 WHERE netuid = ?`, block, inc, s.NetUID)
		if err != nil {
			return fmt.Errorf("record epoch of subnet %d: %w", s.NetUID, err)
		}
		return nil
	}
	if len(neurons) == 0 {
		return markEpoch(false)
	}
	in := epochInput(s, neurons, block)
	out, err := yuma.Epoch(epochParams(s), in)
	if err == nil {
		err = checkOutput(out, len(neurons))
	}
	if err != nil {
		log.Error("epoch failed; no emission paid", "netuid", s.NetUID, "block", block, "err", err)
		return markEpoch(false)
	}

	// The payout runs in a savepoint: when it cannot be made (an amount
	// would leave its range), it is undone, logged and skipped like a Yuma
	// failure, and the block is still sealed. Otherwise one subnet's
	// overflow would abort every block from then on.
	if _, err := q.ExecContext(ctx, `SAVEPOINT epoch_payout`); err != nil {
		return fmt.Errorf("epoch of subnet %d: %w", s.NetUID, err)
	}
	paid, cut, err := payout(ctx, q, s, neurons, out, total)
	if err != nil {
		if _, rerr := q.ExecContext(ctx, `ROLLBACK TO epoch_payout`); rerr != nil {
			return fmt.Errorf("epoch of subnet %d: undo the payout after %v: %w", s.NetUID, err, rerr)
		}
		if _, rerr := q.ExecContext(ctx, `RELEASE epoch_payout`); rerr != nil {
			return fmt.Errorf("epoch of subnet %d: %w", s.NetUID, rerr)
		}
		log.Error("epoch payout failed; no emission paid", "netuid", s.NetUID, "block", block, "err", err)
		return markEpoch(false)
	}
	if _, err := q.ExecContext(ctx, `RELEASE epoch_payout`); err != nil {
		return fmt.Errorf("epoch of subnet %d: %w", s.NetUID, err)
	}
	log.Info("epoch", "netuid", s.NetUID, "block", block, "uids", len(neurons), "emission", paid.String(), "owner_cut", cut.String())
	return markEpoch(true)
}

// payout stores Yuma's outputs on each neuron and pays total: the owner
// cut to the owner's coldkey and the rest by emission share as stake. It
// returns what was minted and the cut.
func payout(ctx context.Context, q queryer, s *subnetState, neurons []neuronState, out *yuma.Output, total subnet.Balance) (paid, cut subnet.Balance, err error) {
	cut = subnet.Balance(mulFrac(uint64(total), uint64(s.OwnerCut), math.MaxUint16))
	rest := total - cut
	for i, n := range neurons {
		amount := subnet.Balance(math.Floor(float64(rest) * unit(out.Emission[i])))
		if amount > rest-paid {
			amount = rest - paid
		}
		paid += amount
		if err := addStake(ctx, q, s.NetUID, n.Hotkey, n.Coldkey, amount); err != nil {
			return 0, 0, err
		}
		var bonds = []byte("[]")
		if i < len(out.Bonds) && out.Bonds[i] != nil {
			row := make([]float64, len(out.Bonds[i]))
			for j, b := range out.Bonds[i] {
				row[j] = unit(b)
			}
			if bonds, err = json.Marshal(row); err != nil {
				return 0, 0, fmt.Errorf("encode bonds: %w", err)
			}
		}
		_, err = q.ExecContext(ctx, `UPDATE neurons SET active = ?, validator_permit = ?, rank = ?, trust = ?,
			consensus = ?, incentive = ?, dividends = ?, validator_trust = ?, emission = ?, bonds = ?
			WHERE netuid = ? AND uid = ?`,
			out.Active[i], out.ValidatorPermit[i], unit(out.Rank[i]), unit(out.Trust[i]), unit(out.Consensus[i]),
			unit(out.Incentive[i]), unit(out.Dividends[i]), unit(out.ValidatorTrust[i]), int64(amount), string(bonds), s.NetUID, n.UID)
		if err != nil {
			return 0, 0, fmt.Errorf("store epoch of uid %d: %w", n.UID, err)
		}
	}
	if paid > 0 && cut > 0 {
		if err := credit(ctx, q, s.Owner, cut); err != nil {
			return 0, 0, err
		}
		paid += cut
	}
	if err := changeIssuance(ctx, q, int64(paid)); err != nil {
		return 0, 0, err
	}
	return paid, cut, nil
}

func epochParams(s *subnetState) yuma.Params {
	p := yuma.DefaultParams()
	p.Kappa = float64(s.Kappa) / math.MaxUint16
	p.BondsMovingAverage = float64(s.BondsMovingAvg) / 1e6
	p.MaxAllowedValidators = int(s.MaxValidators)
	p.ActivityCutoff = s.ActivityCutoff
	return p
}

// epochInput builds Yuma's input from neurons ordered by uid (uids are
// dense: 0..n-1). At a subnet's first epoch with neurons the previous
// permits are nil, so validators count at once.
func epochInput(s *subnetState, neurons []neuronState, block uint64) *yuma.Input {
	n := len(neurons)
	in := &yuma.Input{
		Block:          block,
		LastEpochBlock: s.LastEpoch,
		Stake:          make([]float64, n),
		LastUpdate:     make([]uint64, n),
		RegisteredAt:   make([]uint64, n),
		Weights:        make([][]yuma.Weight, n),
		OwnerUID:       -1,
	}
	if s.Epochs > 0 {
		in.ValidatorPermit = make([]bool, n)
	}
	var bonds bool
	for i, nr := range neurons {
		in.Stake[i] = float64(nr.Stake)
		in.LastUpdate[i] = nr.LastUpdate
		in.RegisteredAt[i] = nr.RegisteredAt
		for _, w := range nr.Weights {
			in.Weights[i] = append(in.Weights[i], yuma.Weight{UID: int(w[0]), Value: w[1]})
		}
		if in.ValidatorPermit != nil {
			in.ValidatorPermit[i] = nr.ValidatorPermit
		}
		bonds = bonds || len(nr.Bonds) > 0
	}
	if bonds {
		in.Bonds = make([][]float64, n)
		for i, nr := range neurons {
			row := nr.Bonds
			if len(row) > n {
				row = row[:n]
			}
			in.Bonds[i] = row
		}
	}
	return in
}

func checkOutput(out *yuma.Output, n int) error {
	for _, l := range []int{len(out.Active), len(out.ValidatorPermit), len(out.Rank), len(out.Trust), len(out.Consensus),
		len(out.Incentive), len(out.Dividends), len(out.ValidatorTrust), len(out.Emission)} {
		if l != n {
			return fmt.Errorf("yuma output has %d entries for %d uids", l, n)
		}
	}
	return nil
}

// unit clamps a fraction to [0, 1] (NaN to 0) before it is stored.
func unit(x float64) float64 {
	if !(x > 0) {
		return 0
	}
	return min(x, 1)
}
