package validator

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/pog"
	"github.com/nicompute/nicompute/internal/subnet"
)

func TestScoreOf(t *testing.T) {
	table := market.DefaultGPUTable()
	h200 := market.Score(table, "NVIDIA H200", 2)
	pass := Result{Outcome: "pass", Model: "NVIDIA H200", Count: 2}
	fail := Result{Outcome: "fail"}
	gone := Result{Outcome: "unreachable"}
	tests := []struct {
		name string
		hist []Result // newest first
		want float64
	}{
		{"never tested", nil, 0},
		{"passed", []Result{pass}, h200},
		{"one outage after a pass keeps the score", []Result{gone, pass}, h200},
		{"three outages keep it", []Result{gone, gone, gone, pass}, h200},
		{"four outages in a row lose it", []Result{gone, gone, gone, gone, pass}, 0},
		{"a failed proof zeroes at once", []Result{fail, pass, pass}, 0},
		{"a pass after a failure counts", []Result{pass, fail}, h200},
		{"an outage after a failure stays 0", []Result{gone, fail, pass}, 0},
		{"unknown model scores 0", []Result{{Outcome: "pass", Model: "NVIDIA Imaginary", Count: 1}}, 0},
		{"count capped at 8", []Result{{Outcome: "pass", Model: "NVIDIA H200", Count: 12}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, basis := scoreOf(table, tt.hist, DefaultScoreWindow)
			if got != tt.want {
				t.Fatalf("score %v, want %v", got, tt.want)
			}
			if (basis != nil) != (got > 0) {
				t.Fatalf("basis %+v for score %v", basis, got)
			}
		})
	}
}

func neuron(uid subnet.UID, ip string, registered uint64, version uint32) subnet.Neuron {
	n := subnet.Neuron{UID: uid, Hotkey: "hk" + string(rune('A'+uid)), Coldkey: "ck" + string(rune('A'+uid)), RegisteredAt: registered}
	if ip != "" {
		n.Axon = subnet.AxonInfo{IP: ip, Port: 8091, Version: version}
	}
	return n
}

func TestQueryable(t *testing.T) {
	mg := &subnet.Metagraph{Neurons: []subnet.Neuron{
		neuron(0, "10.0.0.1", 1, 200), // the validator
		neuron(1, "10.0.0.2", 50, 200),
		neuron(2, "10.0.0.2", 10, 200), // registered earlier on the same IP: keeps it
		neuron(3, "", 5, 0),
		neuron(4, "10.0.0.4", 5, 200),
		neuron(5, "10.0.0.5", 5, 200),
		neuron(6, "10.0.0.6", 5, 100),
		neuron(7, "10.0.0.7", 5, 200),
		neuron(8, "0.0.0.0", 5, 200),
	}}
	base := queryRules{self: 0, blacklistHotkeys: map[string]bool{"hkE": true}, blacklistColdkeys: map[string]bool{"ckF": true}}
	tests := []struct {
		name      string
		minV      uint32
		threshold int
		want      []subnet.UID
		skipped   map[subnet.UID]string
	}{
		{"no version rule", 0, 60, []subnet.UID{2, 6, 7},
			map[subnet.UID]string{1: "shares IP 10.0.0.2 with uid 2", 3: "not served", 4: "hotkey blacklisted", 5: "coldkey blacklisted", 8: "not served"}},
		{"most miners updated: old ones skipped", 150, 60, []subnet.UID{2, 7},
			map[subnet.UID]string{6: "axon version 100 below 150"}},
		{"too few updated: everyone tested", 150, 70, []subnet.UID{2, 6, 7}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			r.minVersion, r.updatedThreshold = tt.minV, tt.threshold
			got, skipped := queryable(mg, r)
			var uids []subnet.UID
			for _, n := range got {
				uids = append(uids, n.UID)
			}
			if len(uids) != len(tt.want) {
				t.Fatalf("queryable %v, want %v", uids, tt.want)
			}
			for i := range uids {
				if uids[i] != tt.want[i] {
					t.Fatalf("queryable %v, want %v", uids, tt.want)
				}
			}
			if _, ok := skipped["hkA"]; ok {
				t.Error("the validator itself is listed as skipped")
			}
			for uid, why := range tt.skipped {
				if s := skipped[mg.Neurons[uid].Hotkey]; !strings.Contains(s, why) {
					t.Errorf("uid %d skipped for %q, want %q", uid, s, why)
				}
			}
		})
	}
}

func TestTestGPUs(t *testing.T) {
	if n := testGPUs(market.Specs{}, false); n != 1 {
		t.Errorf("unknown specs: %d GPUs", n)
	}
	if n := testGPUs(market.Specs{GPU: market.GPUSpecs{Count: 12}}, true); n != 8 {
		t.Errorf("12 GPUs: test asks for %d", n)
	}
	if n := testGPUs(market.Specs{GPU: market.GPUSpecs{Details: make([]market.GPUDevice, 3)}}, true); n != 3 {
		t.Errorf("3 listed GPUs: test asks for %d", n)
	}
}

