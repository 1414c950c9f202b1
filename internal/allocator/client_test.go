package allocator_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/allocations"
	"github.com/nicompute/nicompute/internal/allocator"
	"github.com/nicompute/nicompute/internal/allocator/allocatortest"
	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/subnet"
)

func newClient(tb testing.TB, timeout time.Duration) (*allocator.Client, *keys.Keypair) {
	tb.Helper()
	hk, err := keys.FromURI("//AllocatorTest")
	if err != nil {
		tb.Fatal(err)
	}
	d := axon.NewDendrite(hk)
	tb.Cleanup(func() { d.Close() })
	return allocator.New(d, timeout), hk
}

func minerOf(tb testing.TB, fm *allocatortest.Miner) allocator.Miner {
	tb.Helper()
	m, err := allocator.MinerOf(fm.Neuron(3))
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// TestClientLifecycle allocates (credentials decrypted, ports and expiry
// carried), asks the status, acts, extends and deallocates through a real
// axon; after that the lease is provably absent.
func TestClientLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _ := newClient(t, 5*time.Second)
	fm := allocatortest.NewMiner(t)
	m := minerOf(t, fm)
	key, _, err := protocol.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	g, err := c.Allocate(ctx, m, key, allocator.Request{Requirement: market.Requirement{CPUs: 1}, SSHKeys: "ssh-ed25519 AAAA", Timeline: 1, Password: true, Ports: []int{8888}})
	if err != nil {
		t.Fatal(err)
	}
	if g.LeaseID == "" || g.Host != "127.0.0.1" || g.Port != 40000 || g.Username != "root" || g.Password == "" ||
		!slices.Equal(g.Ports, []market.PortMap{{Container: 8888, Host: 40001}}) || time.Until(g.ExpiresAt) < 23*time.Hour {
		t.Fatalf("grant %+v", g)
	}
	st, err := c.Status(ctx, m, key)
	if err != nil || !st.Alive || st.LeaseID != g.LeaseID || st.Port != g.Port || st.State != "running" {
		t.Fatalf("status %+v, %v", st, err)
	}
	if _, err := c.Act(ctx, m, key, protocol.ActionPause, ""); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Status(ctx, m, key); st.State != "paused" {
		t.Fatalf("after pause: %+v", st)
	}
	until, err := c.Extend(ctx, m, key, 3)
	if err != nil || time.Until(until) < 71*time.Hour {
		t.Fatalf("extend: %v, %v", until, err)
	}
	if id, gone, err := c.Deallocate(ctx, m, key); err != nil || gone || id != g.LeaseID {
		t.Fatalf("deallocate: %s %v %v", id, gone, err)
	}
	if _, err := c.Status(ctx, m, key); !allocator.Absent(err) || !allocator.Definite(err) {
		t.Fatalf("status after deallocate: %v, want a refusal proving absence", err)
	}
	if _, gone, err := c.Deallocate(ctx, m, key); err != nil || !gone {
		t.Fatalf("second deallocate: gone %v, %v", gone, err)
	}
}

