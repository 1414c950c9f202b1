package miner

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/protocol"
)

// sn27Call sends an SN27 Allocate synapse (nictest.SN27Allocate fields) as
// Bittensor's Python dendrite does and returns the output, the HTTP status
// and the body's top-level fields.
func sn27Call(tb testing.TB, d *axon.Dendrite, tm *testMiner, fields map[string]any, timeout time.Duration) (protocol.Output, int) {
	tb.Helper()
	var resp struct {
		Name   string          `json:"name"`
		Output protocol.Output `json:"output"`
	}
	res, err := d.Call(context.Background(), tm.target(), protocol.AllocateName, nictest.SN27Allocate(fields), &resp, timeout)
	if res == nil {
		tb.Fatalf("no answer: %v", err)
		return protocol.Output{}, 0
	}
	if res.StatusCode == http.StatusOK && resp.Name != protocol.AllocateName {
		tb.Fatalf("200 answer is not a whole Allocate synapse (name %q)", resp.Name)
	}
	return resp.Output, res.StatusCode
}

// TestSN27ValidatorAndRegisterAPI drives a miner with requests built as
// SN27's Python code builds them: the validator's Proof-of-GPU test lease
// (check, allocate with the PyTorch image it asks for and no ssh key, then
// deallocate), and register_api's health poll of a live rental,
// Allocate(timeline=1, checking=True), which must answer False while the
// caller's own lease runs and True for anyone else with room.
func TestSN27ValidatorAndRegisterAPI(t *testing.T) {
	w := newWorld(t)
	other := mustKey(t, "//OtherValidator")
	w.register(t, mustKey(t, "//Alice"), other, 2000)
	var rt *fakeRuntime
	tm := startTestMiner(t, w, func(c *Config, d *Deps) {
		c.Images = SN27Images()
		rt = d.Runtime.(*fakeRuntime)
		rt.setAbsent(SN27Images()...)
	})
	py := nictest.PythonDendrite(w.validator)
	t.Cleanup(func() { py.Close() })
	pyOther := nictest.PythonDendrite(other)
	t.Cleanup(func() { pyOther.Close() })

	check := map[string]any{"timeline": 1, "device_requirement": nictest.SN27TestDevice(), "checking": true}
	if out, st := sn27Call(t, py, tm, check, 15*time.Second); st != 200 || !out.Status {
		t.Fatalf("check: %d %+v", st, out)
	}
	r := newRenter(t)
	img := SN27Images()[0]
	out, st := sn27Call(t, py, tm, map[string]any{
		"timeline": 1, "device_requirement": nictest.SN27TestDevice(), "checking": false,
		"public_key": r.pem, "docker_requirement": map[string]any{"base_image": img},
	}, time.Minute)
	if st != 200 || !out.Status {
		t.Fatalf("allocate: %d %+v", st, out)
	}
	creds, err := protocol.DecryptCredentials(r.priv, out.Info)
	if err != nil || creds.Username != "root" || len(creds.Password) < 20 || creds.Port != out.Port {
		t.Fatalf("credentials %+v, %v", creds, err)
	}
	c := tm.rt.container(out.LeaseID)
	if c == nil || c.spec.Image != img || c.password != creds.Password || !tm.live(t)[0].Testing {
		t.Fatalf("container %+v, want %s with the password, a testing lease", c, img)
	}
	// Both SN27 images were missing: each was pulled once, at start.
	if n := rt.pulls.Load(); n != 2 {
		t.Fatalf("%d pulls, want one per SN27 image", n)
	}

	poll := map[string]any{"timeline": 1, "checking": true}
	if out, st := sn27Call(t, py, tm, poll, 10*time.Second); st != 200 || out.Status || !strings.Contains(out.Error, out.LeaseID) || out.LeaseID == "" {
		t.Fatalf("register_api poll by the lease's holder: %d %+v, want False (the rental is alive)", st, out)
	}
	if out, st := sn27Call(t, pyOther, tm, poll, 10*time.Second); st != 200 || !out.Status {
		t.Fatalf("poll by another validator with room left: %d %+v, want True", st, out)
	}

	dealloc := map[string]any{"timeline": 0, "checking": false, "public_key": r.pem}
	if out, st := sn27Call(t, py, tm, dealloc, 15*time.Second); st != 200 || !out.Status {
		t.Fatalf("deallocate: %d %+v", st, out)
	}
	if out, st := sn27Call(t, py, tm, poll, 10*time.Second); st != 200 || !out.Status {
		t.Fatalf("poll after the rental ended: %d %+v, want True", st, out)
	}
}

