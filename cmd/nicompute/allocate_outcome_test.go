package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nicompute/nicompute/internal/allocations"
	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/subnet"
)

// fakeMinerAxon serves the Allocate synapse with the miner hotkey of w
// and serves that axon on chain, so the allocation commands reach it. Its
// handler is swapped per test step; calls counts the requests it ran.
type fakeMinerAxon struct {
	mu      sync.Mutex
	handler axon.Handler
	calls   atomic.Int64
	port    int
}

func newFakeMinerAxon(tb testing.TB, w *minerWorld) *fakeMinerAxon {
	tb.Helper()
	f := &fakeMinerAxon{}
	srv, err := axon.NewServer(axon.Config{Hotkey: w.minerKey}, nictest.Logger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	srv.Attach(protocol.AllocateName, func(ctx context.Context, call *axon.Call) (any, error) {
		f.calls.Add(1)
		f.mu.Lock()
		h := f.handler
		f.mu.Unlock()
		return h(ctx, call)
	}, axon.Hooks{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ctx, ln)
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	f.port = ln.Addr().(*net.TCPAddr).Port
	f.serveOnChain(tb, w, f.port)
	return f
}

// serveOnChain points the miner's axon record at 127.0.0.1:port.
func (f *fakeMinerAxon) serveOnChain(tb testing.TB, w *minerWorld, port int) {
	tb.Helper()
	ctx := context.Background()
	if err := w.client.ServeAxon(ctx, w.minerKey, w.netuid, subnet.AxonInfo{Version: 1, IP: "127.0.0.1", Port: uint16(port), Protocol: 4}); err != nil {
		tb.Fatal(err)
	}
	if _, err := w.node.Seal(ctx); err != nil {
		tb.Fatal(err)
	}
}

func (f *fakeMinerAxon) set(h axon.Handler) {
	f.mu.Lock()
	f.handler = h
	f.mu.Unlock()
}

// answer is the miner's successful reply.
type answer struct {
	Output protocol.Output `json:"output"`
}

// allocFixture is a fake miner and the CLI arguments that reach it.
type allocFixture struct {
	w      *minerWorld
	m      *fakeMinerAxon
	common []string // chain, wallet and miner selection
	key    string   // an SSH public key file
	dir    string   // the validator's allocation records
}

func newAllocFixture(t *testing.T) *allocFixture {
	t.Helper()
	w := newMinerWorld(t)
	fx := &allocFixture{w: w, m: newFakeMinerAxon(t, w), key: newSSHKeyPair(t).pub,
		dir: allocations.Dir(w.wallets, "validator", "default")}
	fx.common = []string{"--subtensor.chain_endpoint", w.node.Endpoint(), "--wallet.path", w.wallets, "--wallet.name", "validator",
		"--netuid", strconv.Itoa(int(w.netuid)), "--hotkey", w.minerKey.SS58()}
	return fx
}

func (fx *allocFixture) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return allocCLI(t, append(args, fx.common...)...)
}

func (fx *allocFixture) allocate(t *testing.T, extra ...string) (int, string, string) {
	t.Helper()
	return fx.run(t, append([]string{"allocate", "--ssh-key", fx.key, "--ram", "256MiB", "--timeout", "1s"}, extra...)...)
}

func (fx *allocFixture) keyFile() string {
	return filepath.Join(fx.dir, strconv.Itoa(int(fx.w.netuid))+"-"+fx.w.minerKey.SS58()+".key")
}

// TestAllocateUnknownOutcome makes the miner answer allocate with each
// kind of failure. A refusal (4xx other than 408) removes the pending
// record and key; a timeout, a server error or no answer keeps both, and
// the message says how to check or release the lease.
func TestAllocateUnknownOutcome(t *testing.T) {
	fx := newAllocFixture(t)
	refuse := func(status int) axon.Handler {
		return func(context.Context, *axon.Call) (any, error) {
			return nil, &axon.Error{Status: status, Message: "no", Result: answer{Output: protocol.Output{Error: "refused for the test"}}}
		}
	}
	// How a nicompute miner refuses: HTTP 200, status false, a code.
	refuse200 := func(code string) axon.Handler {
		return func(context.Context, *axon.Call) (any, error) {
			return answer{Output: protocol.Output{Error: "refused for the test", Code: code}}, nil
		}
	}
	for _, tc := range []struct {
		name    string
		handler axon.Handler
		dead    bool // the chain points at a port nothing listens on
		keep    bool
	}{
		{"refused with 200 and a conflict", refuse200(market.ECONFLICT), false, false},
		{"refused with 200 and invalid", refuse200(market.EINVALID), false, false},
		{"refused with 200 and unavailable", refuse200(market.EUNAVAILABLE), false, true},
		{"refused 400", refuse(http.StatusBadRequest), false, false},
		{"refused 409", refuse(http.StatusConflict), false, false},
		{"refused 403", refuse(http.StatusForbidden), false, false},
		{"timeout 408", func(ctx context.Context, _ *axon.Call) (any, error) {
			<-ctx.Done() // the axon answers 408 at the deadline
			return nil, ctx.Err()
		}, false, true},
		{"unavailable 503", refuse(http.StatusServiceUnavailable), false, true},
		{"internal 500", func(context.Context, *axon.Call) (any, error) { return nil, errors.New("boom") }, false, true},
		{"bad gateway 502", refuse(http.StatusBadGateway), false, true},
		{"no answer", nil, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := allocations.Remove(fx.dir, uint16(fx.w.netuid), fx.w.minerKey.SS58()); err != nil {
				t.Fatal(err)
			}
			fx.m.set(tc.handler)
			if tc.dead {
				fx.m.serveOnChain(t, fx.w, nictest.FreePort(t))
				defer fx.m.serveOnChain(t, fx.w, fx.m.port)
			}
			code, _, stderr := fx.allocate(t)
			if code != 1 {
				t.Fatalf("allocate: exit %d: %s", code, stderr)
			}
			rec, rerr := allocations.Load(fx.dir, uint16(fx.w.netuid), fx.w.minerKey.SS58())
			_, kerr := allocations.Key(fx.dir, uint16(fx.w.netuid), fx.w.minerKey.SS58())
			if !tc.keep {
				if !errors.Is(rerr, allocations.ErrNotFound) || !errors.Is(kerr, allocations.ErrNotFound) {
					t.Fatalf("after a refusal: record %+v (%v), key err %v; want both removed", rec, rerr, kerr)
				}
				if strings.Contains(stderr, "unknown") || !strings.Contains(stderr, "refused for the test") {
					t.Errorf("a refusal reported as unknown, or without the miner's reason: %s", stderr)
				}
				return
			}
			if rerr != nil || !rec.Pending || kerr != nil {
				t.Fatalf("after an unknown outcome: record %+v (%v), key err %v; want a pending record and its key", rec, rerr, kerr)
			}
			// The commands it suggests select the same wallet, chain and subnet.
			sel := fmt.Sprintf("--netuid %d --hotkey %s --wallet.path %s --wallet.name validator --subtensor.chain_endpoint %s",
				fx.w.netuid, fx.w.minerKey.SS58(), fx.w.wallets, fx.w.node.Endpoint())
			for _, want := range []string{"outcome is unknown", "nicompute allocation status " + sel, "nicompute deallocate " + sel} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q: %s", want, stderr)
				}
			}
		})
	}
}

