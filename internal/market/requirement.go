package market

import (
	"strings"
	"unicode"
)

// Limits on what one request may ask for. They bound arithmetic and storage,
// not what a miner actually has (that check happens against its free
// resources).
const (
	MaxCPUs         = 1024
	MaxGPUs         = 16
	MaxGPUMemoryMiB = 1 << 22 // 4 TiB per GPU
	MaxMemoryBytes  = 1 << 46 // 64 TiB
	MaxDiskBytes    = 1 << 50 // 1 PiB
	MaxGPUTypeLen   = 64
)

// Requirement is what a renter asks a miner for. Zero fields mean "no
// requirement" except CPUs, where zero means one.
type Requirement struct {
	CPUs         int    `json:"cpus"`
	GPUs         int    `json:"gpus"`
	GPUMemoryMiB int64  `json:"gpu_memory_mib"`
	GPUType      string `json:"gpu_type"`
	MemoryBytes  int64  `json:"memory_bytes"`
	DiskBytes    int64  `json:"disk_bytes"`
}

// Validate checks ranges and the GPU type string. The error is an *Error
// with code EINVALID.
func (r Requirement) Validate() error {
	switch {
	case r.CPUs < 0 || r.CPUs > MaxCPUs:
		return Errorf(EINVALID, "cpu count %d out of range [0, %d]", r.CPUs, MaxCPUs)
	case r.GPUs < 0 || r.GPUs > MaxGPUs:
		return Errorf(EINVALID, "gpu count %d out of range [0, %d]", r.GPUs, MaxGPUs)
	case r.GPUMemoryMiB < 0 || r.GPUMemoryMiB > MaxGPUMemoryMiB:
		return Errorf(EINVALID, "gpu capacity %d MiB out of range", r.GPUMemoryMiB)
	case r.MemoryBytes < 0 || r.MemoryBytes > MaxMemoryBytes:
		return Errorf(EINVALID, "ram capacity %d bytes out of range", r.MemoryBytes)
	case r.DiskBytes < 0 || r.DiskBytes > MaxDiskBytes:
		return Errorf(EINVALID, "disk capacity %d bytes out of range", r.DiskBytes)
	case len(r.GPUType) > MaxGPUTypeLen:
		return Errorf(EINVALID, "gpu type longer than %d characters", MaxGPUTypeLen)
	}
	for _, c := range r.GPUType {
		if !unicode.IsPrint(c) {
			return Errorf(EINVALID, "gpu type contains a non-printable character")
		}
	}
	if r.GPUs == 0 && (r.GPUMemoryMiB > 0 || strings.TrimSpace(r.GPUType) != "") {
		return Errorf(EINVALID, "gpu capacity or type given without a gpu count")
	}
	return nil
}

// EffectiveCPUs is the CPU count a lease gets: at least one.
func (r Requirement) EffectiveCPUs() int { return max(r.CPUs, 1) }

// MatchesGPU reports whether a GPU with this name and memory satisfies the
// requirement's type (case-insensitive substring) and per-GPU memory.
func (r Requirement) MatchesGPU(name string, memoryMiB int64) bool {
	if r.GPUMemoryMiB > 0 && memoryMiB < r.GPUMemoryMiB {
		return false
	}
	t := strings.ToLower(strings.TrimSpace(r.GPUType))
	return t == "" || strings.Contains(strings.ToLower(name), t)
}
