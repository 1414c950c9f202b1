package miner

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/subnet"
)

// TestAllocateLifecycle drives every mode through the real axon and
// dendrite against the fake runtime: check, allocate (credentials decrypt),
// status, pause/unpause/resume/restart, exchange_key, deallocate.
func TestAllocateLifecycle(t *testing.T) {
	w := newWorld(t)
	tm := startTestMiner(t, w, nil)
	r := newRenter(t)
	_, key := sshPub(t)

	check := allocReq(r, key, market.Requirement{GPUs: 1, CPUs: 2, MemoryBytes: 4 << 30})
	check.Checking = true
	if out, st := tm.call(t, nil, check); st != 200 || !out.Status {
		t.Fatalf("check: %d %+v", st, out)
	}
	check.SetRequirement(market.Requirement{GPUs: 3})
	if out, st := tm.call(t, nil, check); st != 200 || out.Status || !strings.Contains(out.Error, "gpus") {
		t.Fatalf("check of 3 gpus: %d %+v, want a 200 no with a reason", st, out)
	}

	out, st := tm.call(t, nil, allocReq(r, key, market.Requirement{GPUs: 1, CPUs: 2, MemoryBytes: 4 << 30, DiskBytes: 10 << 30}))
	if st != 200 || !out.Status || out.LeaseID == "" || out.Port != 20000 || out.ExpiresAt == nil {
		t.Fatalf("allocate: %d %+v", st, out)
	}
	creds, err := protocol.DecryptCredentials(r.priv, out.Info)
	if err != nil || creds.Username != "root" || creds.Port != 20000 || creds.Password != "" || creds.Version != 1000 {
		t.Fatalf("credentials %+v, %v", creds, err)
	}
	c := tm.rt.container(out.LeaseID)
	if c == nil || c.State != ContainerRunning || len(c.keys) != 1 || c.password != "" || c.spec.Image != "busybox:latest" ||
		c.spec.Resources.CPUs != 2 || c.spec.Resources.MemoryBytes != 4<<30 || len(c.spec.Resources.GPUs) != 1 || c.spec.VolumePath != "" {
		t.Fatalf("container %+v", c)
	}
	if d := time.Until(*out.ExpiresAt); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("expires in %v, want a day", d)
	}

	if out, st := tm.call(t, nil, statusReq(r)); st != 200 || !out.Status || out.State != ContainerRunning || out.LeaseID != c.LeaseID {
		t.Fatalf("status: %d %+v", st, out)
	}
	for _, step := range []struct {
		action, state string
	}{
		{"pause", ContainerPaused}, {"unpause", ContainerRunning}, {"pause", ContainerPaused}, {"resume", ContainerRunning}, {"restart", ContainerRunning},
	} {
		if out, st := tm.call(t, nil, actionReq(r, step.action, "")); st != 200 || !out.Status {
			t.Fatalf("%s: %d %+v", step.action, st, out)
		}
		if got := tm.rt.container(c.LeaseID).State; got != step.state {
			t.Fatalf("after %s: state %s, want %s", step.action, got, step.state)
		}
	}
	if out, st := tm.call(t, nil, actionReq(r, "unpause", "")); st != http.StatusConflict || out.Error == "" {
		t.Fatalf("unpause of a running container: %d %+v, want 409", st, out)
	}
	newSigner, newKey := sshPub(t)
	if out, st := tm.call(t, nil, actionReq(r, "exchange_key", newKey)); st != 200 || !out.Status {
		t.Fatalf("exchange_key: %d %+v", st, out)
	}
	if k := tm.rt.container(c.LeaseID).keys; len(k) != 1 || string(k[0].Marshal()) != string(newSigner.PublicKey().Marshal()) {
		t.Fatalf("keys after exchange: %v", k)
	}
	if _, st := tm.call(t, nil, actionReq(r, "exchange_key", "")); st != http.StatusBadRequest {
		t.Fatalf("exchange_key without key: %d, want 400", st)
	}

	if out, st := tm.call(t, nil, deallocReq(r)); st != 200 || !out.Status || out.State != string(market.LeaseEnded) {
		t.Fatalf("deallocate: %d %+v", st, out)
	}
	if tm.rt.count() != 0 || len(tm.live(t)) != 0 {
		t.Fatalf("after deallocate: %d containers, leases %s", tm.rt.count(), describe(tm.live(t)))
	}
	l, err := tm.store.Lease(context.Background(), c.LeaseID)
	if err != nil || l.EndReason != market.EndDeallocated {
		t.Fatalf("ended lease %+v, %v", l, err)
	}
	if out, st := tm.call(t, nil, statusReq(r)); st != http.StatusNotFound || out.Error == "" {
		t.Fatalf("status after deallocate: %d %+v, want 404", st, out)
	}
}