// TestSN27Refusals checks that refusals the Allocate handler decides reach
// a Python caller: HTTP 200 — the only status whose body Bittensor's
// dendrite reads — with status False and the reason in the output, while
// refusals of the transport keep Bittensor's status codes.
func TestSN27Refusals(t *testing.T) {
	w := newWorld(t)
	tm := startTestMiner(t, w, nil)
	py := nictest.PythonDendrite(w.validator)
	t.Cleanup(func() { py.Close() })
	r := newRenter(t)
	alloc := func(docker map[string]any, device map[string]any) map[string]any {
		return map[string]any{"timeline": 1, "checking": false, "public_key": r.pem, "docker_requirement": docker, "device_requirement": device}
	}
	for _, tc := range []struct {
		name   string
		fields map[string]any
		code   string
		want   string
	}{
		{"image not offered", alloc(map[string]any{"base_image": "evil/miner:latest"}, nil), market.EINVALID, "not offered"},
		{"no capacity", alloc(map[string]any{}, map[string]any{"gpu": map[string]any{"count": 3, "capacity": 0, "type": ""}}), market.ECONFLICT, "gpus"},
		{"bad requirement", alloc(map[string]any{}, map[string]any{"cpu": map[string]any{"count": -2}}), market.EINVALID, "cpu count"},
		{"dockerfile", alloc(map[string]any{"dockerfile": "FROM x\nRUN id"}, nil), market.EINVALID, "dockerfile"},
		{"deallocate without a lease", map[string]any{"timeline": 0, "checking": false, "public_key": r.pem}, market.ENOTFOUND, "no lease"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fields["device_requirement"] == nil {
				delete(tc.fields, "device_requirement")
			}
			out, st := sn27Call(t, py, tm, tc.fields, 10*time.Second)
			if st != 200 || out.Status || out.Code != tc.code || !strings.Contains(out.Error, tc.want) {
				t.Fatalf("HTTP %d, output %+v; want 200, status false, code %s, an error containing %q", st, out, tc.code, tc.want)
			}
		})
	}

	t.Run("transport refusals keep their codes", func(t *testing.T) {
		stranger := nictest.PythonDendrite(mustKey(t, "//Stranger"))
		defer stranger.Close()
		if _, st := sn27Call(t, stranger, tm, map[string]any{"timeline": 1, "checking": true}, 10*time.Second); st != http.StatusForbidden {
			t.Fatalf("unregistered caller: HTTP %d, want 403", st)
		}
		big := strings.Repeat("x", protocol.MaxBodyBytes)
		if _, st := sn27Call(t, py, tm, alloc(map[string]any{"ssh_key": big}, nil), 10*time.Second); st != http.StatusRequestEntityTooLarge {
			t.Fatalf("oversized body: HTTP %d, want 413", st)
		}
		forged := axon.NewDendrite(w.validator, axon.WithHTTPClient(&http.Client{Transport: nictest.PythonTransport{Signer: mustKey(t, "//Mallory")}}))
		defer forged.Close()
		if _, st := sn27Call(t, forged, tm, map[string]any{"timeline": 1, "checking": true}, 10*time.Second); st != http.StatusUnauthorized {
			t.Fatalf("bad signature: HTTP %d, want 401", st)
		}
	})

	// nicompute's clients read the kind of a 200 refusal as the status it
	// corresponds to.
	var resp protocol.Allocate
	_, err := protocol.CallAllocate(context.Background(), tm.d, tm.target(), deallocReq(r), &resp, 10*time.Second)
	if axon.StatusCode(err) != http.StatusNotFound || resp.Output.Error == "" {
		t.Fatalf("CallAllocate of a 200 refusal: %v (status %d), output %+v; want 404 with the reason", err, axon.StatusCode(err), resp.Output)
	}
}
