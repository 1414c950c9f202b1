package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/docker"
	"github.com/nicompute/nicompute/internal/miner"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/subnet"
)

// TestMinerSameHotkeyTwoSubnets runs two miners of one hotkey on two
// subnets against one engine, each with the default container instance
// and its own data directory. The second one's start-up reconciliation
// must not take the first one's lease container for an orphan of its own
// and remove it.
func TestMinerSameHotkeyTwoSubnets(t *testing.T) {
	w := newMinerWorld(t)
	ctx := context.Background()
	owner := mustURI(t, "//Alice")
	netuid2, err := w.client.CreateSubnet(ctx, owner, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.client.BurnedRegister(ctx, owner, netuid2, w.minerKey.SS58()); err != nil {
		t.Fatal(err)
	}
	if _, err := w.node.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	hotkey := w.minerKey.SS58()
	inst1, inst2 := minerInstance(hotkey, w.netuid), minerInstance(hotkey, netuid2)
	if inst1 == inst2 || len(inst1) > docker.MaxInstanceLen || !strings.HasPrefix(inst1, hotkey) {
		t.Fatalf("instances %q and %q", inst1, inst2)
	}
	if long := minerInstance(hotkey, subnet.NetUID(65535)); len(long) > docker.MaxInstanceLen {
		t.Fatalf("instance %q is longer than %d", long, docker.MaxInstanceLen)
	}
	e := newLeaseEnv(t, inst1)
	nictest.CleanupLabel(t, e.cli, docker.LabelMiner+"="+inst2)

	o1 := minerOpts(t, w, e)
	o1.Instance = "" // the default
	m1 := startTestMinerProc(t, o1)
	lc := newLeaseClient(t, w.validator, m1.AxonAddr(), m1.Hotkey())
	r := newLeaseRenter(t)
	if _, st, err := lc.call(ctx, r.allocate(newSSHKeyPair(t).line, 1), time.Minute); st != 200 {
		t.Fatalf("allocate on subnet %d: %d %v", w.netuid, st, err)
	}
	cs := e.containers(t)
	if len(cs) != 1 {
		t.Fatalf("containers labelled %s: %+v", inst1, cs)
	}
	leased := cs[0].ID
	time.Sleep(1100 * time.Millisecond) // older than the second miner's orphan grace, at Docker's 1 s resolution

	o2 := minerOpts(t, w, e)
	o2.NetUID, o2.Instance, o2.OrphanGrace = netuid2, "", time.Millisecond
	startTestMinerProc(t, o2)

	out, st, err := lc.call(ctx, r.status(), 30*time.Second)
	if st != 200 || !out.Status || out.State != miner.ContainerRunning {
		t.Fatalf("first miner's lease after the second miner started: %d %+v %v", st, out, err)
	}
	if cs := e.containers(t); len(cs) != 1 || cs[0].ID != leased {
		t.Fatalf("containers labelled %s after the second miner started: %+v", inst1, cs)
	}
}

// TestMinerDataDirLock starts a second miner on a running miner's data
// directory: it refuses with a clear error, and starts once the first has
// stopped.
func TestMinerDataDirLock(t *testing.T) {
	w := newMinerWorld(t)
	e := newLeaseEnv(t, "t"+randHex(t, 6))
	o := minerOpts(t, w, e)
	m, err := startMiner(context.Background(), o)
	if err != nil {
		t.Fatalf("start miner: %v", err)
	}
	m2, err := startMiner(context.Background(), o)
	if err == nil {
		m2.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "in use by another miner") || !strings.Contains(err.Error(), o.DataDir) {
		m.Close()
		t.Fatalf("second miner on the same data directory: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	startTestMinerProc(t, o) // the lock went with the first miner
}