// TestPasswordRule checks when password login is enabled: on request, or
// when no SSH key is sent (SN27's PoG validators), never otherwise.
func TestPasswordRule(t *testing.T) {
	w := newWorld(t)
	tm := startTestMiner(t, w, nil)
	_, key := sshPub(t)
	for _, tc := range []struct {
		name     string
		key      string
		password bool
		want     bool
	}{
		{"key only", key, false, false},
		{"key and password", key, true, true},
		{"no key (SN27 PoG)", "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRenter(t)
			req := allocReq(r, tc.key, market.Requirement{})
			req.DockerRequirement.Password = tc.password
			req.DeviceRequirement.Testing = true
			out, st := tm.call(t, nil, req)
			if st != 200 {
				t.Fatalf("allocate: %d %+v", st, out)
			}
			creds, err := protocol.DecryptCredentials(r.priv, out.Info)
			if err != nil {
				t.Fatal(err)
			}
			c := tm.rt.container(out.LeaseID)
			if (creds.Password != "") != tc.want || c.password != creds.Password {
				t.Fatalf("password %q in credentials, %q in container; want set = %v", creds.Password, c.password, tc.want)
			}
			if tc.want && (len(creds.Password) < 20 || strings.Trim(creds.Password, passwordAlphabet) != "") {
				t.Fatalf("weak password %q", creds.Password)
			}
			l, _ := tm.store.Lease(context.Background(), out.LeaseID)
			if l.Password != tc.want || !l.Testing {
				t.Fatalf("lease %+v", l)
			}
			tm.call(t, nil, deallocReq(r))
		})
	}
}

