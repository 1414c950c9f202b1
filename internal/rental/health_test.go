package rental_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/allocator/allocatortest"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/rental/rentaltest"
)

func state(t *testing.T, w *rentaltest.World, who market.Token, id string) rental.Allocation {
	t.Helper()
	a, err := w.Svc.Allocation(context.Background(), who, id)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestHealth flips an allocation offline while its miner does not answer
// or its SSH port is closed, back online when both answer again (a paused
// lease counts as healthy), and ends it — telling the miner — once it
// stays offline past GoneAfter; an allocation whose lease the miner no
// longer holds ends at once as lost.
func TestHealth(t *testing.T) {
	t.Parallel()
	w := rentaltest.New(t, rentaltest.Options{Miners: 1, Config: rental.Config{GoneAfter: time.Minute, ProbeTimeout: 200 * time.Millisecond}})
	w.Verify(t, 0, h100, 1)
	ctx := context.Background()
	hank, _ := w.Token(t, "hank", market.ScopeRead, market.ScopeRent)
	a, _, err := w.Svc.Allocate(ctx, hank, req(1, 24*time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	m := w.Miners[0]

	m.Set(nil, time.Second) // the miner hangs
	w.Svc.CheckHealth(ctx)
	if got := state(t, w, hank, a.ID); got.State != market.AllocOffline || got.Note == "" {
		t.Fatalf("miner silent: %+v", got)
	}
	m.Set(nil, 0)
	w.Svc.CheckHealth(ctx)
	if got := state(t, w, hank, a.ID); got.State != market.AllocOnline || got.Note != "" {
		t.Fatalf("miner back: %+v", got)
	}
	closed := errors.New("connection refused")
	w.ProbeErr.Store(&closed)
	w.Svc.CheckHealth(ctx)
	if got := state(t, w, hank, a.ID); got.State != market.AllocOffline {
		t.Fatalf("ssh port closed: %+v", got)
	}
	if _, err := w.Svc.Act(ctx, hank, a.ID, rental.ActionRequest{Action: "pause"}); err != nil {
		t.Fatal(err)
	}
	w.Svc.CheckHealth(ctx)
	if got := state(t, w, hank, a.ID); got.State != market.AllocOnline || got.Note != "paused" {
		t.Fatalf("paused lease: %+v", got)
	}
	if _, err := w.Svc.Act(ctx, hank, a.ID, rental.ActionRequest{Action: "unpause"}); err != nil {
		t.Fatal(err)
	}

	// Offline past the limit: ended, and the miner told.
	w.Svc.CheckHealth(ctx)
	w.Clock.Advance(2 * time.Minute)
	w.Svc.CheckHealth(ctx)
	rentaltest.Eventually(t, 5*time.Second, "the gone allocation ends", func() bool {
		return state(t, w, hank, a.ID).State == market.AllocEnded
	})
	if got := state(t, w, hank, a.ID); got.EndReason != market.EndReasonGone || len(m.Leases()) != 0 {
		t.Fatalf("gone: %+v, leases %+v", got, m.Leases())
	}

	// A lease the miner lost: ended at once, nothing to release.
	w.ProbeErr.Store(nil)
	b, _, err := w.Svc.Allocate(ctx, hank, req(1, 24*time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	m.Drop()
	w.Svc.CheckHealth(ctx)
	if got := state(t, w, hank, b.ID); got.State != market.AllocEnded || got.EndReason != market.EndReasonLost {
		t.Fatalf("lost lease: %+v", got)
	}
}

// TestEndingRetries ends an allocation whose miner does not answer: the
// allocation stays ending, the background retries, and it ends once the
// miner confirms.
func TestEndingRetries(t *testing.T) {
	t.Parallel()
	w := rentaltest.New(t, rentaltest.Options{Miners: 1, Config: rental.Config{ProbeTimeout: 100 * time.Millisecond}})
	w.Verify(t, 0, h100, 1)
	ctx := context.Background()
	ida, _ := w.Token(t, "ida", market.ScopeRead, market.ScopeRent)
	a, _, err := w.Svc.Allocate(ctx, ida, req(1, time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	m := w.Miners[0]
	m.Set(allocatortest.Refuse(http.StatusServiceUnavailable, "docker is down", protocol.ModeDeallocate), 0)
	got, err := w.Svc.End(ctx, ida, a.ID)
	if err != nil || got.State != market.AllocEnding || got.Note == "" {
		t.Fatalf("end while the miner fails: %+v, %v", got, err)
	}
	rentaltest.Eventually(t, 5*time.Second, "retries", func() bool { return m.Calls(protocol.ModeDeallocate) >= 3 })
	if state(t, w, ida, a.ID).State != market.AllocEnding || len(m.Leases()) != 1 {
		t.Fatal("ended without the miner's confirmation")
	}
	m.Set(nil, 0)
	rentaltest.Eventually(t, 10*time.Second, "the allocation ends once the miner confirms", func() bool {
		return state(t, w, ida, a.ID).State == market.AllocEnded
	})
	if len(m.Leases()) != 0 {
		t.Fatalf("leases %+v", m.Leases())
	}
}

// TestExpiry sends the expiring notice before the end, then ends the
// allocation at its expiry and releases the miner's lease.
func TestExpiry(t *testing.T) {
	t.Parallel()
	w := rentaltest.New(t, rentaltest.Options{Miners: 1})
	w.Verify(t, 0, h100, 1)
	ctx := context.Background()
	jo, _ := w.Token(t, "jo", market.ScopeRead, market.ScopeRent)
	a, _, err := w.Svc.Allocate(ctx, jo, req(1, time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	w.Clock.Advance(55 * time.Minute)
	rentaltest.Eventually(t, 5*time.Second, "the expiring notice", func() bool {
		var n int
		for _, e := range events(t, w) {
			if e == market.EventExpiring {
				n++
			}
		}
		return n == 1
	})
	if state(t, w, jo, a.ID).State != market.AllocOnline {
		t.Fatal("ended before its time")
	}
	w.Clock.Advance(6 * time.Minute)
	rentaltest.Eventually(t, 5*time.Second, "expiry", func() bool { return state(t, w, jo, a.ID).State == market.AllocEnded })
	if got := state(t, w, jo, a.ID); got.EndReason != market.EndReasonExpired || len(w.Miners[0].Leases()) != 0 {
		t.Fatalf("expired: %+v, leases %+v", got, w.Miners[0].Leases())
	}
}

// events lists the event types recorded so far, oldest first.
func events(t *testing.T, w *rentaltest.World) []string {
	t.Helper()
	evs, err := w.Store.Events(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

// TestRestart stops the service and starts it on the same files: tokens,
// allocations and webhooks are all there; an allocation a crash caught
// while allocating is released.
func TestRestart(t *testing.T) {
	t.Parallel()
	w := rentaltest.New(t, rentaltest.Options{Miners: 1})
	w.Verify(t, 0, h100, 1)
	ctx := context.Background()
	kim, secret := w.Token(t, "kim", market.ScopeRead, market.ScopeRent)
	a, _, err := w.Svc.Allocate(ctx, kim, req(1, time.Hour), "k1")
	if err != nil {
		t.Fatal(err)
	}
	// A crash between asking a miner and hearing back: the record says
	// allocating, and the miner holds a lease for its key.
	b, _, err := w.Svc.Allocate(ctx, kim, req(0, time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := w.Store.Allocation(ctx, b.ID)
	rec.State = market.AllocAllocating
	if err := w.Store.UpdateAllocation(ctx, rec); err != nil {
		t.Fatal(err)
	}

	w.Restart(t)
	if _, err := w.Svc.Tokens().Authenticate(ctx, secret); err != nil {
		t.Fatalf("token after restart: %v", err)
	}
	got, err := w.Svc.Allocation(ctx, kim, a.ID)
	if err != nil || got.State != market.AllocOnline || got.Port != a.Port || !got.ExpiresAt.Equal(a.ExpiresAt) {
		t.Fatalf("allocation after restart: %+v, %v", got, err)
	}
	if again, created, err := w.Svc.Allocate(ctx, kim, req(1, time.Hour), "k1"); err != nil || created || again.ID != a.ID {
		t.Fatalf("idempotent retry after restart: %+v %v %v", again, created, err)
	}
	rentaltest.Eventually(t, 5*time.Second, "the interrupted allocation is released", func() bool {
		return state(t, w, kim, b.ID).State == market.AllocEnded
	})
	if ls := w.Miners[0].Leases(); len(ls) != 1 {
		t.Fatalf("leases after recovery: %+v", ls)
	}
}
