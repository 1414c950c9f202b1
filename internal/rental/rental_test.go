package rental_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/allocator/allocatortest"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/rental/rentaltest"
)

const (
	h200 = "NVIDIA H200"
	h100 = "NVIDIA H100 80GB HBM3"
	a100 = "NVIDIA A100-SXM4-80GB"
)

func req(gpus int, d time.Duration) rental.AllocateRequest {
	return rental.AllocateRequest{Requirements: rental.Requirements{GPUCount: gpus}, SSHKeys: []string{rentaltest.SSHKey}, Duration: rental.Duration(d)}
}

func code(err error) string {
	var e *rental.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return market.ErrorCode(err)
}

// TestAllocationLifecycle allocates by requirement on the best verified
// miner, checks the views carry no secret, extends past the miner's lease
// (the miner's lease is extended), pauses, and ends it: the miner's lease
// is gone and the record ended.
func TestAllocationLifecycle(t *testing.T) {
	t.Parallel()
	w := rentaltest.New(t, rentaltest.Options{Miners: 3})
	w.Verify(t, 0, h100, 1)
	w.Verify(t, 1, h200, 1)
	w.Verify(t, 2, a100, 2)
	w.Fail(t, 2) // a fail newer than the pass: not offered
	ctx := context.Background()
	alice, _ := w.Token(t, "alice", market.ScopeRead, market.ScopeRent)

	r := req(1, time.Hour)
	r.Password, r.Ports = true, []int{8888}
	a, created, err := w.Svc.Allocate(ctx, alice, r, "")
	if err != nil || !created {
		t.Fatalf("allocate: %v", err)
	}
	best := w.Miners[1]
	if a.State != market.AllocOnline || a.GPUModel != h200 || a.Host != "127.0.0.1" || a.Port == 0 || a.Password == "" ||
		a.SSHCommand == "" || len(a.Ports) != 1 || a.Ports[0].Container != 8888 || a.MinerHotkey != "" {
		t.Fatalf("allocation %+v", a)
	}
	if ls := best.Leases(); len(ls) != 1 || ls[0].Password != a.Password || ls[0].SSHKeys != rentaltest.SSHKey+"\n" {
		t.Fatalf("best miner's leases %+v", ls)
	}
	if d := a.ExpiresAt.Sub(a.CreatedAt); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("expires after %v, want an hour", d)
	}
	got, err := w.Svc.Allocation(ctx, alice, a.ID)
	if err != nil || got.Password != "" || !got.PasswordLogin || got.ID != a.ID {
		t.Fatalf("get: %+v, %v", got, err)
	}
	raw, err := os.ReadFile(w.DBPath())
	if err != nil || strings.Contains(string(raw), a.Password) {
		t.Fatalf("the password is stored in the database (%v)", err)
	}

	ext, err := w.Svc.Extend(ctx, alice, a.ID, 30*time.Hour)
	if err != nil || !ext.ExpiresAt.Equal(a.ExpiresAt.Add(30*time.Hour)) {
		t.Fatalf("extend: %+v, %v", ext, err)
	}
	if best.Calls(protocol.ModeDockerAction) != 1 || time.Until(best.Leases()[0].ExpiresAt) < 30*time.Hour {
		t.Fatalf("the miner's lease was not extended: %+v", best.Leases())
	}
	if _, err := w.Svc.Extend(ctx, alice, a.ID, 60*24*time.Hour); code(err) != "invalid_request" {
		t.Fatalf("extend past the maximum: %v", err)
	}
	if _, err := w.Svc.Act(ctx, alice, a.ID, rental.ActionRequest{Action: "pause"}); err != nil || !best.Leases()[0].Paused {
		t.Fatalf("pause: %v", err)
	}
	if _, err := w.Svc.Act(ctx, alice, a.ID, rental.ActionRequest{Action: "explode"}); code(err) != "invalid_request" {
		t.Fatalf("unknown action: %v", err)
	}

	end, err := w.Svc.End(ctx, alice, a.ID)
	if err != nil || end.State != market.AllocEnded || end.EndReason != market.EndReasonDeleted || len(best.Leases()) != 0 {
		t.Fatalf("end: %+v, %v; leases %+v", end, err, best.Leases())
	}
	if again, err := w.Svc.End(ctx, alice, a.ID); err != nil || again.State != market.AllocEnded {
		t.Fatalf("ending twice: %+v, %v", again, err)
	}
	if _, err := w.Svc.Extend(ctx, alice, a.ID, time.Hour); code(err) != "not_running" {
		t.Fatalf("extend an ended allocation: %v", err)
	}
	list, _ := w.Svc.Allocations(ctx, alice, false)
	all, _ := w.Svc.Allocations(ctx, alice, true)
	if len(list) != 0 || len(all) != 1 {
		t.Fatalf("lists: %d live, %d with ended", len(list), len(all))
	}
}

