package market

import (
	"math"
	"testing"
)

func TestScore(t *testing.T) {
	tab := DefaultGPUTable()
	tests := []struct {
		name  string
		model string
		count int
		want  float64
	}{
		{"8 of the best model score 1", "NVIDIA H200", 8, 1},
		{"more than 8 count as 8", "NVIDIA H200", 12, 1},
		{"one H200", "NVIDIA H200", 1, 4.0 / 32},
		{"one H100 80GB HBM3", "NVIDIA H100 80GB HBM3", 1, 3.30 / 32},
		{"four H100", "NVIDIA H100", 4, 4 * 2.80 / 32},
		{"two A100 80GB", "NVIDIA A100-SXM4-80GB", 2, 2 * 1.90 / 32},
		{"failed: no GPUs", "NVIDIA H200", 0, 0},
		{"unknown model", "NVIDIA H1000", 8, 0},
		{"model scored 0", "NVIDIA RTX 4000 Ada Generation", 1, 0},
		{"case-insensitive", "nvidia h200", 8, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Score(tab, tt.model, tt.count); math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("Score = %v, want %v", got, tt.want)
			}
		})
	}
	if Score(nil, "NVIDIA H200", 1) != 0 {
		t.Error("nil table scored")
	}
}
