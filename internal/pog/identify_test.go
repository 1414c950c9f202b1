package pog

import (
	"strings"
	"testing"
	"time"
)

func TestIdentify(t *testing.T) {
	table := testTable(t)
	p := *testPolicy()
	ms := time.Millisecond
	// At n = 256: Fast needs ~0 (bound 20 ms), Mid 33.6 ms (bound 62 ms),
	// Slow 336 ms (bound 439 ms); Big needs n ≥ 1448 by memory.
	tests := []struct {
		name       string
		claimed    string
		m          Measurement
		p          Policy
		wantModel  string
		wantReason string
	}{
		{"claim confirmed", "Test Mid", Measurement{N: 256, Elapsed: 40 * ms}, p, "Test Mid", "confirmed"},
		{"faster than claimed is fine", "Test Slow", Measurement{N: 256, Elapsed: 5 * ms}, p, "Test Slow", "confirmed"},
		{"claims a better GPU: downgraded", "Test Fast", Measurement{N: 256, Elapsed: 40 * ms}, p, "Test Mid", "identified as Test Mid"},
		{"slower than the claimed model", "Test Mid", Measurement{N: 256, Elapsed: 300 * ms}, p, "Test Slow", "identified as Test Slow"},
		{"slower than every model", "Test Mid", Measurement{N: 256, Elapsed: 2 * time.Second}, p, "", "no model in the table is consistent"},
		{"tolerance pair keeps the lower-scored claimed name", "Test Twin", Measurement{N: 256, Elapsed: 300 * ms}, p, "Test Twin", "tolerance pair"},
		{"unknown claim identified by measurement", "Mystery GPU", Measurement{N: 256, Elapsed: 40 * ms}, p, "Test Mid", "not in the GPU table"},
		{"test too small for the claimed memory", "Test Big", Measurement{N: 256, Elapsed: time.Microsecond}, p, "Test Fast", "does not suit"},
		{"case-insensitive claim", "test mid", Measurement{N: 256, Elapsed: 40 * ms}, p, "Test Mid", "confirmed"},
		{"simulated refused outside devnet", "Test Mid", Measurement{N: 256, Elapsed: 40 * ms, Simulated: true, SimTimeScale: 1}, p, "", ReasonSimulatedRefused},
		{"simulated accepted in devnet at its scale", "Test Slow", Measurement{N: 256, Elapsed: 20 * ms, Simulated: true, SimTimeScale: 0.1},
			Policy{TimeSlack: 0.25, Overhead: 20 * ms, MinFill: 0.5, AllowSimulated: true}, "Test Slow", "confirmed"},
		{"simulated too slow at its scale", "Test Mid", Measurement{N: 256, Elapsed: 20 * ms, Simulated: true, SimTimeScale: 0.1},
			Policy{TimeSlack: 0.25, Overhead: 20 * ms, MinFill: 0.5, AllowSimulated: true}, "Test Slow", "identified as Test Slow"},
		{"simulated without a scale", "Test Mid", Measurement{N: 256, Elapsed: 20 * ms, Simulated: true},
			Policy{AllowSimulated: true}, "", "time scale"},
		{"illegal n", "Test Mid", Measurement{N: 100, Elapsed: 20 * ms}, p, "", "not a legal size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model, reason := Identify(table, tt.claimed, tt.m, tt.p)
			if model != tt.wantModel || !strings.Contains(reason, tt.wantReason) {
				t.Errorf("Identify = %q, %q; want %q, reason containing %q", model, reason, tt.wantModel, tt.wantReason)
			}
		})
	}
}

func TestChooseN(t *testing.T) {
	real := func(name string) int {
		m, ok := testRealTable(t).Lookup(name)
		if !ok {
			t.Fatalf("no model %q", name)
		}
		return ChooseN(&m, 0)
	}
	tests := []struct {
		name string
		got  int
		want int
	}{
		{"H100 80GB", real("NVIDIA H100 80GB HBM3"), 92160},
		{"H200", real("NVIDIA H200"), 121856},
		{"A100 40GB", real("NVIDIA A100-SXM4-40GB"), 65536},
		{"L4", real("NVIDIA L4"), 48128},
		{"unknown model uses reported memory", ChooseN(nil, 16<<30), 40960},
		{"reported memory lowers a known model", func() int { m := testModel(t, "Test Big"); return ChooseN(&m, 1<<20) }(), 256},
		{"tiny memory clamps to MinN", ChooseN(nil, 1), MinN},
		{"huge memory clamps to MaxN", ChooseN(nil, 1<<50), MaxN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("ChooseN = %d, want %d", tt.got, tt.want)
			}
			if !validN(tt.got) {
				t.Errorf("ChooseN = %d is not a legal size", tt.got)
			}
		})
	}
	// Every real model's own test must be consistent with it by memory.
	p := DefaultPolicy()
	for _, m := range testRealTable(t).Models() {
		if n := ChooseN(&m, 0); !p.fits(m, n) {
			t.Errorf("%s: n = %d (%.1f GB) does not suit its %.1f GB", m.Name, n, float64(WorkingSetBytes(n))/1e9, float64(m.MemoryBytes)/1e9)
		}
	}
}

func TestRequired(t *testing.T) {
	for g, want := range map[int]int{1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 6: 5, 7: 6, 8: 6} {
		if got := Required(g); got != want {
			t.Errorf("Required(%d) = %d, want %d", g, got, want)
		}
	}
}
