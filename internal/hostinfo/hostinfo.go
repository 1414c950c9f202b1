// Package hostinfo gathers a miner's hardware specs: CPU, memory and disk
// through gopsutil, GPUs through NVIDIA's NVML. NVML is reached through the
// nvidia-smi tool the driver ships (run with an argument vector, never a
// shell) rather than by loading libnvidia-ml into this process: loading a
// shared library would make the nicompute binary dynamic, and the same binary
// must run as the SSH server inside images that have no C library.
package hostinfo

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"

	"github.com/nicompute/nicompute/internal/market"
)

// GPUProbe lists the machine's GPUs. NVML is the real one; tests and devnet
// supply others.
type GPUProbe interface {
	GPUs(ctx context.Context) ([]market.GPUDevice, DriverInfo, error)
}

// DriverInfo is the NVIDIA driver's identity.
type DriverInfo struct {
	DriverVersion string
	CUDAVersion   string
}

// Collector gathers Specs.
type Collector struct {
	// DiskPath is the filesystem whose usage is reported (Docker's data
	// root on a miner); default "/".
	DiskPath string
	// GPUs probes GPUs; nil means no GPUs.
	GPUs GPUProbe
}

// Collect gathers the specs. A failing GPU probe is an error (a miner whose
// driver broke must not advertise zero GPUs silently); CPU, memory and disk
// failures are errors too.
func (c *Collector) Collect(ctx context.Context) (market.Specs, error) {
	var s market.Specs
	logical, err := cpu.CountsWithContext(ctx, true)
	if err != nil {
		return s, fmt.Errorf("count cpus: %w", err)
	}
	physical, _ := cpu.CountsWithContext(ctx, false)
	s.CPU = market.CPUSpecs{Count: logical, PhysicalCores: physical}
	if infos, err := cpu.InfoWithContext(ctx); err == nil && len(infos) > 0 {
		s.CPU.Model = strings.TrimSpace(infos[0].ModelName)
		s.CPU.FrequencyMHz = infos[0].Mhz
	}
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return s, fmt.Errorf("read memory: %w", err)
	}
	s.RAM = market.RAMSpecs{Total: int64(vm.Total), Available: int64(vm.Available), Used: int64(vm.Used), Free: int64(vm.Free)}
	if s.Disk, err = c.Disk(ctx); err != nil {
		return s, err
	}
	s.GPU.Details = []market.GPUDevice{}
	if c.GPUs != nil {
		gpus, drv, err := c.GPUs.GPUs(ctx)
		if err != nil {
			return s, fmt.Errorf("probe gpus: %w", err)
		}
		s.GPU.Details = gpus
		s.GPU.Count = len(gpus)
		for _, g := range gpus {
			s.GPU.CapacityMiB += g.CapacityMiB
		}
		s.GPU.DriverVersion, s.GPU.CUDAVersion = drv.DriverVersion, drv.CUDAVersion
	}
	return s, nil
}

// Disk measures the filesystem at DiskPath (a statfs: cheap enough to ask
// before every lease decision). Free is what an unprivileged writer may
// still use.
func (c *Collector) Disk(ctx context.Context) (market.DiskSpecs, error) {
	path := c.DiskPath
	if path == "" {
		path = "/"
	}
	du, err := disk.UsageWithContext(ctx, path)
	if err != nil {
		return market.DiskSpecs{}, fmt.Errorf("read disk usage of %s: %w", path, err)
	}
	return market.DiskSpecs{Total: int64(du.Total), Free: int64(du.Free), Used: int64(du.Used), Path: path}, nil
}

// NVML probes GPUs through nvidia-smi's NVML queries.
type NVML struct {
	// Path is the nvidia-smi binary; default "nvidia-smi" from PATH.
	Path string
	// Timeout bounds one query; default 15 s.
	Timeout time.Duration
}

// ErrNoNVIDIA reports that no NVIDIA driver is installed.
var ErrNoNVIDIA = errors.New("no NVIDIA driver found (nvidia-smi not installed)")

// Available reports whether nvidia-smi is installed.
func (n NVML) Available() bool {
	_, err := exec.LookPath(n.path())
	return err == nil
}

func (n NVML) path() string {
	if n.Path != "" {
		return n.Path
	}
	return "nvidia-smi"
}

// GPUs queries index, UUID, name, memory and driver version of every GPU.
func (n NVML) GPUs(ctx context.Context) ([]market.GPUDevice, DriverInfo, error) {
	out, err := n.query(ctx, "--query-gpu=index,uuid,name,memory.total,driver_version")
	if err != nil {
		return nil, DriverInfo{}, err
	}
	return ParseNVIDIASMI(out)
}

// query runs nvidia-smi with one --query-gpu argument in CSV without
// header or units, within Timeout.
func (n NVML) query(ctx context.Context, query string) ([]byte, error) {
	bin, err := exec.LookPath(n.path())
	if err != nil {
		return nil, ErrNoNVIDIA
	}
	timeout := n.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, query, "--format=csv,noheader,nounits")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errOut.String())
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return nil, fmt.Errorf("nvidia-smi: %v: %s", err, msg)
	}
	return out.Bytes(), nil
}

// ParseNVIDIASMI parses the CSV that
// `nvidia-smi --query-gpu=index,uuid,name,memory.total,driver_version --format=csv,noheader,nounits`
// prints: one GPU per line, memory in MiB.
func ParseNVIDIASMI(b []byte) ([]market.GPUDevice, DriverInfo, error) {
	var drv DriverInfo
	if len(b) > 1<<20 {
		return nil, drv, errors.New("nvidia-smi output too large")
	}
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = 5
	r.TrimLeadingSpace = true
	var gpus []market.GPUDevice
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, drv, fmt.Errorf("parse nvidia-smi output: %w", err)
		}
		if len(gpus) >= market.MaxGPUs*4 {
			return nil, drv, errors.New("parse nvidia-smi output: too many GPUs")
		}
		idx, err := strconv.Atoi(strings.TrimSpace(rec[0]))
		if err != nil || idx < 0 || idx > 1024 {
			return nil, drv, fmt.Errorf("parse nvidia-smi output: bad index %q", trunc(rec[0]))
		}
		memMiB, err := strconv.ParseInt(strings.TrimSpace(rec[3]), 10, 64)
		if err != nil || memMiB < 0 || memMiB > market.MaxGPUMemoryMiB {
			return nil, drv, fmt.Errorf("parse nvidia-smi output: bad memory %q", trunc(rec[3]))
		}
		name, uuid := strings.TrimSpace(rec[2]), strings.TrimSpace(rec[1])
		if name == "" || len(name) > 128 || len(uuid) > 128 {
			return nil, drv, fmt.Errorf("parse nvidia-smi output: bad name or uuid on line %d", len(gpus)+1)
		}
		gpus = append(gpus, market.GPUDevice{Index: idx, UUID: uuid, Name: name, CapacityMiB: memMiB})
		drv.DriverVersion = strings.TrimSpace(rec[4])
	}
	return gpus, drv, nil
}

func trunc(s string) string {
	if len(s) > 32 {
		return s[:32]
	}
	return s
}

// Static is a GPUProbe with a fixed answer, for tests and simulated
// devnet miners.
type Static struct {
	Devices []market.GPUDevice
	Driver  DriverInfo
	Err     error
}

// GPUs returns the fixed answer.
func (s Static) GPUs(context.Context) ([]market.GPUDevice, DriverInfo, error) {
	return append([]market.GPUDevice(nil), s.Devices...), s.Driver, s.Err
}
