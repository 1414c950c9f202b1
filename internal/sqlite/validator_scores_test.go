package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

func TestRecentScores(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "v.db"), ValidatorSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := NewValidatorStore(db)
	if rows, err := s.RecentScores(ctx, 5); err != nil || len(rows) != 0 {
		t.Fatalf("empty store: %v %v", rows, err)
	}
	at := time.Unix(1_700_000_000, 0)
	for b := uint64(1); b <= 4; b++ {
		err := s.AddScores(ctx, b*10, at, []market.ScoreEntry{{UID: 2, Hotkey: "b", Score: 0.5, Weight: 7}, {UID: 1, Hotkey: "a", Score: float64(b) / 10, Weight: uint16(b)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	rows, err := s.RecentScores(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || rows[0].Block != 30 || rows[0].UID != 1 || rows[0].Score != 0.3 || rows[3].Block != 40 || rows[3].UID != 2 || rows[3].Hotkey != "b" {
		t.Fatalf("rows %+v", rows)
	}
}