// An IPv4-mapped IPv6 axon dials the same host as the IPv4 address: one
// uid per IP must see them as one address.
func TestQueryableMappedIPv4(t *testing.T) {
	n1 := neuron(1, "1.2.3.4", 1, 0)
	n1.Axon.IPType = 4
	n2 := neuron(2, "::ffff:1.2.3.4", 2, 0)
	n2.Axon.IPType = 6
	n3 := neuron(3, "::ffff:0.0.0.0", 3, 0)
	n3.Axon.IPType = 6
	n4 := neuron(4, "2001:db8::1", 4, 0)
	n4.Axon.IPType = 6
	mg := &subnet.Metagraph{Neurons: []subnet.Neuron{neuron(0, "10.0.0.1", 0, 0), n1, n2, n3, n4}}
	got, skipped := queryable(mg, queryRules{self: 0})
	var uids []subnet.UID
	for _, n := range got {
		uids = append(uids, n.UID)
	}
	if len(uids) != 2 || uids[0] != 1 || uids[1] != 4 {
		t.Fatalf("queryable %v, want [1 4]; skipped %v", uids, skipped)
	}
	if s := skipped[n2.Hotkey]; !strings.Contains(s, "shares IP 1.2.3.4 with uid 1") {
		t.Errorf("mapped address skipped for %q", s)
	}
	if s := skipped[n3.Hotkey]; !strings.Contains(s, "not served") {
		t.Errorf("mapped unspecified address skipped for %q", s)
	}
}

// Miners the rules skip (blacklisted, outdated) score 0 whatever they
// passed before.
func TestScoresZeroSkippedMiners(t *testing.T) {
	table := market.DefaultGPUTable()
	pass := func(hk string) []Result {
		return []Result{{Hotkey: hk, Outcome: OutcomePass, Model: "NVIDIA H100 80GB HBM3", Count: 1}}
	}
	mg := &subnet.Metagraph{Neurons: []subnet.Neuron{
		neuron(0, "10.0.0.1", 1, 200), // the validator
		neuron(1, "10.0.0.2", 1, 200),
		neuron(2, "10.0.0.3", 1, 200), // hotkey blacklisted
		neuron(3, "10.0.0.4", 1, 100), // outdated
		neuron(4, "10.0.0.5", 1, 200),
	}}
	s := &Service{
		cfg: Config{BlacklistHotkeys: []string{"hkC"}, MinMinerVersion: 150, UpdatedThreshold: 60, ScoreWindow: DefaultScoreWindow,
			PoG: PoGConfig{Table: table}},
		mg: mg, uid: 0, history: map[string][]Result{}, status: map[string]string{},
	}
	for _, n := range mg.Neurons[1:] {
		s.history[n.Hotkey] = pass(n.Hotkey)
	}
	want := market.Score(table, "NVIDIA H100 80GB HBM3", 1)
	for _, m := range s.scores() {
		expect := want
		if m.Neuron.UID == 2 || m.Neuron.UID == 3 {
			expect = 0
		}
		if m.Score != expect {
			t.Errorf("uid %d scores %v, want %v (skipped: %q)", m.Neuron.UID, m.Score, expect, m.Skipped)
		}
	}
}

func TestPadWeights(t *testing.T) {
	all := []subnet.UID{0, 1, 2, 3, 4, 5}
	uids, weights := padWeights(all, []subnet.UID{2, 4}, []float64{0.75, 0.25})
	up, w, err := subnet.MaxUpscale(uids, weights)
	if err != nil {
		t.Fatal(err)
	}
	got := map[subnet.UID]uint16{}
	for i, u := range up {
		got[u] = w[i]
	}
	if len(up) != len(all) {
		t.Fatalf("padded row %v %v covers %d uids, want %d", up, w, len(up), len(all))
	}
	for _, u := range []subnet.UID{0, 1, 3, 5} {
		if got[u] != 1 {
			t.Errorf("uid %d weight %d, want 1", u, got[u])
		}
	}
	if got[2] != 65535 || got[4] < 21844 || got[4] > 21846 {
		t.Errorf("scored uids: 2 → %d, 4 → %d; want 65535 and ≈ 21845", got[2], got[4])
	}
}

// Once the challenge was sent, any failure to prove it is final; failures
// before it are retried.
func TestClassifyFinality(t *testing.T) {
	ctx := context.Background()
	challenged := &pog.Result{Challenged: true, GPUs: []pog.GPUResult{{Challenged: true}}}
	tests := []struct {
		name  string
		res   *pog.Result
		err   error
		final bool
	}{
		{"worker error after the challenge", challenged, &pog.WorkerError{Message: "cuda: out of memory"}, true},
		{"garbage after the challenge", challenged, fmt.Errorf("%w: proofs message: bad", pog.ErrProtocol), true},
		{"end of stream after the challenge", challenged, fmt.Errorf("%w: read proofs: stream ended early", pog.ErrProtocol), true},
		{"no proofs in time", challenged, fmt.Errorf("read proofs: %w", context.DeadlineExceeded), true},
		{"per-GPU error in the proofs", &pog.Result{Challenged: true, Reason: "0 of 1 GPUs proved",
			GPUs: []pog.GPUResult{{Challenged: true, Err: "worker: lost C"}}}, nil, true},
		{"wrong proof", &pog.Result{Challenged: true, GPUs: []pog.GPUResult{{Challenged: true, Err: "element (1, 2) off"}}}, nil, true},
		{"worker error before the challenge", nil, &pog.WorkerError{Message: "cuda: out of memory"}, false},
		{"end of stream before the challenge", nil, fmt.Errorf("%w: read commitments: stream ended early", pog.ErrProtocol), false},
		{"per-GPU error in the commitment", &pog.Result{Reason: "0 of 1 GPUs proved",
			GPUs: []pog.GPUResult{{Err: "worker: out of memory"}}}, nil, false},
		{"too slow", &pog.Result{Reason: "no commitment within 3s"}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := classify(ctx, tt.res, tt.err, &tailBuffer{max: 10})
			if a.outcome != OutcomeFail || a.final != tt.final {
				t.Fatalf("outcome %s final %v, want fail final %v (%s)", a.outcome, a.final, tt.final, a.reason)
			}
		})
	}
}
