package market

import (
	"slices"
	"strings"
	"testing"
)

func testGPUs() []GPUDevice {
	return []GPUDevice{
		{Index: 1, UUID: "GPU-b", Name: "NVIDIA A100 80GB PCIe", CapacityMiB: 81920},
		{Index: 0, UUID: "GPU-a", Name: "NVIDIA A100 80GB PCIe", CapacityMiB: 81920},
		{Index: 2, Name: "NVIDIA GeForce RTX 4090", CapacityMiB: 24564},
	}
}

func TestCapacityOf(t *testing.T) {
	s := Specs{CPU: CPUSpecs{Count: 16}, RAM: RAMSpecs{Total: 64 << 30}, Disk: DiskSpecs{Total: 1 << 40, Free: 300 << 30}, GPU: GPUSpecs{Details: testGPUs()}}
	c := CapacityOf(s, Reserve{CPUs: 2, MemoryBytes: 4 << 30, DiskBytes: 100 << 30, GPUs: []string{"GPU-b", "2"}})
	if c.CPUs != 14 || c.MemoryBytes != 60<<30 || c.DiskBytes != 200<<30 {
		t.Errorf("capacity %+v", c)
	}
	if len(c.GPUs) != 1 || c.GPUs[0].ID() != "GPU-a" {
		t.Errorf("gpus %+v, want only GPU-a", c.GPUs)
	}
	if z := CapacityOf(s, Reserve{CPUs: 99, MemoryBytes: 1 << 50}); z.CPUs != 0 || z.MemoryBytes != 0 {
		t.Errorf("over-reserved capacity %+v, want zeros", z)
	}
}

// TestDiskCapacity: leases get free space less the reserve; what a live
// lease has written is no longer free but stays its own, while what it has
// not written yet stays promised to it.
func TestDiskCapacity(t *testing.T) {
	disk := DiskSpecs{Total: 1000 << 30, Free: 400 << 30}
	leases := []Lease{
		{ID: "a", State: LeaseActive, Resources: Resources{DiskBytes: 100 << 30}},  // wrote 30
		{ID: "b", State: LeaseActive, Resources: Resources{DiskBytes: 50 << 30}},   // wrote 80: past its size
		{ID: "c", State: LeaseCreating, Resources: Resources{DiskBytes: 20 << 30}}, // unknown
		{ID: "d", State: LeaseEnded, Resources: Resources{DiskBytes: 500 << 30}},
	}
	used := map[string]int64{"a": 30 << 30, "b": 80 << 30, "d": 1 << 30}
	for _, tt := range []struct {
		name    string
		r       Reserve
		reserve int64
		free    int64 // after the leases
	}{
		// 400 free − 10 % of 1000 reserved = 300; the leases still hold
		// 70 (a), 0 (b) and 20 (c) unwritten: 210.
		{"percent", Reserve{DiskPercent: 10}, 100 << 30, 210 << 30},
		{"bytes win over percent", Reserve{DiskBytes: 50 << 30, DiskPercent: 10}, 50 << 30, 260 << 30},
		{"no reserve", Reserve{}, 0, 310 << 30},
		{"reserve beyond free space", Reserve{DiskPercent: 90}, 900 << 30, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := DiskReserve(disk, tt.r); got != tt.reserve {
				t.Errorf("DiskReserve = %d GiB, want %d GiB", got>>30, tt.reserve>>30)
			}
			c := Capacity{DiskBytes: DiskCapacity(disk, tt.r, leases, used)}
			if got := c.Free(leases).DiskBytes; got != tt.free {
				t.Errorf("free disk %d GiB, want %d GiB", got>>30, tt.free>>30)
			}
		})
	}
}

func TestFree(t *testing.T) {
	c := Capacity{GPUs: testGPUs(), CPUs: 8, MemoryBytes: 32 << 30, DiskBytes: 100 << 30}
	leases := []Lease{
		{State: LeaseActive, Resources: Resources{CPUs: 2, MemoryBytes: 8 << 30, DiskBytes: 10 << 30, GPUs: []string{"GPU-a"}}},
		{State: LeaseCreating, Resources: Resources{CPUs: 1, MemoryBytes: 1 << 30, GPUs: []string{"2"}}},
		{State: LeaseEnded, Resources: Resources{CPUs: 4, MemoryBytes: 8 << 30, GPUs: []string{"GPU-b"}}},
	}
	f := c.Free(leases)
	if f.CPUs != 5 || f.MemoryBytes != 23<<30 || f.DiskBytes != 90<<30 {
		t.Errorf("free %+v", f)
	}
	if r := f.Resources(); !slices.Equal(r.GPUs, []string{"GPU-b"}) {
		t.Errorf("free gpus %v, want [GPU-b]", r.GPUs)
	}
}

