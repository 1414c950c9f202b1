package hostinfo

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const statsOut = "0, GPU-1a2b, NVIDIA H100 80GB HBM3, 81559, 87, 40960, 71, 612.35\n" +
	"1, GPU-3c4d, NVIDIA H100 80GB HBM3, 81559, 0, 1, 35, [N/A]\n"

func TestParseGPUStats(t *testing.T) {
	gs, err := ParseGPUStats([]byte(statsOut))
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 2 {
		t.Fatalf("%d GPUs", len(gs))
	}
	g := gs[0]
	if g.Index != 0 || g.UUID != "GPU-1a2b" || g.Name != "NVIDIA H100 80GB HBM3" || g.Utilization != 0.87 ||
		g.MemoryUsed != 40960<<20 || g.MemoryTotal != 81559<<20 || g.Temperature != 71 || g.Power != 612.35 {
		t.Fatalf("gpu 0 = %+v", g)
	}
	if !math.IsNaN(gs[1].Power) || gs[1].Utilization != 0 {
		t.Fatalf("gpu 1 = %+v (power [N/A] must be NaN)", gs[1])
	}
	for _, bad := range []string{
		"0, GPU, name, 1, 101, 1, 1, 1\n",        // utilisation above 100 %
		"0, GPU, name, 1, 50, -1, 1, 1\n",        // negative memory
		"0, GPU, name, 1, 50, 1, 1, NaN\n",       // not a number
		"0, GPU, name, 1, 50, 1, 1, 1e400\n",     // infinite
		"0, GPU, name, 1, 50, 1, 1\n",            // a field short
		"-1, GPU, name, 1, 50, 1, 1, 1\n",        // bad index
		"0, GPU, , 1, 50, 1, 1, 1\n",             // no name
		"0, GPU, name, 1, 50, 1, 9999, 1\n",      // implausible temperature
		"0, GPU, name, 1, 50, 1, 1, 123456789\n", // implausible power
	} {
		if _, err := ParseGPUStats([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// fakeSMI writes an nvidia-smi stand-in that prints out for the stats
// query and counts its runs in a file.
func fakeSMI(t *testing.T, out string) (NVML, string) {
	t.Helper()
	dir := t.TempDir()
	tool, count := filepath.Join(dir, "nvidia-smi"), filepath.Join(dir, "runs")
	script := "#!/bin/sh\necho x >> " + count + "\ncase \"$1\" in\n" + statsQuery + ") printf '%s' '" + out + "' ;;\n*) exit 3 ;;\nesac\n"
	if err := os.WriteFile(tool, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return NVML{Path: tool}, count
}

func TestGPUCollectorFromFakeTool(t *testing.T) {
	smi, runs := fakeSMI(t, statsOut)
	c := NewGPUCollector(smi)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	want := `
# HELP nicompute_gpu_power_watts Board power draw.
# TYPE nicompute_gpu_power_watts gauge
nicompute_gpu_power_watts{gpu="0",model="NVIDIA H100 80GB HBM3",uuid="GPU-1a2b"} 612.35
# HELP nicompute_gpu_probe_up 1 when the last nvidia-smi read succeeded, 0 otherwise.
# TYPE nicompute_gpu_probe_up gauge
nicompute_gpu_probe_up 1
# HELP nicompute_gpu_utilization_ratio Share of the last sample period a kernel ran on the GPU (0 to 1).
# TYPE nicompute_gpu_utilization_ratio gauge
nicompute_gpu_utilization_ratio{gpu="0",model="NVIDIA H100 80GB HBM3",uuid="GPU-1a2b"} 0.87
nicompute_gpu_utilization_ratio{gpu="1",model="NVIDIA H100 80GB HBM3",uuid="GPU-3c4d"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "nicompute_gpu_power_watts", "nicompute_gpu_probe_up", "nicompute_gpu_utilization_ratio"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c, "nicompute_gpu_memory_used_bytes", "nicompute_gpu_memory_total_bytes", "nicompute_gpu_temperature_celsius"); n != 6 {
		t.Fatalf("%d memory and temperature series, want 6", n)
	}
	// The scrapes above came within the cache period: one nvidia-smi run.
	if b, _ := os.ReadFile(runs); strings.Count(string(b), "x") != 1 {
		t.Fatalf("nvidia-smi ran %d times for back-to-back scrapes", strings.Count(string(b), "x"))
	}
}

type probeFunc func(context.Context) ([]GPUStats, error)

func (f probeFunc) Stats(ctx context.Context) ([]GPUStats, error) { return f(ctx) }

func TestGPUCollectorProbeDown(t *testing.T) {
	var calls atomic.Int32
	now := time.Unix(1000, 0)
	c := NewGPUCollector(probeFunc(func(context.Context) ([]GPUStats, error) {
		calls.Add(1)
		return nil, errors.New("driver gone")
	}))
	c.now = func() time.Time { return now }
	want := "# HELP nicompute_gpu_probe_up 1 when the last nvidia-smi read succeeded, 0 otherwise.\n# TYPE nicompute_gpu_probe_up gauge\nnicompute_gpu_probe_up 0\n"
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(6 * time.Second)
	testutil.CollectAndCount(c)
	if calls.Load() != 2 {
		t.Fatalf("probe ran %d times across the cache period, want 2", calls.Load())
	}
	if _, err := (NVML{Path: filepath.Join(t.TempDir(), "missing")}).Stats(context.Background()); !errors.Is(err, ErrNoNVIDIA) {
		t.Fatalf("missing tool: %v", err)
	}
}

func FuzzParseGPUStats(f *testing.F) {
	f.Add([]byte(statsOut))
	f.Add([]byte("0, GPU, name, [Not Supported], [N/A], N/A, 1, 1\n"))
	f.Add([]byte("\"0\",\"a\nb\", x, 1, 2, 3, 4, 5"))
	f.Fuzz(func(t *testing.T, b []byte) {
		gs, err := ParseGPUStats(b)
		if err != nil {
			return
		}
		for _, g := range gs {
			if g.Index < 0 || g.Name == "" || g.Utilization < 0 || g.Utilization > 1 || g.MemoryUsed < 0 || g.Power < 0 {
				t.Fatalf("implausible %+v from %q", g, b)
			}
		}
	})
}
