package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

func openRentalStore(tb testing.TB) (*RentalStore, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "api.db")
	db, err := Open(context.Background(), path, RentalSchema)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return NewRentalStore(db), path
}

// TestRentalAllocations checks the allocation rows: a round trip of every
// field, idempotency keys unique per tenant, ended rows final, orphans
// hidden from tenants, and the rented miners.
func TestRentalAllocations(t *testing.T) {
	ctx := context.Background()
	s, _ := openRentalStore(t)
	now := time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)
	a := market.Allocation{
		ID: "a1", Tenant: "alice", State: market.AllocOnline, MinerHotkey: "5Miner", MinerUID: 3, MinerAddr: "10.0.0.1:8091",
		Host: "10.0.0.1", Port: 4444, Username: "root", GPUModel: "NVIDIA H200", GPUCount: 2,
		Requirement: market.Requirement{GPUs: 2, CPUs: 4}, SSHKeys: []string{"ssh-ed25519 AAAA"}, Ports: []int{8888},
		PortMap: []market.PortMap{{Container: 8888, Host: 30000}}, Password: true, LeaseID: "l1", LeaseKey: []byte{1, 2, 3},
		IdempotencyKey: "k", RequestHash: "h", CreatedAt: now, ExpiresAt: now.Add(time.Hour), MinerExpiresAt: now.Add(24 * time.Hour),
	}
	if err := s.InsertAllocation(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := s.Allocation(ctx, "a1")
	if err != nil || got.MinerAddr != a.MinerAddr || got.PortMap[0] != a.PortMap[0] || got.Ports[0] != 8888 || string(got.LeaseKey) != "\x01\x02\x03" ||
		!got.ExpiresAt.Equal(a.ExpiresAt) || !got.MinerExpiresAt.Equal(a.MinerExpiresAt) || got.Requirement != a.Requirement || !got.Password {
		t.Fatalf("round trip:\n got %+v\nwant %+v (%v)", got, a, err)
	}
	dup := a
	dup.ID = "a2"
	wantCode(t, s.InsertAllocation(ctx, dup), market.ECONFLICT) // same tenant, same key
	dup.Tenant = "bob"
	if err := s.InsertAllocation(ctx, dup); err != nil {
		t.Fatalf("another tenant's key: %v", err)
	}
	if byKey, err := s.AllocationByIdempotencyKey(ctx, "alice", "k"); err != nil || byKey.ID != "a1" {
		t.Fatalf("by key: %+v %v", byKey, err)
	}
	orphan := a
	orphan.ID, orphan.Orphan, orphan.IdempotencyKey, orphan.State, orphan.MinerHotkey = "o1", true, "", market.AllocEnding, "5Other"
	if err := s.InsertAllocation(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.TenantAllocations(ctx, "alice", true, 0); len(list) != 1 || list[0].ID != "a1" {
		t.Fatalf("alice's list %+v", list)
	}
	if live, _ := s.LiveAllocations(ctx); len(live) != 3 {
		t.Fatalf("live %d, want 3 with the orphan", len(live))
	}
	if rented, _ := s.RentedHotkeys(ctx); len(rented) != 2 || !rented["5Miner"] || !rented["5Other"] {
		t.Fatalf("rented %v", rented)
	}
	a.State, a.EndedAt = market.AllocEnded, now
	if err := s.UpdateAllocation(ctx, a); err != nil {
		t.Fatal(err)
	}
	a.State = market.AllocOnline
	wantCode(t, s.UpdateAllocation(ctx, a), market.ECONFLICT)
	if got, _ := s.Allocation(ctx, "a1"); got.State != market.AllocEnded {
		t.Fatalf("an ended allocation changed: %s", got.State)
	}
	wantCode(t, s.UpdateAllocation(ctx, market.Allocation{ID: "nope", Tenant: "x", State: market.AllocOnline}), market.ENOTFOUND)
	wantCode(t, s.DeleteAllocation(ctx, "nope"), market.ENOTFOUND)
	wantCode(t, s.InsertAllocation(ctx, market.Allocation{ID: "../x", Tenant: "x", State: market.AllocOnline}), market.EINVALID)
}

// TestRentalDeliveries checks the webhook queue: an event queues a
// delivery for each of its tenant's webhooks that wants it, a webhook's
// deliveries leave one at a time in order, and deleting a webhook fails
// its pending ones.
func TestRentalDeliveries(t *testing.T) {
	ctx := context.Background()
	s, _ := openRentalStore(t)
	now := time.Now().UTC()
	for _, w := range []market.Webhook{
		{ID: "w1", Tenant: "alice", URL: "https://a.example/", Events: []string{market.EventAllocated, market.EventEnded}, Secret: "s1", CreatedAt: now},
		{ID: "w2", Tenant: "alice", URL: "https://b.example/", Events: []string{market.EventEnded}, Secret: "s2", CreatedAt: now},
		{ID: "w3", Tenant: "bob", URL: "https://c.example/", Events: market.EventTypes(), Secret: "s3", CreatedAt: now},
	} {
		if err := s.CreateWebhook(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	ev := func(typ string) market.Event {
		return market.Event{Tenant: "alice", Type: typ, AllocationID: "a1", CreatedAt: now, Payload: []byte(`{"type":"` + typ + `"}`)}
	}
	if err := s.AddEvents(ctx, ev(market.EventAllocated), ev(market.EventOffline), ev(market.EventEnded)); err != nil {
		t.Fatal(err)
	}
	due, err := s.DueDeliveries(ctx, now, 0)
	if err != nil || len(due) != 2 {
		t.Fatalf("due %+v, %v", due, err)
	}
	for _, d := range due {
		if d.WebhookID == "w1" && (d.EventType != market.EventAllocated || d.Secret != "s1" || string(d.Payload) != `{"type":"allocation.allocated"}`) {
			t.Fatalf("w1's head %+v", d)
		}
		if d.WebhookID == "w3" {
			t.Fatal("bob's webhook got alice's event")
		}
	}
	first := due[0]
	if first.WebhookID != "w1" {
		first = due[1]
	}
	first.Attempts, first.NextAt, first.LastError = 1, now.Add(time.Minute), "503"
	if err := s.RecordAttempt(ctx, first); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.DueDeliveries(ctx, now, 0); len(due) != 1 || due[0].WebhookID != "w2" {
		t.Fatalf("w1's next delivery overtook the one in backoff: %+v", due)
	}
	first.State, first.DoneAt, first.Attempts = market.DeliveryDelivered, now, 2
	if err := s.RecordAttempt(ctx, first); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.DueDeliveries(ctx, now, 0); len(due) != 2 || (due[0].EventType != market.EventEnded || due[1].EventType != market.EventEnded) {
		t.Fatalf("after the head was delivered: %+v", due)
	}
	if err := s.DeleteWebhook(ctx, "w1", now); err != nil {
		t.Fatal(err)
	}
	ds, _ := s.Deliveries(ctx, "w1", 0)
	if len(ds) != 2 || ds[0].State != market.DeliveryFailed || ds[1].State != market.DeliveryDelivered || ds[1].Attempts != 2 {
		t.Fatalf("w1's deliveries after delete %+v", ds)
	}
	wantCode(t, s.DeleteWebhook(ctx, "w1", now), market.ENOTFOUND)
	if evs, _ := s.Events(ctx, 0); len(evs) != 3 || evs[0].Type != market.EventAllocated {
		t.Fatalf("events %+v", evs)
	}
}
