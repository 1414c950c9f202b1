package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/subnet"
)

// ValidatorSchema is the validator's state: Proof-of-GPU results per miner
// hotkey (the newest few kept), the miners' last specs answers, the scores
// behind each weights submission, the timelocked weights commits until
// the chain reveals them, and a few schedule markers.
var ValidatorSchema = Schema{
	Name: "validator",
	Migrations: []string{`
CREATE TABLE pog_results (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	hotkey        TEXT NOT NULL,
	uid           INTEGER NOT NULL,
	block         INTEGER NOT NULL,
	at            INTEGER NOT NULL, -- unix nanoseconds, UTC
	outcome       TEXT NOT NULL,
	model         TEXT NOT NULL DEFAULT '',
	count         INTEGER NOT NULL DEFAULT 0,
	claimed       TEXT NOT NULL DEFAULT '',
	n             INTEGER NOT NULL DEFAULT 0,
	elapsed_ns    INTEGER NOT NULL DEFAULT 0,
	attempts      INTEGER NOT NULL DEFAULT 0,
	reason        TEXT NOT NULL DEFAULT '',
	host_key      TEXT NOT NULL DEFAULT '',
	dealloc_error TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX pog_results_hotkey ON pog_results (hotkey, id);
CREATE TABLE miner_specs (
	hotkey     TEXT PRIMARY KEY,
	specs      TEXT NOT NULL, -- JSON of market.Specs
	updated_at INTEGER NOT NULL
) STRICT;
CREATE TABLE score_history (
	block  INTEGER NOT NULL,
	at     INTEGER NOT NULL,
	uid    INTEGER NOT NULL,
	hotkey TEXT NOT NULL,
	score  REAL NOT NULL,
	weight INTEGER NOT NULL,
	PRIMARY KEY (block, uid)
) STRICT;
CREATE INDEX score_history_hotkey ON score_history (hotkey, block);
CREATE TABLE validator_state (
	key   TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) STRICT;
`, `
CREATE TABLE weight_commits (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	netuid       INTEGER NOT NULL,
	block        INTEGER NOT NULL,
	at           INTEGER NOT NULL,
	commit_epoch INTEGER NOT NULL,
	reveal_epoch INTEGER NOT NULL,
	reveal_round INTEGER NOT NULL,
	row          TEXT    NOT NULL, -- JSON [[uid, weight], ...]
	status       TEXT    NOT NULL
) STRICT;
CREATE INDEX weight_commits_status ON weight_commits (status, id);
`, `
-- The stable short code of each result (market.PoGCode).
ALTER TABLE pog_results ADD COLUMN code TEXT NOT NULL DEFAULT '';
`},
}

// MinerSpecs is a miner's last specs answer.
type MinerSpecs struct {
	Hotkey    string
	Specs     market.Specs
	UpdatedAt time.Time
}

// ValidatorStore keeps a validator's state. Every method runs in one
// transaction.
type ValidatorStore struct {
	db *DB
	// KeepScoreBlocks is the number of weights submissions whose scores
	// are kept (≤ 0 keeps all).
	KeepScoreBlocks int
}

// DefaultKeepScoreBlocks is NewValidatorStore's KeepScoreBlocks.
const DefaultKeepScoreBlocks = 1000

// NewValidatorStore returns the store of db, which must have been opened
// with ValidatorSchema.
func NewValidatorStore(db *DB) *ValidatorStore {
	return &ValidatorStore{db: db, KeepScoreBlocks: DefaultKeepScoreBlocks}
}

const pogColumns = `hotkey, uid, block, at, outcome, model, count, claimed, n, elapsed_ns, attempts, reason, host_key, dealloc_error, code`

