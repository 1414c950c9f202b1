package main

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/protocol"
)

// TestMinerLeaseLimits runs a real miner, as root on the engine's host:
// its lease cannot reach a listener on the lease network's gateway (the
// packet filter is installed before the lease starts), the filter is put
// back by a restarted miner after someone removed part of it, and removed
// once the last lease ends; a lease of 64 MiB that keeps writing is paused
// with a reason its renter reads, and writes nothing more.
func TestMinerLeaseLimits(t *testing.T) {
	nictest.RequireNetAdmin(t)
	w := newMinerWorld(t)
	e := newLeaseEnv(t, "t"+randHex(t, 6))
	o := minerOpts(t, w, e)
	o.DiskCheck = 300 * time.Millisecond
	m := startTestMinerProc(t, o)
	lc := newLeaseClient(t, w.validator, m.AxonAddr(), m.Hotkey())
	ctx := context.Background()

	r := newLeaseRenter(t)
	key := newSSHKeyPair(t)
	req := r.allocate(key.line, 1000)
	req.SetRequirement(market.Requirement{CPUs: 1, MemoryBytes: 256 << 20, DiskBytes: 64 << 20})
	out, st, err := lc.call(ctx, req, time.Minute)
	if st != 200 {
		t.Fatalf("allocate: %d %v", st, err)
	}
	c, err := sshLogin(out.Port, ssh.PublicKeys(key.signer), 10*time.Second)
	if err != nil {
		t.Fatalf("ssh login: %v", err)
	}
	defer c.Close()

	ni, err := e.cli.NetworkInspect(ctx, e.network, client.NetworkInspectOptions{})
	if err != nil || len(ni.Network.IPAM.Config) == 0 {
		t.Fatalf("lease network: %v", err)
	}
	bridge := "br-" + ni.Network.ID[:12]
	gw := ni.Network.IPAM.Config[0].Gateway
	ln, err := net.Listen("tcp", net.JoinHostPort(gw.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	port := nictest.ServeHello(t, ln, "host")
	if got, _ := sshOutput(c, "nc -w 3 "+gw.String()+" "+strconv.Itoa(port)+" </dev/null; echo done"); strings.Contains(got, "hello") {
		t.Fatalf("lease reached the host at its gateway %s: %q", gw, got)
	}
	if rules := iptablesRules(t); !strings.Contains(rules, "-A DOCKER-USER -i "+bridge+" -j NICOMPUTE-F-"+bridge) ||
		!strings.Contains(rules, "-A INPUT -i "+bridge+" -j NICOMPUTE-I-"+bridge) {
		t.Fatalf("no packet filter for %s:\n%s", bridge, rules)
	}

	// Someone deletes a jump; a restarted miner puts it back.
	if out, err := exec.Command("iptables", "-w", "-D", "INPUT", "-i", bridge, "-j", "NICOMPUTE-I-"+bridge).CombinedOutput(); err != nil {
		t.Fatalf("delete jump: %v: %s", err, out)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = startTestMinerProc(t, o)
	lc = newLeaseClient(t, w.validator, m.AxonAddr(), m.Hotkey())
	if rules := iptablesRules(t); !strings.Contains(rules, "-A INPUT -i "+bridge+" -j NICOMPUTE-I-"+bridge) {
		t.Fatalf("restarted miner did not repair the filter:\n%s", rules)
	}

	// The renter writes past the lease's 64 MiB, a MiB at a time.
	// The session blocks once the lease is paused; it ends with the lease.
	writer := "i=0; while [ $i -lt 2048 ]; do dd if=/dev/zero of=/root/fill$i bs=1M count=1 2>/dev/null || exit 1; i=$((i+1)); done; echo wrote-all"
	wrote := make(chan string, 1)
	go func() {
		out, _ := sshOutput(c, writer)
		wrote <- out
	}()
	var status protocol.Output
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, st, _ = lc.call(ctx, r.status(), 30*time.Second)
		if st == 200 && status.State == "paused" {
			break
		}
		select {
		case out := <-wrote:
			t.Fatalf("the lease wrote 2 GiB into its 64 MiB (%q); status %d %+v", out, st, status)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease not paused for its disk within 60 s: %d %+v", st, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(status.Error, "more than its disk size of 64.0 MiB") {
		t.Errorf("status of the paused lease: %+v, want the disk reason", status)
	}
	written := func() int64 {
		cs, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Size: true,
			Filters: make(client.Filters).Add("label", "nicompute.lease="+out.LeaseID)})
		if err != nil || len(cs.Items) != 1 {
			t.Fatalf("measure the lease: %v", err)
		}
		return cs.Items[0].SizeRw
	}
	first := written()
	time.Sleep(time.Second)
	if again := written(); again != first || first >= 2048<<20 {
		t.Fatalf("lease paused at %d MiB wrote on to %d MiB", first>>20, again>>20)
	}
	t.Logf("lease of 64 MiB paused holding %d MiB", first>>20)

	if out, st, err := lc.call(ctx, r.deallocate(), time.Minute); st != 200 || !out.Status {
		t.Fatalf("deallocate: %d %+v %v", st, out, err)
	}
	if rules := iptablesRules(t); strings.Contains(rules, "NICOMPUTE-F-"+bridge) || strings.Contains(rules, "NICOMPUTE-I-"+bridge) {
		t.Fatalf("packet filter of %s left after the last lease ended:\n%s", bridge, rules)
	}
}

// TestMinerRefusesUnconfinedLeases: a miner whose packet filter cannot be
// installed (here: no iptables) refuses to allocate, with a reason, unless
// its operator passed the unsafe flag.
func TestMinerRefusesUnconfinedLeases(t *testing.T) {
	w := newMinerWorld(t)
	e := newLeaseEnv(t, "t"+randHex(t, 6))
	o := minerOpts(t, w, e)
	o.IPTables = "/nonexistent/iptables"
	m := startTestMinerProc(t, o)
	lc := newLeaseClient(t, w.validator, m.AxonAddr(), m.Hotkey())
	ctx := context.Background()
	key := newSSHKeyPair(t)
	out, st, _ := lc.call(ctx, newLeaseRenter(t).allocate(key.line, 1), time.Minute)
	if st != 503 || !strings.Contains(out.Error, "cannot keep leases off its host") {
		t.Fatalf("allocate without a packet filter: %d %+v", st, out)
	}
	if cs := e.containers(t); len(cs) != 0 {
		t.Fatalf("refused allocation left %d containers", len(cs))
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	o.UnsafeUnconfined = true
	m = startTestMinerProc(t, o)
	lc = newLeaseClient(t, w.validator, m.AxonAddr(), m.Hotkey())
	r := newLeaseRenter(t)
	if out, st, err := lc.call(ctx, r.allocate(key.line, 1), time.Minute); st != 200 || !out.Status {
		t.Fatalf("allocate with %s: %d %+v %v", unsafeUnconfinedFlag, st, out, err)
	}
	lc.call(ctx, r.deallocate(), time.Minute)
}

// iptablesRules is `iptables -S` of the filter table.
func iptablesRules(tb testing.TB) string {
	tb.Helper()
	out, err := exec.Command("iptables", "-w", "-S").Output()
	if err != nil {
		tb.Fatalf("iptables -S: %v", err)
	}
	return string(out)
}