// TestClientOutcomes classifies the miner's answers: definite refusals,
// unknown outcomes, and which refusals prove absence. A transport refusal
// (blacklist 403) must never count as proof that a lease is gone.
func TestClientOutcomes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, hk := newClient(t, 300*time.Millisecond)
	for _, tc := range []struct {
		name     string
		hook     func(protocol.Mode) error
		delay    time.Duration
		definite bool
		absent   bool // of a status call
	}{
		{"handler 409", allocatortest.Refuse(http.StatusConflict, "busy", protocol.ModeAllocate, protocol.ModeStatus), 0, true, false},
		{"handler 404", allocatortest.Refuse(http.StatusNotFound, "no lease", protocol.ModeAllocate, protocol.ModeStatus), 0, true, true},
		{"server error", allocatortest.Refuse(http.StatusInternalServerError, "oops", protocol.ModeAllocate, protocol.ModeStatus), 0, false, false},
		{"timeout", nil, time.Second, false, false},
		{"200 status false, no code (SN27's Python miner)", allocatortest.StatusFalse("no capacity", protocol.ModeAllocate, protocol.ModeStatus), 0, true, true},
		{"coded 200 conflict", allocatortest.RefuseCode(market.ECONFLICT, "busy", protocol.ModeAllocate, protocol.ModeStatus), 0, true, false},
		{"coded 200 not found", allocatortest.RefuseCode(market.ENOTFOUND, "no lease", protocol.ModeAllocate, protocol.ModeStatus), 0, true, true},
		{"coded 200 unavailable", allocatortest.RefuseCode(market.EUNAVAILABLE, "docker is down", protocol.ModeAllocate, protocol.ModeStatus), 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fm := allocatortest.NewMiner(t)
			fm.Set(tc.hook, tc.delay)
			m := minerOf(t, fm)
			key, _, _ := protocol.GenerateKey()
			_, err := c.Allocate(ctx, m, key, allocator.Request{Timeline: 1, SSHKeys: "k"})
			if err == nil || allocator.Definite(err) != tc.definite {
				t.Fatalf("allocate: %v, definite %v, want %v", err, allocator.Definite(err), tc.definite)
			}
			_, err = c.Status(ctx, m, key)
			if allocator.Absent(err) != tc.absent {
				t.Fatalf("status: %v, absent %v, want %v", err, allocator.Absent(err), tc.absent)
			}
		})
	}

	t.Run("blacklisted", func(t *testing.T) {
		fm := allocatortest.NewMiner(t, hk.SS58())
		m := minerOf(t, fm)
		key, _, _ := protocol.GenerateKey()
		_, err := c.Status(ctx, m, key)
		if allocator.RefusalStatus(err) != http.StatusForbidden || allocator.Absent(err) {
			t.Fatalf("status when blacklisted: %v (absent %v), want a 403 that proves nothing", err, allocator.Absent(err))
		}
		if _, gone, err := c.Deallocate(ctx, m, key); gone || err == nil {
			t.Fatalf("deallocate when blacklisted: gone %v, %v", gone, err)
		}
	})

	t.Run("no answer", func(t *testing.T) {
		fm := allocatortest.NewMiner(t)
		m := minerOf(t, fm)
		fm.Stop()
		key, _, _ := protocol.GenerateKey()
		_, err := c.Allocate(ctx, m, key, allocator.Request{Timeline: 1})
		var r *allocator.Refusal
		if err == nil || errors.As(err, &r) || allocator.Definite(err) {
			t.Fatalf("allocate on a stopped miner: %v", err)
		}
	})
}