// TestAllocateKeepsExistingRecord allocates on a miner for which a record
// exists: pending (an earlier answer was lost) or allocated. allocate must
// refuse without asking the miner or touching the key, and say what to
// run. allocation status then settles a pending record whose lease exists,
// and deallocate removes one whose lease does not.
func TestAllocateKeepsExistingRecord(t *testing.T) {
	fx := newAllocFixture(t)
	fx.m.set(func(ctx context.Context, _ *axon.Call) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	if code, _, stderr := fx.allocate(t); code != 1 || !strings.Contains(stderr, "outcome is unknown") {
		t.Fatalf("first allocate: exit %d: %s", code, stderr)
	}
	key, err := os.ReadFile(fx.keyFile())
	if err != nil {
		t.Fatalf("pending key: %v", err)
	}

	calls := fx.m.calls.Load()
	code, _, stderr := fx.allocate(t)
	if code != 1 || !strings.Contains(stderr, "pending") || !strings.Contains(stderr, "nicompute allocation status") || !strings.Contains(stderr, "nicompute deallocate") {
		t.Fatalf("allocate over a pending record: exit %d: %s", code, stderr)
	}
	if got, err := os.ReadFile(fx.keyFile()); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("the pending allocation's key was replaced (%v)", err)
	}
	if fx.m.calls.Load() != calls {
		t.Fatal("allocate asked the miner although a record exists")
	}

	// The miner does hold the lease: status records it as allocated.
	lease := protocol.Output{Status: true, LeaseID: "l0123456789abcdef", Port: 40022, State: "running"}
	fx.m.set(func(_ context.Context, call *axon.Call) (any, error) {
		a, err := protocol.DecodeAllocate(call.Body)
		if err != nil || a.Mode() != protocol.ModeStatus {
			return nil, &axon.Error{Status: http.StatusBadRequest, Message: "want status"}
		}
		return answer{Output: lease}, nil
	})
	code, stdout, stderr := fx.run(t, "allocation", "status")
	if code != 0 || !strings.Contains(stdout, "recorded as allocated") {
		t.Fatalf("status of the pending allocation: exit %d: %s %s", code, stdout, stderr)
	}
	rec, err := allocations.Load(fx.dir, uint16(fx.w.netuid), fx.w.minerKey.SS58())
	if err != nil || rec.Pending || rec.LeaseID != lease.LeaseID || rec.Port != lease.Port {
		t.Fatalf("record after status: %+v, %v", rec, err)
	}
	if got, _ := os.ReadFile(fx.keyFile()); !bytes.Equal(got, key) {
		t.Fatal("status replaced the key")
	}
	calls = fx.m.calls.Load()
	if code, _, stderr := fx.allocate(t); code != 1 || !strings.Contains(stderr, "already hold") || !strings.Contains(stderr, "nicompute deallocate") {
		t.Fatalf("allocate over an allocated record: exit %d: %s", code, stderr)
	}
	if fx.m.calls.Load() != calls {
		t.Fatal("allocate asked the miner although a record exists")
	}

	// A pending record whose lease the miner does not have: status says
	// so, deallocate removes the record, and allocate works again.
	rec.Pending = true
	if err := allocations.Save(fx.dir, rec); err != nil {
		t.Fatal(err)
	}
	fx.m.set(func(context.Context, *axon.Call) (any, error) {
		// As the miner's handler answers: the reason in output.error too.
		msg := "no lease on this miner"
		return nil, &axon.Error{Status: http.StatusNotFound, Message: msg, Result: answer{Output: protocol.Output{Error: msg}}}
	})
	if code, _, stderr := fx.run(t, "allocation", "status"); code != 1 || !strings.Contains(stderr, "nicompute deallocate") {
		t.Fatalf("status of a pending allocation without lease: exit %d: %s", code, stderr)
	}
	if code, stdout, stderr := fx.run(t, "deallocate"); code != 0 || !strings.Contains(stdout, "already gone") {
		t.Fatalf("deallocate: exit %d: %s %s", code, stdout, stderr)
	}
	if _, err := os.Stat(fx.keyFile()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("key after deallocate: %v", err)
	}
	fx.m.set(func(context.Context, *axon.Call) (any, error) {
		return nil, &axon.Error{Status: http.StatusConflict, Message: "busy"}
	})
	if code, _, stderr := fx.allocate(t); code != 1 || !strings.Contains(stderr, "409") {
		t.Fatalf("allocate after deallocate reached no miner: exit %d: %s", code, stderr)
	}
}

