package market

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultGPUTable(t *testing.T) {
	tab := DefaultGPUTable()
	if got := len(tab.Models()); got != 17 {
		t.Errorf("%d models, want the original's 17", got)
	}
	tests := []struct {
		name  string
		score float64
		fp16  float64
		memGB float64 // GiB
	}{
		{"NVIDIA H200", 4.00, 742, 140.4},
		{"NVIDIA H100 80GB HBM3", 3.30, 742, 79.6},
		{"NVIDIA H100", 2.80, 567.4, 79.6},
		{"NVIDIA A100-SXM4-80GB", 1.90, 249.6, 80},
		{"NVIDIA A100 80GB PCIe", 1.65, 249.6, 80},
		{"NVIDIA L40s", 1.10, 271.5, 45},
		{"NVIDIA RTX 4000 Ada Generation", 0, 40, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, ok := tab.Lookup(tt.name)
			if !ok {
				t.Fatal("missing")
			}
			if m.BaseScore != tt.score || m.FP16TFLOPS != tt.fp16 {
				t.Errorf("score %v fp16 %v, want %v %v", m.BaseScore, m.FP16TFLOPS, tt.score, tt.fp16)
			}
			if gib := float64(m.MemoryBytes) / (1 << 30); gib < tt.memGB-0.1 || gib > tt.memGB+0.1 {
				t.Errorf("memory %.1f GiB, want %.1f", gib, tt.memGB)
			}
		})
	}
	for _, m := range tab.Models() {
		if m.MemoryBandwidth < 300e9 {
			t.Errorf("%s: memory bandwidth %v, want the datasheet's (≥ 300 GB/s)", m.Name, m.MemoryBandwidth)
		}
	}
	if tab.BestScore() != 4 {
		t.Errorf("best score %v, want 4", tab.BestScore())
	}
	if m, _ := tab.Lookup("NVIDIA H100"); m.TolerancePair != "NVIDIA H100 80GB HBM3" {
		t.Errorf("H100 pair %q", m.TolerancePair)
	}
}

func TestLookupFoldsCaseAndSpaces(t *testing.T) {
	tab := DefaultGPUTable()
	for _, name := range []string{"NVIDIA L40S", "nvidia l40s", "  NVIDIA   L40s "} {
		if m, ok := tab.Lookup(name); !ok || m.Name != "NVIDIA L40s" {
			t.Errorf("Lookup(%q) = %q, %v", name, m.Name, ok)
		}
	}
	if _, ok := tab.Lookup("NVIDIA H1000"); ok {
		t.Error("found an unknown model")
	}
}

func TestParseGPUTableRejects(t *testing.T) {
	ok := "gpu_performance:\n  GPU_TFLOPS_FP16: {A: 1}\n  GPU_MEMORY_MIB: {A: 1024}\n"
	if _, err := ParseGPUTable([]byte(ok)); err != nil {
		t.Fatalf("minimal table: %v", err)
	}
	tests := map[string]string{
		"empty":             "",
		"no models":         "gpu_performance: {}\n",
		"unknown key":       ok + "  GPU_TFLOPS_FP8: {A: 1}\n",
		"unknown top key":   ok + "merkle_proof: {}\n",
		"missing memory":    "gpu_performance:\n  GPU_TFLOPS_FP16: {A: 1}\n",
		"zero rate":         "gpu_performance:\n  GPU_TFLOPS_FP16: {A: 0}\n  GPU_MEMORY_MIB: {A: 1024}\n",
		"negative score":    ok + "  gpu_scores: {A: -1}\n",
		"score for unknown": ok + "  gpu_scores: {B: 1}\n",
		"pair to unknown":   ok + "  gpu_tolerance_pairs: {A: B}\n",
		"case duplicates":   "gpu_performance:\n  GPU_TFLOPS_FP16: {A: 1, a: 1}\n  GPU_MEMORY_MIB: {A: 1, a: 1}\n",
		"not yaml":          "gpu_performance: [",
	}
	for name, y := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseGPUTable([]byte(y))
			if err == nil || ErrorCode(err) != EINVALID {
				t.Errorf("ParseGPUTable = %v, want an EINVALID error", err)
			}
		})
	}
}

func TestLoadGPUTable(t *testing.T) {
	if tab, err := LoadGPUTable(""); err != nil || len(tab.Models()) == 0 {
		t.Fatalf("LoadGPUTable(\"\") = %v", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "gpus.yaml")
	// An override in the original's shape, GPU_AVRAM included.
	y := strings.Join([]string{
		"gpu_performance:",
		"  GPU_TFLOPS_FP16: {NVIDIA B200: 1200}",
		"  GPU_TFLOPS_FP32: {NVIDIA B200: 80}",
		"  GPU_AVRAM: {NVIDIA B200: 137.4}",
		"  GPU_MEMORY_MIB: {NVIDIA B200: 183359}",
		"  gpu_scores: {NVIDIA B200: 6}",
	}, "\n")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	tab, err := LoadGPUTable(path)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := tab.Lookup("NVIDIA B200"); !ok || m.BaseScore != 6 || m.FP32TFLOPS != 80 {
		t.Errorf("B200 = %+v, %v", m, ok)
	}
	if _, err := LoadGPUTable(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file accepted")
	}
}

func FuzzParseGPUTable(f *testing.F) {
	f.Add(DefaultGPUTableYAML())
	f.Add([]byte("gpu_performance:\n  GPU_TFLOPS_FP16: {A: 1}\n  GPU_MEMORY_MIB: {A: 1024}\n  gpu_scores: {A: 2}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := ParseGPUTable(b)
		if err != nil {
			return
		}
		for _, m := range tab.Models() {
			if !(m.FP16TFLOPS > 0) || m.MemoryBytes == 0 || m.BaseScore < 0 || m.BaseScore > tab.BestScore() {
				t.Fatalf("accepted model %+v", m)
			}
			if got := Score(tab, m.Name, 8); got < 0 || got > 1 {
				t.Fatalf("Score(%s, 8) = %v outside [0, 1]", m.Name, got)
			}
		}
	})
}
