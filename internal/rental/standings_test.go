package rental_test

import (
	"context"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental/rentaltest"
)

// TestStandingsAndOperatorAllocations: the operator's view lists every
// miner with its verified GPUs, score, newest result and whether an
// allocation holds it, and every tenant's allocations — live first, then
// the newest ended — with tenant and miner but no secret.
func TestStandingsAndOperatorAllocations(t *testing.T) {
	t.Parallel()
	w := rentaltest.New(t, rentaltest.Options{Miners: 2})
	w.Verify(t, 0, h100, 1)
	w.Verify(t, 1, h200, 1)
	w.Fail(t, 1)
	ctx := context.Background()
	ann, _ := w.Token(t, "ann", market.ScopeRead, market.ScopeRent)
	bob, _ := w.Token(t, "bob", market.ScopeRead, market.ScopeRent)
	r := req(1, time.Hour)
	r.Password = true
	a, _, err := w.Svc.Allocate(ctx, ann, r, "")
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := w.Svc.Allocate(ctx, bob, req(0, time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Svc.End(ctx, bob, b.ID); err != nil {
		t.Fatal(err)
	}

	st, err := w.Svc.Standings(ctx)
	if err != nil || len(st) != 2 {
		t.Fatalf("standings %+v, %v", st, err)
	}
	if s := st[0]; s.UID != 1 || s.Model != h100 || s.Count != 1 || s.Score <= 0 || !s.Offered || !s.Rented || s.Last == nil || s.Last.Outcome != market.PoGPass {
		t.Errorf("verified, rented miner: %+v", s)
	}
	if s := st[1]; s.UID != 2 || s.Model != "" || s.Score != 0 || s.Offered || s.Rented || s.Last == nil || s.Last.Outcome != market.PoGFail {
		t.Errorf("failed miner: %+v", s)
	}

	list, err := w.Svc.OperatorAllocations(ctx, 10)
	if err != nil || len(list) != 2 {
		t.Fatalf("operator allocations %+v, %v", list, err)
	}
	if l := list[0]; l.ID != a.ID || l.Tenant != "ann" || l.MinerHotkey != w.Miners[0].Hotkey.SS58() || l.Password != "" || l.State != market.AllocOnline || l.CheckedAt == nil {
		t.Errorf("live allocation %+v", l)
	}
	if l := list[1]; l.ID != b.ID || l.Tenant != "bob" || l.State != market.AllocEnded || l.EndReason != market.EndReasonDeleted {
		t.Errorf("ended allocation %+v", l)
	}
	if list, _ := w.Svc.OperatorAllocations(ctx, 0); len(list) != 1 {
		t.Errorf("no ended ones asked: %+v", list)
	}
}
