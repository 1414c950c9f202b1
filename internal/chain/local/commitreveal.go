package local

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/tlock"
)

// Commit-reveal weights (v4), with subtensor's rules. On a subnet with
// commit-reveal on, set_weights is refused and a validator submits
// commit_timelocked_weights: its weights, SCALE-encoded as
// subnet.WeightsPayload and timelock-encrypted (package tlock) to a round
// of this chain's beacon. The commit is filed under the subnet's current
// epoch. At every block of the epoch RevealPeriod epochs later (before that
// block's epoch runs, so the weights count in it), the chain decrypts each
// commit whose round its beacon has published, checks the payload names
// the committer, and applies the weights with set_weights' checks;
// commits from older epochs are dropped. Nothing a committer sends can
// stop block production: every failure drops that commit with a log line.
//
// The beacon is the chain's own BLS key, kept in the chain file, signing
// round r at Genesis + (r-1)·Period in drand quicknet's scheme; its
// public parameters and signatures are readable over the chain API.

// MaxRevealPeriod bounds a subnet's reveal period (subtensor's
// MAX_COMMIT_REVEAL_PEROIDS).
const MaxRevealPeriod = 100

// DefaultBeaconPeriod is the beacon period of a chain created with
// manual blocks (Config.BlockTime 0) and no Config.BeaconPeriod.
const DefaultBeaconPeriod = time.Second

// beacon is the chain's beacon key and parameters.
type beacon struct {
	key *tlock.SecretKey
	tlock.Beacon
}

// loadBeacon reads the beacon or, on a chain without one, creates it with
// genesis now and the given period.
func loadBeacon(ctx context.Context, tx *sql.Tx, now time.Time, period time.Duration) (*beacon, error) {
	var secret []byte
	var genesisMS, periodMS int64
	err := tx.QueryRowContext(ctx, `SELECT secret, genesis_ms, period_ms FROM beacon WHERE id = 1`).Scan(&secret, &genesisMS, &periodMS)
	if errors.Is(err, sql.ErrNoRows) {
		k, err := tlock.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		secret, genesisMS, periodMS = k.Bytes(), now.UnixMilli(), max(period.Milliseconds(), 1)
		if _, err := tx.ExecContext(ctx, `INSERT INTO beacon (id, secret, genesis_ms, period_ms) VALUES (1, ?, ?, ?)`, secret, genesisMS, periodMS); err != nil {
			return nil, fmt.Errorf("create beacon: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read beacon: %w", err)
	}
	k, err := tlock.ParseSecretKey(secret)
	if err != nil {
		return nil, err
	}
	return &beacon{key: k, Beacon: tlock.Beacon{PublicKey: k.PublicKey(), Genesis: time.UnixMilli(genesisMS), Period: time.Duration(periodMS) * time.Millisecond}}, nil
}

// commitWeightsArgs are commit_timelocked_weights' arguments.
type commitWeightsArgs struct {
	NetUID      subnet.NetUID `json:"netuid"`
	Commit      []byte        `json:"commit"`
	RevealRound uint64        `json:"reveal_round"`
	Version     uint16        `json:"commit_reveal_version"`
}

// currentEpoch is the epoch a commit at block is filed under (subtensor's
// current_epoch_with_lookahead).
func (s *subnetState) currentEpoch(block uint64) uint64 {
	if s.epochDue(block) {
		return s.EpochIndex + 1
	}
	return s.EpochIndex
}

// commitWeights files a timelocked commit. Checks, in order (subtensor's
// names in the messages): subnet, commit-reveal on, version 4,
// registration, the weights rate limit since the last commit, fewer than
// 10 unrevealed commits in this epoch; then, beyond subtensor, that the
// commit is a well-formed ciphertext and its round neither published
// already (its weights would be public at once) nor later than the reveal
// epoch can wait for.
func commitWeights(ctx context.Context, q queryer, c *chainState, hotkey string, a *commitWeightsArgs) error {
	s, err := loadSubnet(ctx, q, a.NetUID)
	if err != nil {
		return err
	}
	if !s.CommitReveal {
		return subnet.Errorf(subnet.ECOMMITREVEALOFF, "CommitRevealDisabled: subnet %d takes weights with set_weights, not commits", a.NetUID)
	}
	if a.Version != subnet.CommitRevealVersion {
		return subnet.Errorf(subnet.EINVALID, "IncorrectCommitRevealVersion: commit-reveal version %d, this chain requires %d", a.Version, subnet.CommitRevealVersion)
	}
	uid, ok, err := neuronByHotkey(ctx, q, a.NetUID, hotkey)
	if err != nil {
		return err
	}
	if !ok {
		return subnet.Errorf(subnet.ENOTREGISTERED, "HotKeyNotRegisteredInSubNet: hotkey %s is not registered on subnet %d", hotkey, a.NetUID)
	}
	var last sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT commit_at FROM neurons WHERE netuid = ? AND uid = ?`, a.NetUID, uid).Scan(&last); err != nil {
		return fmt.Errorf("read commit block: %w", err)
	}
	if last.Valid && c.block-uint64(last.Int64) < s.WeightsRateLimit {
		at := uint64(last.Int64)
		return subnet.Errorf(subnet.ERATELIMITED, "CommittingWeightsTooFast: subnet %d: last commit at block %d, next allowed at block %d (best block %d)",
			a.NetUID, at, at+s.WeightsRateLimit, c.block)
	}
	epoch := s.currentEpoch(c.block)
	var pending int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM weight_commits WHERE netuid = ? AND epoch = ? AND hotkey = ?`, a.NetUID, epoch, hotkey).Scan(&pending); err != nil {
		return fmt.Errorf("count commits: %w", err)
	}
	if pending >= subnet.MaxUnrevealedCommits {
		return subnet.Errorf(subnet.ERATELIMITED, "TooManyUnrevealedCommits: hotkey %s has %d unrevealed commits in epoch %d of subnet %d", hotkey, pending, epoch, a.NetUID)
	}
	if _, err := tlock.ParseCiphertext(a.Commit); err != nil {
		return subnet.Errorf(subnet.EINVALID, "commit refused: %v", err)
	}
	b := c.beacon
	latest := b.RoundAt(c.now)
	if a.RevealRound <= latest {
		return subnet.Errorf(subnet.EINVALID, "commit refused: reveal round %d is already published (latest %d): the weights would be readable at once", a.RevealRound, latest)
	}
	if limit := latest + maxRoundsAhead(s, c.blockTime, b.Period); a.RevealRound > limit {
		return subnet.Errorf(subnet.EINVALID, "commit refused: reveal round %d is too far ahead (latest %d, at most %d): the reveal epoch would pass before it", a.RevealRound, latest, limit)
	}
	_, err = q.ExecContext(ctx, `INSERT INTO weight_commits (netuid, epoch, hotkey, block, commit_bytes, reveal_round) VALUES (?, ?, ?, ?, ?, ?)`,
		a.NetUID, epoch, hotkey, c.block, a.Commit, a.RevealRound)
	if err != nil {
		return fmt.Errorf("store commit: %w", err)
	}
	if _, err := q.ExecContext(ctx, `UPDATE neurons SET commit_at = ?, last_update = ? WHERE netuid = ? AND uid = ?`, c.block, c.block, a.NetUID, uid); err != nil {
		return fmt.Errorf("record commit: %w", err)
	}
	return nil
}