// AddResult records r and keeps only the newest keep results of its
// hotkey (keep ≤ 0 keeps all).
func (s *ValidatorStore) AddResult(ctx context.Context, r market.PoGResult, keep int) error {
	if r.Hotkey == "" || r.Outcome == "" {
		return market.Errorf(market.EINVALID, "pog result needs a hotkey and an outcome")
	}
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO pog_results (`+pogColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Hotkey, int64(r.UID), int64(r.Block), r.At.UTC().UnixNano(), r.Outcome, r.Model, r.Count, r.Claimed, r.N,
			int64(r.Elapsed), r.Attempts, r.Reason, r.HostKey, r.DeallocError, string(r.Code))
		if err != nil {
			return fmt.Errorf("insert pog result of %s: %w", r.Hotkey, err)
		}
		if keep > 0 {
			_, err = tx.ExecContext(ctx, `DELETE FROM pog_results WHERE hotkey = ? AND id NOT IN
				(SELECT id FROM pog_results WHERE hotkey = ? ORDER BY id DESC LIMIT ?)`, r.Hotkey, r.Hotkey, keep)
			if err != nil {
				return fmt.Errorf("prune pog results of %s: %w", r.Hotkey, err)
			}
		}
		return nil
	})
}

// PoGResults returns up to limit results of hotkey, newest first.
func (s *ValidatorStore) PoGResults(ctx context.Context, hotkey string, limit int) ([]market.PoGResult, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.SQL().QueryContext(ctx, `SELECT `+pogColumns+` FROM pog_results WHERE hotkey = ? ORDER BY id DESC LIMIT ?`, hotkey, limit)
	if err != nil {
		return nil, fmt.Errorf("query pog results: %w", err)
	}
	out, err := scanPoG(rows)
	return out, err
}

// Results returns the newest perHotkey results of every hotkey,
// newest first.
func (s *ValidatorStore) Results(ctx context.Context, perHotkey int) (map[string][]market.PoGResult, error) {
	if perHotkey <= 0 {
		perHotkey = 100
	}
	rows, err := s.db.SQL().QueryContext(ctx, `SELECT `+pogColumns+` FROM
		(SELECT *, ROW_NUMBER() OVER (PARTITION BY hotkey ORDER BY id DESC) AS rn FROM pog_results)
		WHERE rn <= ? ORDER BY hotkey, id DESC`, perHotkey)
	if err != nil {
		return nil, fmt.Errorf("query pog results: %w", err)
	}
	list, err := scanPoG(rows)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]market.PoGResult)
	for _, r := range list {
		out[r.Hotkey] = append(out[r.Hotkey], r)
	}
	return out, nil
}

func scanPoG(rows *sql.Rows) ([]market.PoGResult, error) {
	defer rows.Close()
	var out []market.PoGResult
	for rows.Next() {
		var r market.PoGResult
		var uid, block, at, elapsed int64
		if err := rows.Scan(&r.Hotkey, &uid, &block, &at, &r.Outcome, &r.Model, &r.Count, &r.Claimed, &r.N,
			&elapsed, &r.Attempts, &r.Reason, &r.HostKey, &r.DeallocError, &r.Code); err != nil {
			return nil, fmt.Errorf("scan pog result: %w", err)
		}
		r.UID, r.Block, r.At, r.Elapsed = subnet.UID(uid), uint64(block), time.Unix(0, at).UTC(), time.Duration(elapsed)
		out = append(out, r)
	}
	return out, rows.Err()
}

// ForgetMiners deletes the results and specs of hotkeys (miners that left
// the subnet).
func (s *ValidatorStore) ForgetMiners(ctx context.Context, hotkeys []string) error {
	if len(hotkeys) == 0 {
		return nil
	}
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		for _, h := range hotkeys {
			if _, err := tx.ExecContext(ctx, `DELETE FROM pog_results WHERE hotkey = ?`, h); err != nil {
				return fmt.Errorf("forget %s: %w", h, err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM miner_specs WHERE hotkey = ?`, h); err != nil {
				return fmt.Errorf("forget %s: %w", h, err)
			}
		}
		return nil
	})
}

