package market

import (
	"fmt"
	"math"
	"slices"
	"strconv"
)

// MinLeaseMemoryBytes is the smallest memory limit a lease gets; smaller
// requests are raised to it (a container needs some memory to start).
const MinLeaseMemoryBytes = 64 << 20

// ID is the device id a lease records and the runtime passes to the NVIDIA
// toolkit: the UUID when the driver reports one, else the index.
func (d GPUDevice) ID() string {
	if d.UUID != "" {
		return d.UUID
	}
	return strconv.Itoa(d.Index)
}

// Capacity is an amount of leasable machine: GPUs (each leased whole), CPUs,
// memory and disk in bytes. A miner's total capacity is its hardware less an
// operator reserve; what is free is the total less the live leases.
type Capacity struct {
	GPUs        []GPUDevice `json:"gpus"`
	CPUs        int         `json:"cpus"`
	MemoryBytes int64       `json:"memory_bytes"`
	DiskBytes   int64       `json:"disk_bytes"`
}

// Reserve is what the operator keeps for the host and is never leased.
type Reserve struct {
	CPUs        int   `json:"cpus"`
	MemoryBytes int64 `json:"memory_bytes"`
	// DiskBytes of free disk are kept, or, when it is zero, DiskPercent of
	// the filesystem holding the containers (see DiskReserve).
	DiskBytes   int64 `json:"disk_bytes"`
	DiskPercent int   `json:"disk_percent,omitempty"`
	// GPUs lists device ids (index or UUID) that are never leased.
	GPUs []string `json:"gpus,omitempty"`
}

// CapacityOf returns the leasable capacity of a machine with specs s less
// reserve r: logical CPUs, total memory, every GPU not reserved, and the
// disk DiskCapacity gives for the free space in s with no lease yet.
// Amounts never go below zero. Disk changes as leases write: callers
// deciding on a lease compute it afresh with DiskCapacity.
func CapacityOf(s Specs, r Reserve) Capacity {
	c := Capacity{
		CPUs:        max(s.CPU.Count-r.CPUs, 0),
		MemoryBytes: max(s.RAM.Total-r.MemoryBytes, 0),
		DiskBytes:   DiskCapacity(s.Disk, r, nil, nil),
	}
	for _, g := range s.GPU.Details {
		if slices.Contains(r.GPUs, g.ID()) || slices.Contains(r.GPUs, strconv.Itoa(g.Index)) {
			continue
		}
		c.GPUs = append(c.GPUs, g)
	}
	return c
}

// DiskUnmeasured is the disk use reported for a lease whose files could
// not be measured because of what the lease itself did (a directory tree
// deeper than the measurement walks): it counts as past any size.
const DiskUnmeasured int64 = math.MaxInt64

// DiskReserve is the free disk reserve r keeps on a filesystem of disk:
// DiskBytes, or DiskPercent of its size.
func DiskReserve(disk DiskSpecs, r Reserve) int64 {
	if r.DiskBytes > 0 {
		return r.DiskBytes
	}
	return disk.Total / 100 * int64(min(max(r.DiskPercent, 0), 100))
}

// DiskCapacity is the disk to put in a Capacity whose Free takes the live
// leases out: the free space of the filesystem holding the containers,
// less the reserve, plus what each live lease has already written of its
// size (used, by lease id; unknown counts as nothing written), which that
// free space no longer holds but Free takes out again with the lease's
// whole size. So a lease's unwritten size stays promised to it, and
// space the reserve keeps is never promised at all.
func DiskCapacity(disk DiskSpecs, r Reserve, leases []Lease, used map[string]int64) int64 {
	c := max(disk.Free-DiskReserve(disk, r), 0)
	for _, l := range leases {
		if l.State.Live() {
			c += min(max(used[l.ID], 0), l.Resources.DiskBytes)
		}
	}
	return c
}