// TestCandidates checks matching and the order candidates are tried in:
// best score first; a refusal moves on; a miner that never answers is
// skipped and whatever it allocated after the caller gave up is released
// in the background; nothing matching is a clear no_offer.
func TestCandidates(t *testing.T) {
	t.Parallel()
	w := rentaltest.New(t, rentaltest.Options{Miners: 3, Timeout: 300 * time.Millisecond})
	w.Verify(t, 0, h200, 2)
	w.Verify(t, 1, h200, 1)
	w.Verify(t, 2, h100, 1)
	w.Free(t, 2, market.Resources{GPUs: []string{"0"}, CPUs: 2, MemoryBytes: 4 << 30, DiskBytes: 10 << 30})
	ctx := context.Background()
	bob, _ := w.Token(t, "bob", market.ScopeRent)

	w.Miners[0].Set(allocatortest.Refuse(http.StatusConflict, "no capacity", protocol.ModeAllocate), 0)
	w.Miners[1].Set(nil, time.Second) // answers too late, but allocates
	a, _, err := w.Svc.Allocate(ctx, bob, req(1, time.Hour), "")
	if err != nil || a.GPUModel != h100 {
		t.Fatalf("allocate: %+v, %v", a, err)
	}
	for i, want := range []int{1, 1, 1} {
		if got := w.Miners[i].Calls(protocol.ModeAllocate); got != want {
			t.Fatalf("miner %d asked %d times, want %d", i, got, want)
		}
	}
	rentaltest.Eventually(t, 5*time.Second, "the late lease on miner 1 is released", func() bool { return len(w.Miners[1].Leases()) == 0 && w.Miners[1].Calls(protocol.ModeDeallocate) > 0 })
	if list, _ := w.Svc.Allocations(ctx, bob, true); len(list) != 1 {
		t.Fatalf("the released attempt shows in the tenant's list: %+v", list)
	}

	for _, tc := range []struct {
		name string
		r    rental.Requirements
		code string
	}{
		{"more gpus than verified", rental.Requirements{GPUCount: 3}, "no_offer"},
		{"a model nobody has", rental.Requirements{GPUCount: 1, GPUModel: "A100"}, "no_offer"},
		{"more vram than verified", rental.Requirements{GPUCount: 1, MinVRAM: 200 << 30}, "no_offer"},
		{"more ram than free", rental.Requirements{GPUCount: 1, GPUModel: "H100", RAM: 64 << 30}, "no_offer"},
		{"impossible gpu count", rental.Requirements{GPUCount: 99}, "invalid_request"},
		{"negative cpus", rental.Requirements{GPUCount: 1, CPUCount: -1}, "invalid_request"},
	} {
		r := req(0, time.Hour)
		r.Requirements = tc.r
		if _, _, err := w.Svc.Allocate(ctx, bob, r, ""); code(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
	w.Miners[0].Set(allocatortest.Refuse(http.StatusConflict, "no capacity", protocol.ModeAllocate), 0)
	w.Miners[1].Set(allocatortest.Refuse(http.StatusBadRequest, "image not offered", protocol.ModeAllocate), 0)
	r := req(1, time.Hour)
	r.Requirements.GPUModel = "H200"
	if _, _, err := w.Svc.Allocate(ctx, bob, r, ""); code(err) != "allocation_refused" || !strings.Contains(err.Error(), "image not offered") {
		t.Fatalf("every candidate refuses: %v", err)
	}
	r.MinerHotkey = w.Miners[2].Hotkey.SS58()
	if _, _, err := w.Svc.Allocate(ctx, bob, r, ""); market.ErrorCode(err) != market.EFORBIDDEN {
		t.Fatalf("a tenant picks a miner by hotkey: %v", err)
	}
}

// TestIdempotency retries one request with its key: the same allocation
// answers, once, even when the retries race; another body with the key is
// refused.
func TestIdempotency(t *testing.T) {
	t.Parallel()
	w := rentaltest.New(t, rentaltest.Options{Miners: 1})
	w.Verify(t, 0, h100, 1)
	w.Miners[0].Set(nil, 200*time.Millisecond)
	ctx := context.Background()
	carol, _ := w.Token(t, "carol", market.ScopeRent)
	dave, _ := w.Token(t, "dave", market.ScopeRent)

	var wg sync.WaitGroup
	ids := make([]string, 4)
	errs := make([]error, 4)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				a, _, err := w.Svc.Allocate(ctx, carol, req(1, time.Hour), "retry-me")
				if code(err) == "in_progress" {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				ids[i], errs[i] = a.ID, err
				return
			}
		}()
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("retries answered %v / %v", ids, errs)
		}
	}
	if n := len(w.Miners[0].Leases()); n != 1 {
		t.Fatalf("%d leases for one idempotent request", n)
	}
	if _, _, err := w.Svc.Allocate(ctx, carol, req(1, 2*time.Hour), "retry-me"); code(err) != "idempotency_conflict" {
		t.Fatalf("another body with the key: %v", err)
	}
	// Keys are per tenant.
	if a, created, err := w.Svc.Allocate(ctx, dave, req(0, time.Hour), "retry-me"); err != nil || !created || a.ID == ids[0] {
		t.Fatalf("another tenant's key: %+v %v %v", a, created, err)
	}
	if _, _, err := w.Svc.Allocate(ctx, carol, req(1, time.Hour), strings.Repeat("k", 300)); code(err) != "invalid_request" {
		t.Fatalf("overlong key: %v", err)
	}
}

