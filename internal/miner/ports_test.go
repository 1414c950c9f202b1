package miner

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
)

// withPorts asks for extra container ports.
func withPorts(a *protocol.Allocate, ports ...int) *protocol.Allocate {
	for _, p := range ports {
		a.DockerRequirement.Ports = append(a.DockerRequirement.Ports, protocol.Int(p))
	}
	return a
}

// TestExtraPorts checks the docker_requirement.ports extension: each
// requested container port is published on its own host port of
// --miner.ports.range, answered in output.ports on allocate and status,
// held exclusively while the lease lives and freed when it ends; requests
// beyond the miner's limits are refused with the reason and change nothing.
func TestExtraPorts(t *testing.T) {
	w := newWorld(t)
	tm := startTestMiner(t, w, func(c *Config, _ *Deps) {
		c.LeasePorts = PortRange{First: 21000, Last: 21002}
		c.MaxLeasePorts = 2
	})
	_, key := sshPub(t)
	small := market.Requirement{CPUs: 1, MemoryBytes: 256 << 20}

	a, b := newRenter(t), newRenter(t)
	out, st := tm.call(t, nil, withPorts(allocReq(a, key, small), 8888, 6006))
	want := []market.PortMap{{Container: 8888, Host: 21000}, {Container: 6006, Host: 21001}}
	if st != 200 || !slices.Equal(out.Ports, want) {
		t.Fatalf("allocate with ports: %d %+v", st, out)
	}
	if got := tm.rt.container(out.LeaseID).spec.Ports; !slices.Equal(got, want) {
		t.Fatalf("container ports %+v, want %+v", got, want)
	}
	if s, st := tm.call(t, nil, statusReq(a)); st != 200 || !slices.Equal(s.Ports, want) {
		t.Fatalf("status: %d %+v", st, s)
	}

	for _, tc := range []struct {
		name  string
		ports []int
		code  int
		msg   string
	}{
		{"over the miner's limit", []int{1, 2, 3}, http.StatusBadRequest, "at most 2"},
		{"the ssh port", []int{22}, http.StatusBadRequest, "ssh port"},
		{"repeated", []int{80, 80}, http.StatusBadRequest, "twice"},
		{"out of range", []int{70000}, http.StatusBadRequest, "out of range"},
		{"range exhausted", []int{80, 81}, http.StatusConflict, "no free port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tm.live(t))
			out, st := tm.call(t, nil, withPorts(allocReq(newRenter(t), key, small), tc.ports...))
			if st != tc.code || !strings.Contains(out.Error, tc.msg) {
				t.Fatalf("got %d %q, want %d with %q", st, out.Error, tc.code, tc.msg)
			}
			if after := len(tm.live(t)); after != before {
				t.Fatalf("a refused request changed the leases: %d → %d", before, after)
			}
		})
	}

	out, st = tm.call(t, nil, withPorts(allocReq(b, key, small), 9000))
	if st != 200 || !slices.Equal(out.Ports, []market.PortMap{{Container: 9000, Host: 21002}}) {
		t.Fatalf("second lease: %d %+v", st, out)
	}
	if _, st := tm.call(t, nil, deallocReq(a)); st != 200 {
		t.Fatalf("deallocate: %d", st)
	}
	out, st = tm.call(t, nil, withPorts(allocReq(a, key, small), 7000, 7001))
	if st != 200 || !slices.Equal(out.Ports, []market.PortMap{{Container: 7000, Host: 21000}, {Container: 7001, Host: 21001}}) {
		t.Fatalf("ports of an ended lease not reused: %d %+v", st, out)
	}

	plain := startTestMiner(t, w, nil) // a second miner, offering no extra ports
	if out, st := plain.call(t, nil, withPorts(allocReq(newRenter(t), key, small), 8888)); st != http.StatusBadRequest || !strings.Contains(out.Error, "no extra ports") {
		t.Fatalf("miner without a port range: %d %+v", st, out)
	}
}

// TestExtend checks the extend docker action: the owner's lease lasts at
// least the new timeline from now, never shorter than before; a timeline
// below one day, or another owner's request, is refused.
func TestExtend(t *testing.T) {
	w := newWorld(t)
	now := time.Now()
	tm := startTestMiner(t, w, func(c *Config, _ *Deps) { c.Now = func() time.Time { return now } })
	r := newRenter(t)
	_, key := sshPub(t)
	out, st := tm.call(t, nil, allocReq(r, key, market.Requirement{CPUs: 1, MemoryBytes: 256 << 20}))
	if st != 200 {
		t.Fatalf("allocate: %d %+v", st, out)
	}
	extend := func(r renter, days int64) (protocol.Output, int) {
		a := actionReq(r, protocol.ActionExtend, "")
		a.Timeline = days
		return tm.call(t, nil, a)
	}
	out, st = extend(r, 3)
	if st != 200 || out.ExpiresAt == nil || !out.ExpiresAt.Equal(now.Add(72*time.Hour).UTC()) {
		t.Fatalf("extend by 3 days: %d %+v", st, out)
	}
	if l, _ := tm.store.Lease(t.Context(), out.LeaseID); !l.ExpiresAt.Equal(now.Add(72 * time.Hour).UTC()) {
		t.Fatalf("stored expiry %v", l.ExpiresAt)
	}
	if out, st = extend(r, 2); st != 200 || !out.ExpiresAt.Equal(now.Add(72*time.Hour).UTC()) {
		t.Fatalf("a shorter extension shortened the lease: %d %+v", st, out)
	}
	if out, st = extend(r, 0); st != http.StatusBadRequest || !strings.Contains(out.Error, "at least 1 day") {
		t.Fatalf("extend by 0: %d %+v", st, out)
	}
	if out, st = extend(newRenter(t), 5); st != http.StatusForbidden {
		t.Fatalf("extend by a stranger: %d %+v", st, out)
	}
}

// TestLeasePortsConfig refuses a port range for extra ports that overlaps
// the SSH ports, or a per-lease limit out of range.
func TestLeasePortsConfig(t *testing.T) {
	hk := mustKey(t, "//PortsConfig")
	for _, tc := range []struct {
		ports PortRange
		max   int
		want  string
	}{
		{PortRange{First: 20500, Last: 21500}, 0, "overlap"},
		{PortRange{First: 30000, Last: 29000}, 0, "lease ports"},
		{PortRange{First: 30000, Last: 30010}, 99, "max lease ports"},
	} {
		c := Config{NetUID: 1, Hotkey: hk, Listen: "127.0.0.1:0", ExternalIP: "127.0.0.1", DefaultImage: "busybox",
			SSHPorts: PortRange{First: 20000, Last: 20999}, LeasePorts: tc.ports, MaxLeasePorts: tc.max}
		if err := c.setDefaults(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("lease ports %+v max %d: %v, want %q", tc.ports, tc.max, err, tc.want)
		}
	}
}