// Free returns what is left of c once the live leases among leases hold
// their resources. Ended leases hold nothing.
func (c Capacity) Free(leases []Lease) Capacity {
	held := map[string]bool{}
	f := Capacity{CPUs: c.CPUs, MemoryBytes: c.MemoryBytes, DiskBytes: c.DiskBytes}
	for _, l := range leases {
		if !l.State.Live() {
			continue
		}
		f.CPUs -= l.Resources.CPUs
		f.MemoryBytes -= l.Resources.MemoryBytes
		f.DiskBytes -= l.Resources.DiskBytes
		for _, g := range l.Resources.GPUs {
			held[g] = true
		}
	}
	f.CPUs = max(f.CPUs, 0)
	f.MemoryBytes = max(f.MemoryBytes, 0)
	f.DiskBytes = max(f.DiskBytes, 0)
	for _, g := range c.GPUs {
		if !held[g.ID()] {
			f.GPUs = append(f.GPUs, g)
		}
	}
	return f
}

// Resources returns c as lease resources (GPU ids).
func (c Capacity) Resources() Resources {
	r := Resources{CPUs: c.CPUs, MemoryBytes: c.MemoryBytes, DiskBytes: c.DiskBytes, GPUs: []string{}}
	for _, g := range c.GPUs {
		r.GPUs = append(r.GPUs, g.ID())
	}
	return r
}

// LeaseDefaults are what a lease gets where its requirement names nothing.
type LeaseDefaults struct {
	MemoryBytes int64
	// DiskBytes bounds the disk of a lease that asks for none: every lease
	// has a size.
	DiskBytes int64
}

// Fit chooses resources for requirement r out of the free capacity c: the
// requested CPUs (at least one), memory (def.MemoryBytes when r names none,
// at least MinLeaseMemoryBytes), disk (def.DiskBytes when r names none),
// and r.GPUs whole GPUs whose name and memory match r, lowest index first.
// Errors: EINVALID for an invalid requirement, ECONFLICT naming the first
// resource that is short.
func (c Capacity) Fit(r Requirement, def LeaseDefaults) (Resources, error) {
	if err := r.Validate(); err != nil {
		return Resources{}, err
	}
	res := Resources{CPUs: r.EffectiveCPUs(), MemoryBytes: r.MemoryBytes, DiskBytes: r.DiskBytes, GPUs: []string{}}
	if res.MemoryBytes == 0 {
		res.MemoryBytes = def.MemoryBytes
	}
	res.MemoryBytes = max(res.MemoryBytes, MinLeaseMemoryBytes)
	if res.DiskBytes == 0 {
		res.DiskBytes = def.DiskBytes
	}
	switch {
	case res.CPUs > c.CPUs:
		return Resources{}, Errorf(ECONFLICT, "not enough free cpus: %d requested, %d free", res.CPUs, c.CPUs)
	case res.MemoryBytes > c.MemoryBytes:
		return Resources{}, Errorf(ECONFLICT, "not enough free memory: %s requested, %s free", FormatBytes(res.MemoryBytes), FormatBytes(c.MemoryBytes))
	case res.DiskBytes > c.DiskBytes:
		return Resources{}, Errorf(ECONFLICT, "not enough free disk: %s requested, %s free", FormatBytes(res.DiskBytes), FormatBytes(c.DiskBytes))
	}
	if r.GPUs == 0 {
		return res, nil
	}
	gpus := slices.Clone(c.GPUs)
	slices.SortStableFunc(gpus, func(a, b GPUDevice) int { return a.Index - b.Index })
	for _, g := range gpus {
		if len(res.GPUs) == r.GPUs {
			break
		}
		if r.MatchesGPU(g.Name, g.CapacityMiB) {
			res.GPUs = append(res.GPUs, g.ID())
		}
	}
	if len(res.GPUs) < r.GPUs {
		what := "gpus"
		if r.GPUType != "" {
			what += fmt.Sprintf(" of type %q", r.GPUType)
		}
		if r.GPUMemoryMiB > 0 {
			what += fmt.Sprintf(" with at least %d MiB", r.GPUMemoryMiB)
		}
		return Resources{}, Errorf(ECONFLICT, "not enough free %s: %d requested, %d free", what, r.GPUs, len(res.GPUs))
	}
	return res, nil
}

// FormatBytes formats n bytes in binary units for messages ("1.5 GiB").
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("KMGTP"[exp]) + "iB"
}
