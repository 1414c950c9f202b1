package sqlite

import (
	"context"
	"fmt"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/subnet"
)

// ScoreRow is one miner's score in the weights submission made at Block.
type ScoreRow struct {
	Block uint64
	market.ScoreEntry
}

// RecentScores returns every miner's score in the newest submissions
// (at most submissions of them), oldest block first: the series of a
// score chart.
func (s *ValidatorStore) RecentScores(ctx context.Context, submissions int) ([]ScoreRow, error) {
	if submissions <= 0 {
		submissions = 100
	}
	rows, err := s.db.SQL().QueryContext(ctx, `SELECT block, uid, hotkey, score, weight FROM score_history
		WHERE block IN (SELECT DISTINCT block FROM score_history ORDER BY block DESC LIMIT ?)
		ORDER BY block, uid`, submissions)
	if err != nil {
		return nil, fmt.Errorf("query recent scores: %w", err)
	}
	defer rows.Close()
	var out []ScoreRow
	for rows.Next() {
		var r ScoreRow
		var block, uid, w int64
		if err := rows.Scan(&block, &uid, &r.Hotkey, &r.Score, &w); err != nil {
			return nil, fmt.Errorf("scan score: %w", err)
		}
		r.Block, r.UID, r.Weight = uint64(block), subnet.UID(uid), uint16(w)
		out = append(out, r)
	}
	return out, rows.Err()
}