// TestOwnership checks that only the lease's owner — same hotkey and same
// public key — may see or touch it; anyone else gets 403 and nothing
// changes.
func TestOwnership(t *testing.T) {
	w := newWorld(t)
	other := mustKey(t, "//OtherValidator")
	w.register(t, mustKey(t, "//Alice"), other, 2000)
	tm := startTestMiner(t, w, nil)
	owner := newRenter(t)
	_, key := sshPub(t)
	out, st := tm.call(t, nil, allocReq(owner, key, market.Requirement{GPUs: 1}))
	if st != 200 {
		t.Fatalf("allocate: %d %+v", st, out)
	}
	lease := out.LeaseID
	_, otherKey := sshPub(t)
	stranger := newRenter(t)
	for _, tc := range []struct {
		name   string
		signer bool // true: the other validator's hotkey
		r      renter
	}{
		{"same hotkey other key", false, stranger},
		{"other hotkey same key", true, owner},
		{"other hotkey other key", true, stranger},
	} {
		for _, req := range []*protocol.Allocate{
			deallocReq(tc.r), statusReq(tc.r), actionReq(tc.r, "pause", ""), actionReq(tc.r, "restart", ""), actionReq(tc.r, "exchange_key", otherKey),
		} {
			var signer = w.validator
			if tc.signer {
				signer = other
			}
			out, st := tm.call(t, signer, req)
			if st != http.StatusForbidden || out.Status || out.Error == "" {
				t.Errorf("%s, mode %s: %d %+v, want 403", tc.name, req.Mode(), st, out)
			}
		}
	}
	c := tm.rt.container(lease)
	if c == nil || c.State != ContainerRunning || len(c.keys) != 1 || string(ssh.MarshalAuthorizedKey(c.keys[0])) != key+"\n" {
		t.Fatalf("lease disturbed: %+v", c)
	}
	if live := tm.live(t); len(live) != 1 || live[0].ID != lease || live[0].State != market.LeaseActive {
		t.Fatalf("leases: %s", describe(live))
	}
	// The same owner cannot hold two leases (it could not tell them apart).
	if out, st := tm.call(t, nil, allocReq(owner, key, market.Requirement{})); st != http.StatusConflict {
		t.Fatalf("second lease for one owner: %d %+v", st, out)
	}
	// Another renter of the same validator gets the second GPU, never the first.
	out, st = tm.call(t, nil, allocReq(stranger, key, market.Requirement{GPUs: 1}))
	if st != 200 {
		t.Fatalf("second renter: %d %+v", st, out)
	}
	if a, b := tm.rt.container(lease).spec.Resources.GPUs, tm.rt.container(out.LeaseID).spec.Resources.GPUs; a[0] == b[0] {
		t.Fatalf("gpu %s leased twice", a[0])
	}
	if out, st := tm.call(t, nil, allocReq(newRenter(t), key, market.Requirement{GPUs: 1})); st != http.StatusConflict || !strings.Contains(out.Error, "gpus") {
		t.Fatalf("third gpu: %d %+v, want 409", st, out)
	}
}

// TestConcurrentAllocations races many allocations for two GPUs: exactly
// two win, they hold different GPUs and ports, and no container leaks.
func TestConcurrentAllocations(t *testing.T) {
	w := newWorld(t)
	tm := startTestMiner(t, w, func(_ *Config, d *Deps) {})
	tm.rt.createHook = func(ContainerSpec) error { time.Sleep(20 * time.Millisecond); return nil }
	_, key := sshPub(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, st := tm.call(t, nil, allocReq(newRenter(t), key, market.Requirement{GPUs: 1}))
			mu.Lock()
			codes[st]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[200] != 2 || codes[http.StatusConflict] != 10 {
		t.Fatalf("status counts %v, want 2 × 200 and 10 × 409", codes)
	}
	live := tm.live(t)
	if len(live) != 2 || tm.rt.count() != 2 || live[0].Resources.GPUs[0] == live[1].Resources.GPUs[0] || live[0].SSHPort == live[1].SSHPort {
		t.Fatalf("leases %s, %d containers", describe(live), tm.rt.count())
	}
}

// TestPolicy is the blacklist decision table.
func TestPolicy(t *testing.T) {
	mg := &subnet.Metagraph{NetUID: 27, Neurons: []subnet.Neuron{
		{Hotkey: "rich-new", Coldkey: "ck1", Stake: subnet.TAO(5000), Axon: subnet.AxonInfo{Version: 2000}},
		{Hotkey: "rich-old", Coldkey: "ck1", Stake: subnet.TAO(5000), Axon: subnet.AxonInfo{Version: 1000}},
		{Hotkey: "poor", Coldkey: "ck2", Stake: subnet.TAO(10), Axon: subnet.AxonInfo{Version: 2000}},
		{Hotkey: "bad-cold", Coldkey: "evil", Stake: subnet.TAO(5000), Axon: subnet.AxonInfo{Version: 2000}},
		{Hotkey: "new2", Coldkey: "ck3", Stake: subnet.TAO(2000), Axon: subnet.AxonInfo{Version: 2000}},
	}}
	base := PolicyConfig{MinStake: DefaultMinStake, UpdatedThreshold: 60, MinValidatorVersion: 2000,
		BlacklistHotkeys: []string{"banned"}, BlacklistColdkeys: []string{"evil"}, WhitelistHotkeys: []string{"friend", "poor-friend"}}
	for _, tc := range []struct {
		name   string
		mod    func(*PolicyConfig)
		hotkey string
		want   string // substring of the reason; "" admits
	}{
		{"up to date validator", nil, "rich-new", ""},
		{"whitelisted stranger", nil, "friend", ""},
		{"blacklisted hotkey", nil, "banned", "blacklisted"},
		{"blacklist beats whitelist? no: whitelist first", func(p *PolicyConfig) { p.BlacklistHotkeys = []string{"friend"} }, "friend", ""},
		{"unregistered", nil, "nobody", "not registered"},
		{"blacklisted coldkey", nil, "bad-cold", "coldkey"},
		{"low stake", nil, "poor", "below the validator permit"},
		{"low stake allowed", func(p *PolicyConfig) { p.AllowLowStake = true }, "poor", ""},
		// 3 of 4 validators (75% > 60%) are up to date: the old one is refused.
		{"outdated past threshold", nil, "rich-old", "version 1000"},
		{"outdated allowed by flag", func(p *PolicyConfig) { p.AllowOutdated = true }, "rich-old", ""},
		{"outdated below threshold", func(p *PolicyConfig) { p.UpdatedThreshold = 80 }, "rich-old", ""},
		{"version check off", func(p *PolicyConfig) { p.MinValidatorVersion = 0 }, "rich-old", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base
			if tc.mod != nil {
				tc.mod(&p)
			}
			got := decide(p, newChainView(mg, p, time.Now()), tc.hotkey)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("decide(%s) = %q, want %q", tc.hotkey, got, tc.want)
			}
		})
	}
}

