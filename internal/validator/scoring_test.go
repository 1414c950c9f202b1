package validator

import (
	"strings"
	"testing"

	"github.com/nicompute/nicompute/internal/market"
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