func TestFit(t *testing.T) {
	free := Capacity{GPUs: testGPUs(), CPUs: 4, MemoryBytes: 16 << 30, DiskBytes: 50 << 30}
	for _, tc := range []struct {
		name     string
		r        Requirement
		want     Resources
		wantCode string
		wantMsg  string
	}{
		{name: "defaults", r: Requirement{}, want: Resources{CPUs: 1, MemoryBytes: 1 << 30, DiskBytes: 5 << 30, GPUs: []string{}}},
		{name: "tiny memory raised", r: Requirement{MemoryBytes: 1}, want: Resources{CPUs: 1, MemoryBytes: MinLeaseMemoryBytes, DiskBytes: 5 << 30, GPUs: []string{}}},
		{name: "two a100 lowest index first", r: Requirement{GPUs: 2, GPUType: "a100", CPUs: 2, MemoryBytes: 8 << 30, DiskBytes: 10 << 30},
			want: Resources{CPUs: 2, MemoryBytes: 8 << 30, DiskBytes: 10 << 30, GPUs: []string{"GPU-a", "GPU-b"}}},
		{name: "memory filter", r: Requirement{GPUs: 1, GPUMemoryMiB: 30000, DiskBytes: 1}, want: Resources{CPUs: 1, MemoryBytes: 1 << 30, DiskBytes: 1, GPUs: []string{"GPU-a"}}},
		{name: "type by index id", r: Requirement{GPUs: 1, GPUType: "4090"}, want: Resources{CPUs: 1, MemoryBytes: 1 << 30, DiskBytes: 5 << 30, GPUs: []string{"2"}}},
		{name: "default disk too large", r: Requirement{}, want: Resources{}, wantCode: ECONFLICT, wantMsg: "disk"},
		{name: "too many gpus", r: Requirement{GPUs: 3, GPUType: "A100"}, wantCode: ECONFLICT, wantMsg: `gpus of type "A100"`},
		{name: "too many cpus", r: Requirement{CPUs: 5}, wantCode: ECONFLICT, wantMsg: "cpus"},
		{name: "too much memory", r: Requirement{MemoryBytes: 17 << 30}, wantCode: ECONFLICT, wantMsg: "memory"},
		{name: "too much disk", r: Requirement{DiskBytes: 51 << 30}, wantCode: ECONFLICT, wantMsg: "disk"},
		{name: "negative", r: Requirement{CPUs: -1}, wantCode: EINVALID},
		{name: "huge", r: Requirement{MemoryBytes: 1 << 60}, wantCode: EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			def := LeaseDefaults{MemoryBytes: 1 << 30, DiskBytes: 5 << 30}
			if tc.name == "default disk too large" {
				def.DiskBytes = 51 << 30
			}
			got, err := free.Fit(tc.r, def)
			if code := ErrorCode(err); code != tc.wantCode {
				t.Fatalf("Fit error %v, want code %q", err, tc.wantCode)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.wantMsg) {
					t.Errorf("message %q lacks %q", err, tc.wantMsg)
				}
				return
			}
			if got.CPUs != tc.want.CPUs || got.MemoryBytes != tc.want.MemoryBytes || got.DiskBytes != tc.want.DiskBytes || !slices.Equal(got.GPUs, tc.want.GPUs) {
				t.Errorf("Fit = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzFit checks that whatever is asked, Fit never hands out more than is
// free, never a GPU that is not free or twice, and never less than asked.
func FuzzFit(f *testing.F) {
	f.Add(1, 0, int64(0), "", int64(0), int64(0), 4, int64(8<<30), int64(10<<30), uint8(3))
	f.Add(2, 2, int64(40000), "a100", int64(4<<30), int64(1<<30), 8, int64(64<<30), int64(1<<40), uint8(7))
	f.Add(-3, -1, int64(-5), "\x00", int64(-1), int64(1<<62), 0, int64(0), int64(0), uint8(0))
	f.Fuzz(func(t *testing.T, cpus, gpus int, gpuMem int64, gpuType string, mem, disk int64, freeCPUs int, freeMem, freeDisk int64, gpuMask uint8) {
		var free Capacity
		free.CPUs, free.MemoryBytes, free.DiskBytes = max(freeCPUs, 0), max(freeMem, 0), max(freeDisk, 0)
		for i, g := range testGPUs() {
			if gpuMask&(1<<i) != 0 {
				free.GPUs = append(free.GPUs, g)
			}
		}
		r := Requirement{CPUs: cpus, GPUs: gpus, GPUMemoryMiB: gpuMem, GPUType: gpuType, MemoryBytes: mem, DiskBytes: disk}
		res, err := free.Fit(r, LeaseDefaults{MemoryBytes: 1 << 30, DiskBytes: 2 << 30})
		if err != nil {
			if c := ErrorCode(err); c != EINVALID && c != ECONFLICT {
				t.Fatalf("error code %q: %v", c, err)
			}
			return
		}
		if res.CPUs > free.CPUs || res.MemoryBytes > free.MemoryBytes || res.DiskBytes > free.DiskBytes {
			t.Fatalf("Fit %+v exceeds free %+v", res, free)
		}
		wantDisk := disk
		if disk == 0 {
			wantDisk = 2 << 30
		}
		if res.CPUs < max(cpus, 1) || res.MemoryBytes < mem || res.DiskBytes != wantDisk || len(res.GPUs) != gpus {
			t.Fatalf("Fit %+v gives less than %+v", res, r)
		}
		seen := map[string]bool{}
		for _, id := range res.GPUs {
			i := slices.IndexFunc(free.GPUs, func(g GPUDevice) bool { return g.ID() == id })
			if i < 0 || seen[id] {
				t.Fatalf("gpu %s not free or repeated: %v", id, res.GPUs)
			}
			if !r.MatchesGPU(free.GPUs[i].Name, free.GPUs[i].CapacityMiB) {
				t.Fatalf("gpu %s does not match %+v", id, r)
			}
			seen[id] = true
		}
	})
}