// SaveSpecs replaces the specs of each given miner (by hotkey), received
// at at.
func (s *ValidatorStore) SaveSpecs(ctx context.Context, specs map[string]market.Specs, at time.Time) error {
	if len(specs) == 0 {
		return nil
	}
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		for hotkey, sp := range specs {
			b, err := json.Marshal(sp)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO miner_specs (hotkey, specs, updated_at) VALUES (?, ?, ?)
				ON CONFLICT (hotkey) DO UPDATE SET specs = excluded.specs, updated_at = excluded.updated_at`,
				hotkey, string(b), at.UTC().UnixNano())
			if err != nil {
				return fmt.Errorf("save specs of %s: %w", hotkey, err)
			}
		}
		return nil
	})
}

// AllMinerSpecs returns every stored specs answer by hotkey.
func (s *ValidatorStore) AllMinerSpecs(ctx context.Context) (map[string]MinerSpecs, error) {
	rows, err := s.db.SQL().QueryContext(ctx, `SELECT hotkey, specs, updated_at FROM miner_specs`)
	if err != nil {
		return nil, fmt.Errorf("query specs: %w", err)
	}
	defer rows.Close()
	out := make(map[string]MinerSpecs)
	for rows.Next() {
		var m MinerSpecs
		var text string
		var at int64
		if err := rows.Scan(&m.Hotkey, &text, &at); err != nil {
			return nil, fmt.Errorf("scan specs: %w", err)
		}
		if err := json.Unmarshal([]byte(text), &m.Specs); err != nil {
			return nil, fmt.Errorf("specs of %s: %w", m.Hotkey, err)
		}
		m.UpdatedAt = time.Unix(0, at).UTC()
		out[m.Hotkey] = m
	}
	return out, rows.Err()
}

// SpecsByHotkey returns every stored specs answer by hotkey.
func (s *ValidatorStore) SpecsByHotkey(ctx context.Context) (map[string]market.Specs, error) {
	all, err := s.AllMinerSpecs(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]market.Specs, len(all))
	for h, m := range all {
		out[h] = m.Specs
	}
	return out, nil
}

// AddScores records the scores and weights submitted at block, keeping the
// newest KeepScoreBlocks submissions.
func (s *ValidatorStore) AddScores(ctx context.Context, block uint64, at time.Time, entries []market.ScoreEntry) error {
	keepBlocks := s.KeepScoreBlocks
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		for _, e := range entries {
			_, err := tx.ExecContext(ctx, `INSERT INTO score_history (block, at, uid, hotkey, score, weight) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT (block, uid) DO UPDATE SET at = excluded.at, hotkey = excluded.hotkey, score = excluded.score, weight = excluded.weight`,
				int64(block), at.UTC().UnixNano(), int64(e.UID), e.Hotkey, e.Score, int64(e.Weight))
			if err != nil {
				return fmt.Errorf("record scores: %w", err)
			}
		}
		if keepBlocks > 0 {
			_, err := tx.ExecContext(ctx, `DELETE FROM score_history WHERE block NOT IN
				(SELECT DISTINCT block FROM score_history ORDER BY block DESC LIMIT ?)`, keepBlocks)
			if err != nil {
				return fmt.Errorf("prune scores: %w", err)
			}
		}
		return nil
	})
}

// ScoreHistory returns up to limit recorded scores of hotkey, newest first,
// with the block each was submitted at.
func (s *ValidatorStore) ScoreHistory(ctx context.Context, hotkey string, limit int) ([]market.ScoreEntry, []uint64, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.SQL().QueryContext(ctx, `SELECT block, uid, hotkey, score, weight FROM score_history
		WHERE hotkey = ? ORDER BY block DESC LIMIT ?`, hotkey, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("query scores: %w", err)
	}
	defer rows.Close()
	var out []market.ScoreEntry
	var blocks []uint64
	for rows.Next() {
		var e market.ScoreEntry
		var block, uid, w int64
		if err := rows.Scan(&block, &uid, &e.Hotkey, &e.Score, &w); err != nil {
			return nil, nil, fmt.Errorf("scan score: %w", err)
		}
		e.UID, e.Weight = subnet.UID(uid), uint16(w)
		out = append(out, e)
		blocks = append(blocks, uint64(block))
	}
	return out, blocks, rows.Err()
}

// SetState records a named integer (schedule markers such as the block of
// the last sweep).
func (s *ValidatorStore) SetState(ctx context.Context, key string, value int64) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO validator_state (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
		return err
	})
}

// State returns a named integer; ok is false when it was never set.
func (s *ValidatorStore) State(ctx context.Context, key string) (value int64, ok bool, err error) {
	err = s.db.SQL().QueryRowContext(ctx, `SELECT value FROM validator_state WHERE key = ?`, key).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read state %s: %w", key, err)
	}
	return value, true, nil
}

// keepCommits is how many settled (revealed or missed) commits are kept.
const keepCommits = 100

// AddCommit records a pending weights commit.
func (s *ValidatorStore) AddCommit(ctx context.Context, c market.WeightCommit) error {
	row := make([][2]int, len(c.UIDs))
	for i := range c.UIDs {
		row[i] = [2]int{int(c.UIDs[i]), int(c.Weights[i])}
	}
	b, err := json.Marshal(row)
	if err != nil {
		return fmt.Errorf("encode commit: %w", err)
	}
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO weight_commits (netuid, block, at, commit_epoch, reveal_epoch, reveal_round, row, status)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, int64(c.NetUID), int64(c.Block), c.At.UTC().UnixNano(), int64(c.CommitEpoch),
			int64(c.RevealEpoch), int64(c.RevealRound), string(b), market.CommitPending)
		if err != nil {
			return fmt.Errorf("record commit: %w", err)
		}
		return nil
	})
}

// Commits returns the commits with status, oldest first.
func (s *ValidatorStore) Commits(ctx context.Context, status string) ([]market.WeightCommit, error) {
	rows, err := s.db.SQL().QueryContext(ctx, `SELECT id, netuid, block, at, commit_epoch, reveal_epoch, reveal_round, row, status
		FROM weight_commits WHERE status = ? ORDER BY id`, status)
	if err != nil {
		return nil, fmt.Errorf("query commits: %w", err)
	}
	defer rows.Close()
	var out []market.WeightCommit
	for rows.Next() {
		var c market.WeightCommit
		var netuid, block, at, ce, re, rr int64
		var row string
		if err := rows.Scan(&c.ID, &netuid, &block, &at, &ce, &re, &rr, &row, &c.Status); err != nil {
			return nil, fmt.Errorf("scan commit: %w", err)
		}
		var pairs [][2]int
		if err := json.Unmarshal([]byte(row), &pairs); err != nil {
			return nil, fmt.Errorf("decode commit %d: %w", c.ID, err)
		}
		for _, p := range pairs {
			c.UIDs, c.Weights = append(c.UIDs, subnet.UID(p[0])), append(c.Weights, uint16(p[1]))
		}
		c.NetUID, c.Block, c.At = subnet.NetUID(netuid), uint64(block), time.Unix(0, at).UTC()
		c.CommitEpoch, c.RevealEpoch, c.RevealRound = uint64(ce), uint64(re), uint64(rr)
		out = append(out, c)
	}
	return out, rows.Err()
}

// SetCommitStatus settles commit id, keeping the newest settled commits.
func (s *ValidatorStore) SetCommitStatus(ctx context.Context, id int64, status string) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE weight_commits SET status = ? WHERE id = ?`, status, id); err != nil {
			return fmt.Errorf("update commit %d: %w", id, err)
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM weight_commits WHERE status != ? AND id NOT IN
			(SELECT id FROM weight_commits WHERE status != ? ORDER BY id DESC LIMIT ?)`, market.CommitPending, market.CommitPending, keepCommits)
		if err != nil {
			return fmt.Errorf("prune commits: %w", err)
		}
		return nil
	})
}
