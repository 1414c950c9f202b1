package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

func openValidatorStore(t *testing.T, path string) (*DB, *ValidatorStore) {
	t.Helper()
	db, err := Open(context.Background(), path, ValidatorSchema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, NewValidatorStore(db)
}

func TestValidatorStorePoGResults(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "validator.db")
	db, s := openValidatorStore(t, path)
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for i := range 6 {
		r := market.PoGResult{Hotkey: "hk-a", UID: 3, Block: uint64(100 + i), At: at.Add(time.Duration(i) * time.Second),
			Outcome: "pass", Model: "NVIDIA H200", Count: i + 1, Claimed: "NVIDIA H200", N: 1024,
			Elapsed: 1500 * time.Millisecond, Attempts: 1, Reason: "ok", HostKey: "SHA256:x"}
		if err := s.AddResult(ctx, r, 4); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddResult(ctx, market.PoGResult{Hotkey: "hk-b", UID: 4, At: at, Outcome: "unreachable", Reason: "refused", DeallocError: "no"}, 4); err != nil {
		t.Fatal(err)
	}
	if err := s.AddResult(ctx, market.PoGResult{Hotkey: "hk-b"}, 4); err == nil {
		t.Fatal("result without outcome accepted")
	}
	got, err := s.PoGResults(ctx, "hk-a", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].Count != 6 || got[3].Count != 3 {
		t.Fatalf("kept %d results, newest count %v", len(got), got)
	}
	want := market.PoGResult{Hotkey: "hk-a", UID: 3, Block: 105, At: at.Add(5 * time.Second), Outcome: "pass", Model: "NVIDIA H200",
		Count: 6, Claimed: "NVIDIA H200", N: 1024, Elapsed: 1500 * time.Millisecond, Attempts: 1, Reason: "ok", HostKey: "SHA256:x"}
	if got[0] != want {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got[0], want)
	}

	// Survives reopening.
	db.Close()
	_, s = openValidatorStore(t, path)
	all, err := s.Results(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || len(all["hk-a"]) != 2 || all["hk-a"][0].Count != 6 || all["hk-b"][0].DeallocError != "no" {
		t.Fatalf("all results after reopen: %+v", all)
	}
	if err := s.ForgetMiners(ctx, []string{"hk-a"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.PoGResults(ctx, "hk-a", 10); len(got) != 0 {
		t.Fatalf("forgotten miner still has %d results", len(got))
	}
}

func TestValidatorStoreSpecsScoresState(t *testing.T) {
	ctx := context.Background()
	_, s := openValidatorStore(t, filepath.Join(t.TempDir(), "validator.db"))
	at := time.Unix(1700000000, 0).UTC()
	sp := market.Specs{GPU: market.GPUSpecs{Count: 2, Details: []market.GPUDevice{{Name: "NVIDIA H200"}, {Name: "NVIDIA H200"}}}}
	if err := s.SaveSpecs(ctx, map[string]market.Specs{"a": sp}, at); err != nil {
		t.Fatal(err)
	}
	sp.GPU.Count = 3
	if err := s.SaveSpecs(ctx, map[string]market.Specs{"a": sp}, at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	specs, err := s.AllMinerSpecs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := specs["a"]; len(specs) != 1 || m.Specs.GPU.Count != 3 || !m.UpdatedAt.Equal(at.Add(time.Minute)) {
		t.Fatalf("specs %+v", specs)
	}

	s.KeepScoreBlocks = 3
	for b := uint64(1); b <= 5; b++ {
		if err := s.AddScores(ctx, b*100, at, []market.ScoreEntry{{UID: 1, Hotkey: "a", Score: float64(b) / 10, Weight: uint16(b)}, {UID: 2, Hotkey: "b", Score: 0.5, Weight: 7}}); err != nil {
			t.Fatal(err)
		}
	}
	hist, blocks, err := s.ScoreHistory(ctx, "a", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 || blocks[0] != 500 || hist[0].Weight != 5 || hist[2].Score != 0.3 {
		t.Fatalf("history %+v at %v", hist, blocks)
	}

	if _, ok, err := s.State(ctx, "last_sweep"); ok || err != nil {
		t.Fatalf("unset state: ok %v err %v", ok, err)
	}
	if err := s.SetState(ctx, "last_sweep", 42); err != nil {
		t.Fatal(err)
	}
	if err := s.SetState(ctx, "last_sweep", 43); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.State(ctx, "last_sweep"); v != 43 || !ok || err != nil {
		t.Fatalf("state = %d %v %v", v, ok, err)
	}
}
