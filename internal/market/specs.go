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
