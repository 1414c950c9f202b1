package miner

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
)

// FuzzHandleAllocate feeds arbitrary synapse bodies to the Allocate handler
// of a miner on the fake runtime. Whatever the body: no panic, a refusal is
// an *axon.Error with a 4xx/503 status whose synapse carries output.error,
// never a 500, and the runtime and the store always agree (every live lease
// has its running container and no container lacks a lease).
func FuzzHandleAllocate(f *testing.F) {
	w := newWorld(f)
	tm := startTestMiner(f, w, func(c *Config, _ *Deps) { c.Log = nil })
	r := newRenter(f)
	_, key := sshPub(f)
	seed := func(a *protocol.Allocate) {
		b, err := json.Marshal(a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(allocReq(r, key, market.Requirement{GPUs: 1, CPUs: 2, MemoryBytes: 2 << 30}))
	seed(allocReq(r, "", market.Requirement{}))
	c := allocReq(r, key, market.Requirement{GPUs: 2})
	c.Checking = true
	seed(c)
	seed(statusReq(r))
	seed(deallocReq(r))
	seed(actionReq(r, "exchange_key", key))
	seed(actionReq(r, "pause", ""))
	f.Add([]byte(`{"timeline": 1, "checking": false, "device_requirement": {"cpu": {"count": 1e400}}}`))
	f.Add([]byte(`{"docker_requirement": {"base_image": "ubuntu\u0000", "ssh_key": "ssh-ed25519 \n"}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"timeline": -1, "checking": false, "docker_change": true, "docker_action": {"action": "resume"}}`))
	ctx := context.Background()
	caller := axon.Caller{Hotkey: w.validator.SS58()}
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := tm.svc.handleAllocate(ctx, &axon.Call{Name: protocol.AllocateName, Caller: caller, Body: body})
		if err != nil {
			var ae *axon.Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %T %v is not an *axon.Error", err, err)
			}
			switch ae.Status {
			case 400, 403, 404, 409, 503:
			default:
				t.Fatalf("status %d: %s", ae.Status, ae.Message)
			}
			ans, ok := ae.Result.(allocateAnswer)
			if !ok || ans.Output.Status || ans.Output.Error == "" || ans.Output.Error != ae.Message {
				t.Fatalf("refusal without a reason: %+v", ae.Result)
			}
		} else if _, ok := res.(allocateAnswer); !ok {
			t.Fatalf("answer %T", res)
		}
		live := tm.live(t)
		if len(live) != tm.rt.count() {
			t.Fatalf("%d live leases, %d containers", len(live), tm.rt.count())
		}
		for _, l := range live {
			c := tm.rt.container(l.ID)
			if l.State != market.LeaseActive || c == nil {
				t.Fatalf("lease %s %s without its container", l.ID, l.State)
			}
			// Keep the machine free for the next input.
			unlock := tm.svc.leases.lock(l.ID)
			if _, err := tm.svc.leases.endLocked(ctx, l, market.EndDeallocated); err != nil {
				t.Fatal(err)
			}
			unlock()
		}
	})
}
