package sqlite

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/subnet"
)

// TestValidatorStoreCommits keeps pending commits across a reopen, so a
// restarted validator still knows how many the chain has not revealed.
func TestValidatorStoreCommits(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "validator.db")
	db, s := openValidatorStore(t, path)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 3 {
		c := market.WeightCommit{NetUID: 27, Block: uint64(100 + i), At: at, CommitEpoch: 5, RevealEpoch: 6, RevealRound: uint64(9000 + i),
			UIDs: []subnet.UID{1, 4}, Weights: []uint16{65535, uint16(i)}}
		if err := s.AddCommit(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	pending, err := s.Commits(ctx, market.CommitPending)
	if err != nil || len(pending) != 3 {
		t.Fatalf("%d pending, %v", len(pending), err)
	}
	if err := s.SetCommitStatus(ctx, pending[0].ID, market.CommitRevealed); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, s = openValidatorStore(t, path)
	pending, err = s.Commits(ctx, market.CommitPending)
	if err != nil || len(pending) != 2 {
		t.Fatalf("after reopen: %d pending, %v", len(pending), err)
	}
	want := market.WeightCommit{ID: pending[0].ID, NetUID: 27, Block: 101, At: at, CommitEpoch: 5, RevealEpoch: 6, RevealRound: 9001,
		UIDs: []subnet.UID{1, 4}, Weights: []uint16{65535, 1}, Status: market.CommitPending}
	if !reflect.DeepEqual(pending[0], want) {
		t.Fatalf("commit\n got %+v\nwant %+v", pending[0], want)
	}
	if revealed, _ := s.Commits(ctx, market.CommitRevealed); len(revealed) != 1 || revealed[0].RevealRound != 9000 {
		t.Fatalf("revealed %+v", revealed)
	}
}
