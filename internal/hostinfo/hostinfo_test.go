package hostinfo

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nicompute/nicompute/internal/market"
)

func TestParseNVIDIASMI(t *testing.T) {
	out := "0, GPU-1a2b, NVIDIA H100 80GB HBM3, 81559, 550.54.15\n1, GPU-3c4d, NVIDIA H100 80GB HBM3, 81559, 550.54.15\n"
	gpus, drv, err := ParseNVIDIASMI([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) != 2 || gpus[1] != (market.GPUDevice{Index: 1, UUID: "GPU-3c4d", Name: "NVIDIA H100 80GB HBM3", CapacityMiB: 81559}) {
		t.Fatalf("gpus = %+v", gpus)
	}
	if drv.DriverVersion != "550.54.15" {
		t.Fatalf("driver = %+v", drv)
	}
	for _, bad := range []string{"x, GPU, name, 1, d\n", "0, GPU, name, -5, d\n", "0, GPU, , 1, d\n", "0, GPU, a\n"} {
		if _, _, err := ParseNVIDIASMI([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	if gpus, _, err := ParseNVIDIASMI(nil); err != nil || len(gpus) != 0 {
		t.Fatalf("empty output: %v %v", gpus, err)
	}
}

func TestNVMLFromFakeTool(t *testing.T) {
	// A stand-in nvidia-smi that prints a fixed answer exercises the real
	// exec path without a GPU.
	dir := t.TempDir()
	tool := filepath.Join(dir, "nvidia-smi")
	script := "#!/bin/sh\necho '0, GPU-aaaa, NVIDIA A100-SXM4-80GB, 81920, 535.1'\n"
	if err := os.WriteFile(tool, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	gpus, drv, err := NVML{Path: tool}.GPUs(context.Background())
	if err != nil || len(gpus) != 1 || gpus[0].Name != "NVIDIA A100-SXM4-80GB" || drv.DriverVersion != "535.1" {
		t.Fatalf("GPUs = %+v %+v %v", gpus, drv, err)
	}
	if _, _, err := (NVML{Path: filepath.Join(dir, "missing")}).GPUs(context.Background()); !errors.Is(err, ErrNoNVIDIA) {
		t.Fatalf("missing tool: %v", err)
	}
}

func TestCollect(t *testing.T) {
	c := &Collector{GPUs: Static{Devices: []market.GPUDevice{{Index: 0, Name: "NVIDIA H200", CapacityMiB: 143771}}}}
	s, err := c.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.CPU.Count < 1 || s.RAM.Total <= 0 || s.Disk.Total <= 0 {
		t.Fatalf("implausible specs: %+v", s)
	}
	if s.GPU.Count != 1 || s.GPU.CapacityMiB != 143771 {
		t.Fatalf("gpu summary = %+v", s.GPU)
	}
	c.GPUs = Static{Err: errors.New("driver gone")}
	if _, err := c.Collect(context.Background()); err == nil {
		t.Fatal("failing probe hidden")
	}
}

func FuzzParseNVIDIASMI(f *testing.F) {
	f.Add([]byte("0, GPU-1a2b, NVIDIA H100 80GB HBM3, 81559, 550.54.15\n"))
	f.Add([]byte("\"0\",\"a\nb\", x, 1, y"))
	f.Fuzz(func(t *testing.T, b []byte) {
		gpus, _, err := ParseNVIDIASMI(b)
		if err != nil {
			return
		}
		for _, g := range gpus {
			if g.CapacityMiB < 0 || g.Name == "" || g.Index < 0 {
				t.Fatalf("accepted bad gpu %+v", g)
			}
		}
	})
}
