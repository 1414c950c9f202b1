package market

// Specs describe a miner's machine. The JSON keys of the top-level groups
// (cpu, gpu, hard_disk, ram, has_docker) follow the shape SN27 miners publish
// so existing tooling reads them; the extra fields carry what SN27 lacks (GPU
// UUIDs, driver and Docker versions, free resources). Specs are what a miner
// says about itself: validators verify GPUs with Proof-of-GPU and treat the
// rest as hints.
type Specs struct {
	CPU       CPUSpecs  `json:"cpu"`
	GPU       GPUSpecs  `json:"gpu"`
	Disk      DiskSpecs `json:"hard_disk"`
	RAM       RAMSpecs  `json:"ram"`
	HasDocker bool      `json:"has_docker"`
	Docker    string    `json:"docker_version,omitempty"`
	// Free is what the miner could lease right now.
	Free *Resources `json:"free,omitempty"`
	// Enforcement says how the miner holds leases to their limits.
	Enforcement *Enforcement `json:"enforcement,omitempty"`
}

// How a miner holds a lease to its disk size (Enforcement.Disk).
const (
	// DiskByEngine: the storage driver refuses writes past the size
	// (ENOSPC inside the lease); the miner still measures what a lease
	// writes outside its writable layer every Enforcement.DiskCheckSeconds
	// and pauses a lease past its size.
	DiskByEngine = "engine-quota"
	// DiskByMiner: the miner measures what each lease holds every
	// Enforcement.DiskCheckSeconds and pauses a lease past its size.
	DiskByMiner = "miner-pauses"
)

// How a miner confines a lease's network (Enforcement.Network).
const (
	// NetworkFiltered: the host's packet filter lets leases reach the
	// internet (and Enforcement.AllowedRanges) but not the host, private,
	// link-local or multicast addresses.
	NetworkFiltered = "filtered"
	// NetworkUnfiltered: the filter cannot be installed and the operator
	// chose to rent anyway.
	NetworkUnfiltered = "unfiltered"
	// NetworkUnavailable: the filter cannot be installed, so the miner
	// allocates no lease.
	NetworkUnavailable = "unavailable"
)

// Enforcement is what a miner reports about holding leases to their
// limits.
type Enforcement struct {
	Disk             string  `json:"disk"`
	DiskCheckSeconds float64 `json:"disk_check_seconds,omitempty"`
	// DiskReserveBytes of free disk are never leased.
	DiskReserveBytes int64  `json:"disk_reserve_bytes"`
	Network          string `json:"network"`
	// NetworkDetail names the packet filter, or why it is missing.
	NetworkDetail string   `json:"network_detail,omitempty"`
	AllowedRanges []string `json:"allowed_ranges,omitempty"`
}

// CPUSpecs describe the processors.
type CPUSpecs struct {
	Count         int     `json:"count"` // logical CPUs
	PhysicalCores int     `json:"physical_cores,omitempty"`
	Model         string  `json:"model,omitempty"`
	FrequencyMHz  float64 `json:"frequency"`
}

// GPUSpecs describe the GPUs. Capacity is the total memory in MiB.
type GPUSpecs struct {
	Count         int         `json:"count"`
	CapacityMiB   int64       `json:"capacity"`
	Details       []GPUDevice `json:"details"`
	DriverVersion string      `json:"driver_version,omitempty"`
	CUDAVersion   string      `json:"cuda_version,omitempty"`
}

// GPUDevice is one GPU. Capacity is its memory in MiB.
type GPUDevice struct {
	Index       int    `json:"index"`
	UUID        string `json:"uuid,omitempty"`
	Name        string `json:"name"`
	CapacityMiB int64  `json:"capacity"`
}

// DiskSpecs describe the disk holding Docker's data (bytes).
type DiskSpecs struct {
	Total int64  `json:"total"`
	Free  int64  `json:"free"`
	Used  int64  `json:"used"`
	Path  string `json:"path,omitempty"`
}

// RAMSpecs describe memory (bytes).
type RAMSpecs struct {
	Total     int64 `json:"total"`
	Available int64 `json:"available"`
	Used      int64 `json:"used"`
	Free      int64 `json:"free"`
}