// maxRoundsAhead is how far past the latest round a reveal round may be:
// the beacon rounds in reveal_period + 2 epochs, plus a minute.
func maxRoundsAhead(s *subnetState, blockTime, period time.Duration) uint64 {
	if blockTime <= 0 {
		blockTime = period
	}
	span := time.Duration(s.RevealPeriod+2) * time.Duration(uint64(s.Tempo)+1) * blockTime
	return uint64((span+time.Minute)/period) + 1
}

// revealCommits runs at block for s before its epoch (if one is due): it
// drops the commits of epochs before the reveal epoch and reveals those of
// the reveal epoch whose round the beacon has published at now.
func revealCommits(ctx context.Context, q queryer, log *slog.Logger, s *subnetState, block uint64, b *beacon, now time.Time) error {
	cur := s.currentEpoch(block)
	if cur < s.RevealPeriod {
		return nil
	}
	epoch := cur - s.RevealPeriod
	res, err := q.ExecContext(ctx, `DELETE FROM weight_commits WHERE netuid = ? AND epoch < ?`, s.NetUID, epoch)
	if err != nil {
		return fmt.Errorf("drop expired commits: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		log.Warn("weight commits expired unrevealed: their round was not published during their reveal epoch", "netuid", s.NetUID, "block", block, "count", n)
	}
	type row struct {
		id     int64
		hotkey string
		block  uint64
		commit []byte
		round  uint64
	}
	rows, err := q.QueryContext(ctx, `SELECT id, hotkey, block, commit_bytes, reveal_round FROM weight_commits WHERE netuid = ? AND epoch = ? ORDER BY id`, s.NetUID, epoch)
	if err != nil {
		return fmt.Errorf("read commits: %w", err)
	}
	var due []row
	latest := b.RoundAt(now)
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.hotkey, &r.block, &r.commit, &r.round); err != nil {
			rows.Close()
			return fmt.Errorf("read commits: %w", err)
		}
		if r.round <= latest {
			due = append(due, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read commits: %w", err)
	}
	for _, r := range due {
		if _, err := q.ExecContext(ctx, `DELETE FROM weight_commits WHERE id = ?`, r.id); err != nil {
			return fmt.Errorf("take commit: %w", err)
		}
		attrs := []any{"netuid", s.NetUID, "block", block, "hotkey", r.hotkey, "commit_block", r.block, "round", r.round, "epoch", epoch}
		a, reason := openCommit(s.NetUID, r.hotkey, r.commit, b.key.Sign(r.round))
		if reason != "" {
			log.Warn("weight commit dropped: "+reason, attrs...)
			continue
		}
		err := applyWeights(ctx, q, s, block, r.hotkey, a, true)
		var rule *subnet.Error
		switch {
		case errors.As(err, &rule):
			log.Warn("weight commit dropped: the revealed weights break a rule", append(attrs, "code", rule.Code, "err", rule.Message)...)
		case err != nil:
			return err
		default:
			log.Info("weights revealed", append(attrs, "uids", len(a.UIDs))...)
		}
	}
	return nil
}

// openCommit decrypts a commit with its round's signature and decodes the
// payload, which must name the committer. It returns why it cannot.
func openCommit(netuid subnet.NetUID, hotkey string, commit, sig []byte) (*setWeightsArgs, string) {
	plain, err := tlock.Decrypt(commit, sig)
	if err != nil {
		return nil, fmt.Sprintf("it does not decrypt with its round's signature (%v)", err)
	}
	p, err := subnet.DecodeWeightsPayload(plain)
	if err != nil {
		return nil, fmt.Sprintf("its payload is malformed (%v)", err)
	}
	pub, err := keys.PublicKeyFromSS58(hotkey)
	if err != nil || !bytes.Equal(p.Hotkey, pub) {
		return nil, "its payload names another hotkey than the committer"
	}
	return &setWeightsArgs{NetUID: netuid, UIDs: p.UIDs, Weights: p.Values, VersionKey: p.VersionKey}, ""
}
