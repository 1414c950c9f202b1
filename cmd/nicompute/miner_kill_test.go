package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/sqlite"
)

// minerProc is a `nicompute miner` subprocess.
type minerProc struct {
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

func startMinerProc(tb testing.TB, bin string, args, env []string) *minerProc {
	tb.Helper()
	p := &minerProc{cmd: exec.Command(bin, args...), log: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	tb.Cleanup(func() { p.kill() })
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *minerProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// exited waits up to d for the process to end on its own.
func (p *minerProc) exited(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// TestMinerKill9 runs the real binary and kills it with SIGKILL at every
// step of an allocation (a failpoint per step, then random moments), then
// restarts it, checking each time that no container leaked, no lease was
// lost or left half-made, and that the renter of an existing lease kept its
// SSH session through every crash.
func TestMinerKill9(t *testing.T) {
	w := newMinerWorld(t)
	e := newLeaseEnv(t, minerInstance(w.minerKey.SS58(), w.netuid)) // the default instance of `nicompute miner`
	axonPort := nictest.FreePort(t)
	sshBase := nictest.FreePort(t)
	dataDir := t.TempDir()
	args := []string{"miner", "--subtensor.chain_endpoint", w.node.Endpoint(), "--wallet.path", w.wallets, "--wallet.name", "miner",
		"--netuid", strconv.Itoa(int(w.netuid)), "--axon.ip", "127.0.0.1", "--axon.port", strconv.Itoa(axonPort),
		"--ssh.port-range", fmt.Sprintf("%d-%d", sshBase, min(sshBase+49, 65535)), "--ssh.ip", "127.0.0.1",
		"--miner.image", e.image, "--miner.images=", "--miner.data", dataDir, "--miner.binary", e.bin, "--miner.docker.network", e.network,
		"--miner.reserve.ram", "0", "--miner.reserve.disk", "0", "--miner.lease.ram", "256MiB",
		"--miner.chain-poll", "200ms", "--miner.sweep", "1s", "--logging.debug"}
	lc := newLeaseClient(t, w.validator, "127.0.0.1:"+strconv.Itoa(axonPort), w.minerKey.SS58())
	ctx := context.Background()

	// ready waits until the restarted miner answers the first renter's
	// status: it serves only after reconciling.
	var proc *minerProc
	start := func(env ...string) {
		t.Helper()
		proc = startMinerProc(t, e.bin, args, env)
	}
	keeper := newLeaseRenter(t)
	ready := func(expectLease bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, st, err := lc.call(ctx, keeper.status(), 5*time.Second)
			if (expectLease && st == 200) || (!expectLease && st == 404) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("miner not ready: %d %v\n%s", st, err, proc.log.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	start()
	ready(false)
	key := newSSHKeyPair(t)
	out, st, err := lc.call(ctx, keeper.allocate(key.line, 1), time.Minute)
	if st != 200 {
		t.Fatalf("allocate the kept lease: %d %v", st, err)
	}
	keptLease := out.LeaseID
	conn, err := sshLogin(out.Port, ssh.PublicKeys(key.signer), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A long-running session prints a tick every 100 ms for the whole test.
	var ticks atomic.Int64
	sess, err := conn.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdout, _ := sess.StdoutPipe()
	if err := sess.Start("while true; do echo tick; sleep 0.1; done"); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			ticks.Add(1)
		}
	}()
	alive := func(when string) {
		t.Helper()
		before := ticks.Load()
		if got, err := sshOutput(conn, "echo alive"); err != nil || got != "alive\n" {
			t.Fatalf("%s: renter session broken: %q, %v", when, got, err)
		}
		for deadline := time.Now().Add(5 * time.Second); ticks.Load() <= before; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the long-running session stopped ticking", when)
			}
		}
	}

	type round struct {
		failpoint string
		delay     time.Duration
	}
	rounds := []round{{failpoint: "reserved"}, {failpoint: "created"}, {failpoint: "recorded"}, {failpoint: "started"}, {failpoint: "activated"}}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 27))
	for range 5 {
		rounds = append(rounds, round{delay: time.Duration(rng.Int64N(int64(1200 * time.Millisecond)))})
	}
	proc.kill()
	for i, rd := range rounds {
		name := fmt.Sprintf("round %d (failpoint %q, delay %v)", i, rd.failpoint, rd.delay)
		var env []string
		if rd.failpoint != "" {
			env = []string{failpointEnv + "=" + rd.failpoint}
		}
		start(env...)
		ready(true)
		alive(name + " after restart")
		r := newLeaseRenter(t)
		type result struct {
			st  int
			err error
		}
		res := make(chan result, 1)
		go func() {
			_, st, err := lc.call(ctx, r.allocate(key.line, 1), 30*time.Second)
			res <- result{st, err}
		}()
		if rd.failpoint != "" {
			if !proc.exited(30 * time.Second) {
				t.Fatalf("%s: the miner did not die at its failpoint\n%s", name, proc.log.String())
			}
		} else {
			time.Sleep(rd.delay)
			proc.kill()
		}
		got := <-res
		alive(name + " while the miner is dead")

		// Restart (without a failpoint) and check the invariants.
		start()
		ready(true)
		checkLeaseInvariants(t, name, filepath.Join(dataDir, "leases.db"), e, keptLease)
		rolledBack := strings.Contains(proc.log.String(), "interrupted while being created")
		if rd.failpoint != "" && rd.failpoint != "activated" && !rolledBack {
			t.Fatalf("%s: the restarted miner did not roll back the interrupted lease\n%s", name, proc.log.String())
		}
		_, st, _ := lc.call(ctx, r.status(), 10*time.Second)
		switch {
		case got.st == 200 && st != 200:
			t.Fatalf("%s: the renter was answered but its lease is gone (status %d)", name, st)
		case st == 200:
			// Answered, or killed between activation and the answer: the
			// lease is whole and its owner can end it.
			if _, st, err := lc.call(ctx, r.deallocate(), 30*time.Second); st != 200 {
				t.Fatalf("%s: deallocate the round's lease: %d %v", name, st, err)
			}
		case st != 403:
			t.Fatalf("%s: status of the interrupted renter %d, want 403 (no lease)", name, st)
		}
		t.Logf("%s: allocate answered %d, rolled back at restart: %v, lease afterwards: %v", name, got.st, rolledBack, st == 200)
		proc.kill()
	}
	start()
	ready(true)
	checkLeaseInvariants(t, "final", filepath.Join(dataDir, "leases.db"), e, keptLease)

	// A graceful stop (SIGTERM) exits 0 and leaves the leases running.
	proc.cmd.Process.Signal(syscall.SIGTERM)
	if !proc.exited(20 * time.Second) {
		t.Fatalf("the miner did not stop on SIGTERM\n%s", proc.log.String())
	}
	if code := proc.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, proc.log.String())
	}
	alive("after a graceful stop")
	checkLeaseInvariants(t, "after a graceful stop", filepath.Join(dataDir, "leases.db"), e, keptLease)
	start()
	ready(true)
	if _, st, err := lc.call(ctx, keeper.deallocate(), 30*time.Second); st != 200 {
		t.Fatalf("deallocate the kept lease: %d %v", st, err)
	}
	if cs := e.containers(t); len(cs) != 0 {
		t.Fatalf("containers left: %+v", cs)
	}
}

