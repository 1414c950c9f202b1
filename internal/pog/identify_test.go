package pog

import (
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

func TestCredit(t *testing.T) {
	t.Parallel()
	table := testTable(t)
	p := *testPolicy()
	p.ResidencySlack = 50 * time.Millisecond
	ms := time.Millisecond
	m := func(compute time.Duration) Measured { return Measured{N: 256, Compute: compute, Scale: 1} }
	// At n = 256: Fast needs ~0, Mid 33.6 ms (credited up to 40.5 ms),
	// Slow 336 ms (up to 405 ms); Big needs n ≥ 1448 by memory.
	tests := []struct {
		name       string
		claimed    string
		m          Measured
		wantModel  string
		wantCode   market.PoGCode
		wantReason string
	}{
		{"claim confirmed", "Test Mid", m(40 * ms), "Test Mid", market.PoGOK, "confirmed"},
		{"faster than claimed is fine", "Test Slow", m(5 * ms), "Test Slow", market.PoGOK, "confirmed"},
		{"claims a better GPU: downgraded", "Test Fast", m(40 * ms), "Test Mid", market.PoGDowngraded, "credited as Test Mid"},
		{"slower than the claimed model", "Test Mid", m(300 * ms), "Test Slow", market.PoGDowngraded, "needs"},
		{"slower than every model", "Test Mid", m(2 * time.Second), "", market.PoGTooSlow, "no model of the table is proven"},
		{"unknown claim credited by measurement", "Mystery GPU", m(40 * ms), "Test Mid", market.PoGDowngraded, "not in the GPU table"},
		{"test too small for the claimed memory", "Test Big", m(10 * time.Nanosecond), "Test Fast", market.PoGDowngraded, "does not suit"},
		{"case-insensitive claim", "test mid", m(40 * ms), "Test Mid", market.PoGOK, "confirmed"},
		{"residency round too slow", "Test Mid", Measured{N: 256, Compute: 40 * ms, Residency: 10 * time.Second, Scale: 1}, "", market.PoGNotResident, "residency round took"},
		{"residency within the bound", "Test Mid", Measured{N: 256, Compute: 40 * ms, Residency: 30 * ms, Scale: 1}, "Test Mid", market.PoGOK, "confirmed"},
		{"simulated at its scale", "Test Slow", Measured{N: 256, Compute: 35 * ms, Scale: 0.1}, "Test Slow", market.PoGOK, "confirmed"},
		{"simulated too slow at its scale", "Test Mid", Measured{N: 256, Compute: 20 * ms, Scale: 0.1}, "Test Slow", market.PoGDowngraded, "credited as Test Slow"},
		{"no scale", "Test Mid", Measured{N: 256, Compute: 20 * ms}, "", market.PoGTooSlow, "time scale"},
		{"illegal n", "Test Mid", Measured{N: 100, Compute: 20 * ms, Scale: 1}, "", market.PoGTooSlow, "not a legal size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model, code, reason := Credit(table, tt.claimed, tt.m, p)
			if model != tt.wantModel || code != tt.wantCode || !strings.Contains(reason, tt.wantReason) {
				t.Errorf("Credit = %q, %q, %q; want %q, %q, reason containing %q", model, code, reason, tt.wantModel, tt.wantCode, tt.wantReason)
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
		{"H100 80GB", real("NVIDIA H100 80GB HBM3"), 113664},
		{"H200", real("NVIDIA H200"), 151552},
		{"A100 40GB", real("NVIDIA A100-SXM4-40GB"), 80896},
		{"L4", real("NVIDIA L4"), 60416},
		{"unknown model uses reported memory", ChooseN(nil, 16<<30), 51200},
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
	// Every real model's own test must suit it by memory: the working set
	// fits and the resident C fills at least MinResidentFraction.
	p := DefaultPolicy()
	for _, m := range testRealTable(t).Models() {
		n := ChooseN(&m, 0)
		if !p.fits(m, n) || WorkingSetBytes(n) > m.MemoryBytes {
			t.Errorf("%s: n = %d (C %.1f GB, working set %.1f GB) does not suit its %.1f GB", m.Name, n,
				float64(ResidentBytes(n))/1e9, float64(WorkingSetBytes(n))/1e9, float64(m.MemoryBytes)/1e9)
		}
	}
	// An 80 GB card cannot hold the C of an H200's test.
	h200, _ := testRealTable(t).Lookup("NVIDIA H200")
	h100, _ := testRealTable(t).Lookup("NVIDIA H100 80GB HBM3")
	if n := ChooseN(&h200, 0); ResidentBytes(n) <= h100.MemoryBytes || p.fits(h100, n) {
		t.Errorf("an H200 test's C (%d bytes) fits an H100's %d bytes", ResidentBytes(n), h100.MemoryBytes)
	}
}

func TestRequired(t *testing.T) {
	for g, want := range map[int]int{1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 6: 5, 7: 6, 8: 6} {
		if got := Required(g); got != want {
			t.Errorf("Required(%d) = %d, want %d", g, got, want)
		}
	}
}