// TestAllocateHostileLogin has the miner answer credentials whose username
// is an ssh option: allocate must not print it into an ssh command line,
// and keeps the lease's record (pending) so that deallocate can release it.
func TestAllocateHostileLogin(t *testing.T) {
	fx := newAllocFixture(t)
	fx.m.set(func(_ context.Context, call *axon.Call) (any, error) {
		a, err := protocol.DecodeAllocate(call.Body)
		if err != nil {
			return nil, err
		}
		pub, err := protocol.ParsePublicKey(a.PublicKey)
		if err != nil {
			return nil, err
		}
		info, err := protocol.EncryptCredentials(pub, protocol.Credentials{Username: "-oProxyCommand=touch /tmp/pwned", Port: 40022})
		if err != nil {
			return nil, err
		}
		return answer{Output: protocol.Output{Status: true, Info: info, Port: 40022, LeaseID: "l0123456789abcdef"}}, nil
	})
	code, stdout, stderr := fx.allocate(t)
	if code == 0 || strings.Contains(stdout, "ProxyCommand") {
		t.Fatalf("allocate printed a hostile login: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if rec, err := allocations.Load(fx.dir, uint16(fx.w.netuid), fx.w.minerKey.SS58()); err != nil || !rec.Pending {
		t.Fatalf("the lease's record: %+v, %v; want it kept pending for deallocate", rec, err)
	}
}
