package market

import (
	"testing"
	"time"
)

func TestLeaseStateTransitions(t *testing.T) {
	states := []LeaseState{LeaseCreating, LeaseActive, LeaseEnded, "bogus"}
	want := map[[2]LeaseState]bool{
		{LeaseCreating, LeaseActive}: true,
		{LeaseCreating, LeaseEnded}:  true,
		{LeaseActive, LeaseEnded}:    true,
	}
	for _, from := range states {
		for _, to := range states {
			if got := from.CanBecome(to); got != want[[2]LeaseState{from, to}] {
				t.Errorf("%s → %s: CanBecome = %v", from, to, got)
			}
		}
	}
	for _, tc := range []struct {
		s           LeaseState
		valid, live bool
	}{
		{LeaseCreating, true, true}, {LeaseActive, true, true}, {LeaseEnded, true, false}, {"", false, false},
	} {
		if tc.s.Valid() != tc.valid || tc.s.Live() != tc.live {
			t.Errorf("%q: Valid %v Live %v", tc.s, tc.s.Valid(), tc.s.Live())
		}
	}
}

func TestLeaseOwnerIs(t *testing.T) {
	a := LeaseOwner{Hotkey: "5A", KeyFingerprint: "f1"}
	for _, tc := range []struct {
		name string
		o    LeaseOwner
		want bool
	}{
		{"same", LeaseOwner{"5A", "f1"}, true},
		{"other hotkey", LeaseOwner{"5B", "f1"}, false},
		{"other key", LeaseOwner{"5A", "f2"}, false},
		{"empty", LeaseOwner{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := a.Is(tc.o); got != tc.want {
				t.Errorf("Is = %v, want %v", got, tc.want)
			}
		})
	}
	if (LeaseOwner{}).Is(LeaseOwner{}) {
		t.Error("empty owners match each other")
	}
}

func TestLeaseValidate(t *testing.T) {
	now := time.Unix(1700000000, 0).UTC()
	good := Lease{ID: "l1", Owner: LeaseOwner{"5A", "f"}, State: LeaseCreating, SSHPort: 4444,
		Resources: Resources{CPUs: 1, MemoryBytes: 1 << 30, GPUs: []string{"0", "1"}}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := good.Validate(); err != nil {
		t.Fatalf("good lease: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Lease)
	}{
		{"bad id", func(l *Lease) { l.ID = "../x" }},
		{"bad state", func(l *Lease) { l.State = "x" }},
		{"no owner key", func(l *Lease) { l.Owner.KeyFingerprint = "" }},
		{"port", func(l *Lease) { l.SSHPort = 70000 }},
		{"cpus", func(l *Lease) { l.Resources.CPUs = 0 }},
		{"gpu twice", func(l *Lease) { l.Resources.GPUs = []string{"0", "0"} }},
		{"expiry", func(l *Lease) { l.ExpiresAt = now.Add(-time.Second) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := good
			l.Resources.GPUs = append([]string(nil), good.Resources.GPUs...)
			tc.mod(&l)
			if err := l.Validate(); ErrorCode(err) != EINVALID {
				t.Errorf("Validate = %v, want EINVALID", err)
			}
		})
	}
	if !good.Expired(good.ExpiresAt) || good.Expired(good.ExpiresAt.Add(-time.Nanosecond)) {
		t.Error("Expired boundary wrong")
	}
}