// TestPolicyOnTheWire checks refusals reach the caller as 403 with the
// reason, before the handler runs, for both synapses.
func TestPolicyOnTheWire(t *testing.T) {
	w := newWorld(t)
	poor := mustKey(t, "//PoorValidator")
	w.register(t, mustKey(t, "//Alice"), poor, 10)
	tm := startTestMiner(t, w, nil)
	stranger := mustKey(t, "//Stranger")
	_, key := sshPub(t)
	for _, tc := range []struct {
		signer *keys.Keypair
		want   string
	}{
		{poor, "below the validator permit"},
		{stranger, "not registered"},
	} {
		for _, name := range []string{protocol.AllocateName, protocol.SpecsName} {
			d := axon.NewDendrite(tc.signer)
			var resp protocol.Allocate
			_, err := d.Call(context.Background(), tm.target(), name, allocReq(newRenter(t), key, market.Requirement{}), &resp, 5*time.Second)
			d.Close()
			if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s by %s: %v, want 403 %q", name, tc.signer.SS58(), err, tc.want)
			}
		}
	}
	if tm.rt.count() != 0 || tm.rt.creates.Load() != 0 {
		t.Fatal("a refused caller created a container")
	}
}

// TestChainDown checks a request arriving while the chain is unreachable
// is decided on the last metagraph, and that the axon is served again
// when the chain's record differs.
func TestChainDown(t *testing.T) {
	w := newWorld(t)
	tm := startTestMiner(t, w, nil)
	ctx := context.Background()
	n, err := w.client.Neuron(ctx, w.netuid, w.miner.SS58())
	if err != nil || !n.Axon.Served() || n.Axon.Port == 0 || n.Axon.Version != 1000 {
		t.Fatalf("axon on chain after start: %+v, %v", n.Axon, err)
	}
	tm.chain.cut.Store(true)
	time.Sleep(200 * time.Millisecond) // several failed polls
	out, st := tm.call(t, nil, allocReq(newRenter(t), "", market.Requirement{}))
	if st != 200 || !out.Status {
		t.Fatalf("allocate with the chain down: %d %+v", st, out)
	}
	tm.chain.cut.Store(false)
	// Someone (an older binary) serves another port: the miner corrects it.
	if err := w.client.ServeAxon(ctx, w.miner, w.netuid, subnet.AxonInfo{IP: "127.0.0.1", Port: 1, Version: 1}); err != nil {
		t.Fatal(err)
	}
	serves := tm.chain.serves.Load()
	for i := 0; ; i++ {
		w.node.Seal(ctx)
		n, _ = w.client.Neuron(ctx, w.netuid, w.miner.SS58())
		if n.Axon.Port != 1 && tm.chain.serves.Load() > serves {
			break
		}
		if i > 100 {
			t.Fatalf("axon not served again: %+v", n.Axon)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRuntimeDown checks that with the engine down Allocate answers 503
// with a reason and leaves nothing, Specs and status still answer, and
// allocations work again once it is back.
func TestRuntimeDown(t *testing.T) {
	w := newWorld(t)
	tm := startTestMiner(t, w, nil)
	r := newRenter(t)
	out, st := tm.call(t, nil, allocReq(r, "", market.Requirement{}))
	if st != 200 {
		t.Fatalf("allocate: %d %+v", st, out)
	}
	tm.rt.down.Store(true)
	out2, st := tm.call(t, nil, allocReq(newRenter(t), "", market.Requirement{}))
	if st != http.StatusServiceUnavailable || !strings.Contains(out2.Error, "unreachable") {
		t.Fatalf("allocate with docker down: %d %+v", st, out2)
	}
	if live := tm.live(t); len(live) != 1 {
		t.Fatalf("leases after refused allocate: %s", describe(live))
	}
	if out, st := tm.call(t, nil, statusReq(r)); st != 200 || out.State != "unknown" || out.LeaseID != out2.LeaseID && out.LeaseID == "" {
		t.Fatalf("status with docker down: %d %+v", st, out)
	}
	if _, st := tm.call(t, nil, deallocReq(r)); st != http.StatusServiceUnavailable {
		t.Fatalf("deallocate with docker down: %d, want 503", st)
	}
	if live := tm.live(t); len(live) != 1 || live[0].ID != out.LeaseID {
		t.Fatalf("a failed deallocate changed the lease: %s", describe(live))
	}
	var specs protocol.Specs
	if _, err := tm.d.Call(context.Background(), tm.target(), protocol.SpecsName, protocol.Specs{}, &specs, 5*time.Second); err != nil {
		t.Fatalf("specs with docker down: %v", err)
	}
	s, err := protocol.DecodeSpecs(specs.SpecsOutput)
	if err != nil || s.GPU.Count != 2 || s.Free == nil || len(s.Free.GPUs) != 2 || s.CPU.Count != 8 {
		t.Fatalf("specs %+v, %v", s, err)
	}
	tm.rt.down.Store(false)
	if out, st := tm.call(t, nil, allocReq(newRenter(t), "", market.Requirement{})); st != 200 || !out.Status {
		t.Fatalf("allocate after docker returned: %d %+v", st, out)
	}
}

func TestParsePortRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want PortRange
		ok   bool
	}{
		{"4444-4543", PortRange{4444, 4543}, true},
		{"4444", PortRange{4444, 4444}, true},
		{"5-4", PortRange{}, false},
		{"0-10", PortRange{}, false},
		{"1-70000", PortRange{}, false},
		{"a-b", PortRange{}, false},
	} {
		got, err := ParsePortRange(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParsePortRange(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestNewPassword(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		p, err := newPassword()
		if err != nil || len(p) != passwordLen || strings.Trim(p, passwordAlphabet) != "" || seen[p] {
			t.Fatalf("password %q, %v", p, err)
		}
		seen[p] = true
	}
}

func ExampleParsePortRange() {
	r, _ := ParsePortRange("4444-4543")
	fmt.Println(r.First, r.Last, r.Len())
	// Output: 4444 4543 100
}