// checkLeaseInvariants reads the miner's lease store and the engine after a
// restart: no lease is half-made, every live lease has its running
// container, every container has its live lease, and the kept lease lives.
func checkLeaseInvariants(t *testing.T, when, dbPath string, e *leaseEnv, kept string) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), dbPath, sqlite.LeaseSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	live, err := sqlite.NewLeaseStore(db).LiveLeases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]market.Lease{}
	for _, l := range live {
		if l.State != market.LeaseActive {
			t.Fatalf("%s: lease %s left %s", when, l.ID, l.State)
		}
		byID[l.ID] = l
	}
	if _, ok := byID[kept]; !ok {
		t.Fatalf("%s: the kept lease %s is not live", when, kept)
	}
	cs := e.containers(t)
	for _, c := range cs {
		l, ok := byID[c.LeaseID]
		if !ok {
			t.Fatalf("%s: container %s of lease %s has no live lease (leaked)", when, c.Name, c.LeaseID)
		}
		if string(c.State) != "running" || c.ID != l.ContainerID {
			t.Fatalf("%s: container of lease %s: state %s id %s, recorded %s", when, l.ID, c.State, c.ID, l.ContainerID)
		}
	}
	if len(cs) != len(live) {
		names := []string{}
		for _, c := range cs {
			names = append(names, c.LeaseID)
		}
		t.Fatalf("%s: %d live leases, containers for %s", when, len(live), strings.Join(names, ","))
	}
}