// TestTenants checks a tenant sees and touches only its own allocations
// (another's is not found, and stays as it was) while an admin sees and
// acts on all.
func TestTenants(t *testing.T) {
	t.Parallel()
	w := rentaltest.New(t, rentaltest.Options{Miners: 1})
	w.Verify(t, 0, h100, 1)
	ctx := context.Background()
	erin, _ := w.Token(t, "erin", market.ScopeRead, market.ScopeRent)
	frank, _ := w.Token(t, "frank", market.ScopeRead, market.ScopeRent)
	admin, _ := w.Token(t, "ops", market.ScopeAdmin)
	a, _, err := w.Svc.Allocate(ctx, erin, req(1, time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Svc.Allocation(ctx, frank, a.ID); code(err) != "not_found" {
		t.Fatalf("another tenant reads it: %v", err)
	}
	if _, err := w.Svc.End(ctx, frank, a.ID); code(err) != "not_found" {
		t.Fatalf("another tenant ends it: %v", err)
	}
	if _, err := w.Svc.Extend(ctx, frank, a.ID, time.Hour); code(err) != "not_found" {
		t.Fatalf("another tenant extends it: %v", err)
	}
	if _, err := w.Svc.Act(ctx, frank, a.ID, rental.ActionRequest{Action: "restart"}); code(err) != "not_found" {
		t.Fatalf("another tenant restarts it: %v", err)
	}
	if list, _ := w.Svc.Allocations(ctx, frank, true); len(list) != 0 {
		t.Fatalf("another tenant lists %+v", list)
	}
	if got, _ := w.Svc.Allocation(ctx, erin, a.ID); got.State != market.AllocOnline || !got.ExpiresAt.Equal(a.ExpiresAt) {
		t.Fatalf("the allocation changed: %+v", got)
	}
	got, err := w.Svc.Allocation(ctx, admin, a.ID)
	if err != nil || got.Tenant != "erin" || got.MinerHotkey != w.Miners[0].Hotkey.SS58() {
		t.Fatalf("admin view: %+v, %v", got, err)
	}
	if _, err := w.Svc.Act(ctx, admin, a.ID, rental.ActionRequest{Action: "restart"}); err != nil {
		t.Fatalf("admin restarts: %v", err)
	}
	byHotkey := req(0, time.Hour)
	byHotkey.MinerHotkey = w.Miners[0].Hotkey.SS58()
	if b, _, err := w.Svc.Allocate(ctx, admin, byHotkey, ""); err != nil || b.MinerHotkey != byHotkey.MinerHotkey {
		t.Fatalf("admin allocates by hotkey: %+v, %v", b, err)
	}
	if len(w.Miners[0].Leases()) != 2 {
		t.Fatalf("leases %+v", w.Miners[0].Leases())
	}
}

// TestOffers groups verified miners by model and count, applies filters,
// and shows hotkeys to admins only.
func TestOffers(t *testing.T) {
	t.Parallel()
	w := rentaltest.New(t, rentaltest.Options{Miners: 4})
	w.Verify(t, 0, h200, 1)
	w.Verify(t, 1, h200, 1)
	w.Verify(t, 2, h100, 8)
	w.Free(t, 1, market.Resources{GPUs: []string{"0"}, CPUs: 16, MemoryBytes: 64 << 30, DiskBytes: 1 << 40})
	w.Free(t, 2, market.Resources{GPUs: []string{"0"}, CPUs: 4}) // 7 of its 8 GPUs are rented
	ctx := context.Background()
	reader, _ := w.Token(t, "gina", market.ScopeRead)
	admin, _ := w.Token(t, "ops", market.ScopeAdmin)
	offers, err := w.Svc.Offers(ctx, reader, rental.OfferFilter{})
	if err != nil || len(offers) != 1 || offers[0].GPUModel != h200 || offers[0].Miners != 2 || offers[0].FreeCPUs != 16 ||
		offers[0].VRAM < 140e9 || offers[0].Hotkeys != nil || offers[0].LastVerified.IsZero() {
		t.Fatalf("offers %+v, %v", offers, err)
	}
	if o, _ := w.Svc.Offers(ctx, admin, rental.OfferFilter{}); len(o) != 1 || len(o[0].Hotkeys) != 2 {
		t.Fatalf("admin offers %+v", o)
	}
	for _, tc := range []struct {
		f    rental.OfferFilter
		want int
	}{
		{rental.OfferFilter{GPUModel: "h200"}, 2},
		{rental.OfferFilter{GPUModel: "A100"}, 0},
		{rental.OfferFilter{MinGPUCount: 2}, 0},
		{rental.OfferFilter{CPUs: 8}, 1},
		{rental.OfferFilter{RAM: 128 << 30}, 0},
		{rental.OfferFilter{MinVRAM: 100 << 30}, 2},
	} {
		o, _ := w.Svc.Offers(ctx, reader, tc.f)
		n := 0
		for _, x := range o {
			n += x.Miners
		}
		if n != tc.want {
			t.Errorf("filter %+v: %d miners, want %d", tc.f, n, tc.want)
		}
	}
}

// TestTokens checks tokens are stored as hashes only and refused once
// revoked or expired, with a reason.
func TestTokens(t *testing.T) {
	t.Parallel()
	w := rentaltest.New(t, rentaltest.Options{})
	ctx := context.Background()
	tk := w.Svc.Tokens()
	nt, err := tk.Create(ctx, rental.TokenRequest{Name: "ci", Scopes: []market.Scope{market.ScopeRead}, TTL: rental.Duration(time.Hour)})
	if err != nil || !strings.HasPrefix(nt.Secret, rental.TokenPrefix) || nt.Tenant != "ci" || nt.RatePerMinute != rental.DefaultRatePerMinute {
		t.Fatalf("create: %+v, %v", nt, err)
	}
	raw, _ := os.ReadFile(w.DBPath())
	if strings.Contains(string(raw), nt.Secret) || strings.Contains(string(raw), strings.TrimPrefix(nt.Secret, rental.TokenPrefix)) {
		t.Fatal("the token is stored in clear")
	}
	if got, err := tk.Authenticate(ctx, nt.Secret); err != nil || got.ID != nt.ID {
		t.Fatalf("authenticate: %+v, %v", got, err)
	}
	w.Clock.Advance(2 * time.Hour)
	if _, err := tk.Authenticate(ctx, nt.Secret); code(err) != "token_expired" {
		t.Fatalf("expired token: %v", err)
	}
	nt2, _ := tk.Create(ctx, rental.TokenRequest{Name: "ci2", Scopes: []market.Scope{market.ScopeRent}})
	if _, err := tk.Revoke(ctx, nt2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Authenticate(ctx, nt2.Secret); code(err) != "token_revoked" {
		t.Fatalf("revoked token: %v", err)
	}
	for _, bad := range []string{"", "nic_", "nic_" + strings.Repeat("A", 43), "Bearer x", strings.Repeat("n", 5000)} {
		if _, err := tk.Authenticate(ctx, bad); code(err) != "invalid_token" {
			t.Errorf("token %.20q: %v", bad, err)
		}
	}
	for _, r := range []rental.TokenRequest{
		{Name: "", Scopes: []market.Scope{market.ScopeRead}},
		{Name: "x y", Scopes: []market.Scope{market.ScopeRead}},
		{Name: "x", Scopes: nil},
		{Name: "x", Scopes: []market.Scope{"root"}},
		{Name: "x", Scopes: []market.Scope{market.ScopeRead}, RatePerMinute: -1},
	} {
		if _, err := tk.Create(ctx, r); code(err) != "invalid_request" {
			t.Errorf("create %+v: %v", r, err)
		}
	}
	if _, err := tk.Revoke(ctx, "tok_nope"); market.ErrorCode(err) != market.ENOTFOUND {
		t.Fatalf("revoke unknown: %v", err)
	}
	list, _ := tk.List(ctx)
	if len(list) != 2 || slices.ContainsFunc(list, func(t market.Token) bool { return t.ID == nt2.ID && t.RevokedAt.IsZero() }) {
		t.Fatalf("list %+v", list)
	}
}
