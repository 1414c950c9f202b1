package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/hostinfo"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/miner"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/protocol"
)

// tagTestImage tags the env's scratch image as ref for the test and removes
// only that tag when the test ends. It skips the test when ref already
// exists and is not a nicompute test image: a real image of that name is
// not ours to retag.
func tagTestImage(tb testing.TB, e *leaseEnv, ref string) {
	tb.Helper()
	ctx := context.Background()
	ins, err := e.cli.ImageInspect(ctx, ref)
	switch {
	case err == nil && (ins.Config == nil || ins.Config.Labels["nicompute.test"] != "true"):
		tb.Skipf("%s exists on this engine and is not a nicompute test image; not retagging it", ref)
	case err != nil && !cerrdefs.IsNotFound(err):
		tb.Fatalf("inspect %s: %v", ref, err)
	}
	if _, err := e.cli.ImageTag(ctx, client.ImageTagOptions{Source: e.image, Target: ref}); err != nil {
		tb.Fatalf("tag %s: %v", ref, err)
	}
	tb.Cleanup(func() {
		// The scratch image keeps its own tag, so this only untags.
		if _, err := e.cli.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			tb.Errorf("untag %s: %v", ref, err)
		}
	})
}

// TestSN27ValidatorOnDocker runs a miner on the real engine as an SN27
// Python validator and register_api use it: the validator's Proof-of-GPU
// lease with the PyTorch image it asks for (present locally: the scratch
// test image tagged with that name) and password login, register_api's
// health poll answered False while the caller's rental lives, and an
// offered image the engine cannot get refused with HTTP 200 and the reason.
func TestSN27ValidatorOnDocker(t *testing.T) {
	w := newMinerWorld(t)
	e := newLeaseEnv(t, "t"+randHex(t, 6))
	pog := miner.SN27Images()[0]
	tagTestImage(t, e, pog)
	unpullable := "nicompute-test-unpullable:" + randHex(t, 4)
	o := minerOpts(t, w, e)
	o.Images = []string{pog, unpullable}
	o.GPUs, o.SimulatedGPUs = hostinfo.Static{Devices: []market.GPUDevice{{Index: 0, UUID: "GPU-sim-0", Name: "NVIDIA H100 80GB HBM3", CapacityMiB: 81559}}}, true
	m := startTestMinerProc(t, o)
	py := nictest.PythonDendrite(w.validator)
	t.Cleanup(func() { py.Close() })
	target := axon.Target{Addr: m.AxonAddr(), Hotkey: m.Hotkey()}
	call := func(fields map[string]any, timeout time.Duration) (protocol.Output, int) {
		t.Helper()
		var resp struct{ Output protocol.Output }
		res, err := py.Call(context.Background(), target, protocol.AllocateName, nictest.SN27Allocate(fields), &resp, timeout)
		if res == nil {
			t.Fatalf("no answer: %v", err)
		}
		return resp.Output, res.StatusCode
	}

	if out, st := call(map[string]any{"timeline": 1, "device_requirement": nictest.SN27TestDevice(), "checking": true}, 15*time.Second); st != 200 || !out.Status {
		t.Fatalf("check: %d %+v", st, out)
	}
	r := newLeaseRenter(t)
	out, st := call(map[string]any{
		"timeline": 1, "device_requirement": nictest.SN27TestDevice(), "checking": false,
		"public_key": r.pem, "docker_requirement": map[string]any{"base_image": pog},
	}, time.Minute)
	if st != 200 || !out.Status {
		t.Fatalf("allocate with %s: %d %+v", pog, st, out)
	}
	creds, err := protocol.DecryptCredentials(r.priv, out.Info)
	if err != nil || creds.Password == "" {
		t.Fatalf("credentials %+v, %v", creds, err)
	}
	c, err := sshLogin(creds.Port, ssh.Password(creds.Password), 15*time.Second)
	if err != nil {
		t.Fatalf("password login: %v", err)
	}
	if got, err := sshOutput(c, "echo sn27-ok"); err != nil || got != "sn27-ok\n" {
		t.Fatalf("command: %q, %v", got, err)
	}
	c.Close()
	if cs := e.containers(t); len(cs) != 1 || cs[0].Image != pog {
		t.Fatalf("lease containers %+v, want one running %s", cs, pog)
	}

	poll := map[string]any{"timeline": 1, "checking": true}
	if out, st := call(poll, 10*time.Second); st != 200 || out.Status {
		t.Fatalf("register_api poll while the rental lives: %d %+v, want False", st, out)
	}

	r2 := newLeaseRenter(t)
	out, st = call(map[string]any{"timeline": 1, "checking": false, "public_key": r2.pem, "docker_requirement": map[string]any{"base_image": unpullable}}, time.Minute)
	if st != http.StatusOK || out.Status || !strings.Contains(out.Error, unpullable) || (out.Code != market.EUNAVAILABLE && out.Code != market.ENOTFOUND) {
		t.Fatalf("image the engine cannot get: HTTP %d %+v, want 200, status false and the reason", st, out)
	}

	if out, st := call(map[string]any{"timeline": 0, "checking": false, "public_key": r.pem}, time.Minute); st != 200 || !out.Status {
		t.Fatalf("deallocate: %d %+v", st, out)
	}
	if out, st := call(poll, 10*time.Second); st != 200 || !out.Status {
		t.Fatalf("register_api poll after the rental: %d %+v, want True", st, out)
	}
}