// TestRecords drives the record flow of `nicompute allocate`: an existing
// record blocks a second allocation, a definite refusal leaves nothing, an
// unknown outcome keeps a pending record with its key, and a status call
// settles it once the lease is seen alive.
func TestRecords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, hk := newClient(t, 300*time.Millisecond)
	fm := allocatortest.NewMiner(t)
	m := minerOf(t, fm)
	rs := allocator.Records{Dir: t.TempDir(), NetUID: 1, Validator: hk.SS58()}
	req := allocator.Request{Timeline: 1, SSHKeys: "k", Requirement: market.Requirement{CPUs: 1}}

	fm.Set(allocatortest.Refuse(http.StatusConflict, "no capacity", protocol.ModeAllocate), 0)
	if _, _, err := c.AllocateRecorded(ctx, rs, m, req); allocator.RefusalStatus(err) != http.StatusConflict {
		t.Fatalf("refused: %v", err)
	}
	if recs, _ := allocations.List(rs.Dir); len(recs) != 0 {
		t.Fatalf("a refusal left records %+v", recs)
	}

	fm.Set(nil, time.Second) // the miner allocates after the caller gave up
	_, _, err := c.AllocateRecorded(ctx, rs, m, req)
	var unknown *allocator.UnknownOutcomeError
	if !errors.As(err, &unknown) {
		t.Fatalf("timeout: %v, want an unknown outcome", err)
	}
	rec, key, err := allocator.OwnRecord(rs, m)
	if err != nil || !rec.Pending || key == nil {
		t.Fatalf("pending record %+v, key %v, %v", rec, key != nil, err)
	}
	var held *allocator.HeldError
	if _, _, err := c.AllocateRecorded(ctx, rs, m, req); !errors.As(err, &held) || !held.Record.Pending {
		t.Fatalf("allocate over a pending record: %v", err)
	}
	fm.Set(nil, 0)
	for deadline := time.Now().Add(5 * time.Second); len(fm.Leases()) == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	rec, st, settled, err := c.StatusRecorded(ctx, rs, m)
	if err != nil || !settled || rec.Pending || rec.LeaseID != st.LeaseID || rec.Port != 40000 {
		t.Fatalf("status settles: %+v %+v %v %v", rec, st, settled, err)
	}
	if _, gone, err := c.DeallocateRecorded(ctx, rs, m); err != nil || gone {
		t.Fatalf("deallocate: %v %v", gone, err)
	}
	if _, _, err := allocator.OwnRecord(rs, m); !errors.Is(err, allocator.ErrNoRecord) {
		t.Fatalf("record after deallocate: %v", err)
	}
}

// TestHostileCredentials refuses a grant whose login could smuggle an
// option into an ssh command line: the lease exists (ErrUnreadable), so
// callers release it.
func TestHostileCredentials(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t, 5*time.Second)
	fm := allocatortest.NewMiner(t)
	fm.SetUsername("-oProxyCommand=touch /tmp/pwned")
	key, _, _ := protocol.GenerateKey()
	_, err := c.Allocate(context.Background(), minerOf(t, fm), key, allocator.Request{Timeline: 1, SSHKeys: "k"})
	if !errors.Is(err, allocator.ErrUnreadable) || allocator.Definite(err) {
		t.Fatalf("hostile username: %v", err)
	}
	for u, want := range map[string]bool{"root": true, "ubuntu": true, "_svc-1.x": true, "-o": false, "a b": false, "": false, "1root": false, strings.Repeat("a", 33): false} {
		if got := allocator.ValidUsername(u); got != want {
			t.Errorf("ValidUsername(%q) = %v", u, got)
		}
	}
}

func TestFindMiner(t *testing.T) {
	mg := &subnet.Metagraph{NetUID: 2, Neurons: []subnet.Neuron{
		{UID: 0, Hotkey: "hk0", Axon: subnet.AxonInfo{IP: "10.0.0.1", Port: 8091}},
		{UID: 1, Hotkey: "hk1"},
	}}
	if m, err := allocator.FindMiner(mg, "hk0", 0); err != nil || m.Addr != "10.0.0.1:8091" || m.IP != "10.0.0.1" {
		t.Fatalf("by hotkey: %+v %v", m, err)
	}
	if _, err := allocator.FindMiner(mg, "", 1); market.ErrorCode(err) != market.EUNAVAILABLE {
		t.Fatalf("no axon: %v", err)
	}
	if _, err := allocator.FindMiner(mg, "nope", 0); market.ErrorCode(err) != market.ENOTFOUND {
		t.Fatalf("unknown hotkey: %v", err)
	}
	if _, err := allocator.FindMiner(mg, "", 7); market.ErrorCode(err) != market.ENOTFOUND {
		t.Fatalf("unknown uid: %v", err)
	}
	for d, want := range map[time.Duration]int64{time.Minute: 1, 24 * time.Hour: 1, 25 * time.Hour: 2, 0: 1} {
		if got := allocator.Days(d); got != want {
			t.Errorf("Days(%v) = %d, want %d", d, got, want)
		}
	}
}
