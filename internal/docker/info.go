package docker

import (
	"context"

	"github.com/moby/moby/client"
)

// Info describes the engine for the miner's specs, health and doctor.
type Info struct {
	ServerVersion string `json:"server_version"`
	APIVersion    string `json:"api_version"` // negotiated API version in use
	StorageDriver string `json:"storage_driver"`
	// BackingFilesystem is the storage driver's backing filesystem where
	// the driver reports one (overlay2: "xfs", "extfs", …).
	BackingFilesystem string `json:"backing_filesystem,omitempty"`
	// RootDir is the engine's data directory (Docker Root Dir), whose
	// filesystem holds every container's writable layer.
	RootDir       string `json:"root_dir,omitempty"`
	CgroupDriver  string `json:"cgroup_driver"`
	CgroupVersion string `json:"cgroup_version,omitempty"`
	// NvidiaRuntime is true when the engine has a runtime named "nvidia"
	// (NVIDIA container toolkit registered with Docker).
	NvidiaRuntime bool `json:"nvidia_runtime"`
	// CDI is true when the engine reports CDI spec directories (API ≥ 1.46
	// engines with CDI enabled); always false on older engines.
	CDI bool `json:"cdi"`
	// DiskQuota is true when per-container disk quotas are expected to
	// work with this storage driver (overlay2 still needs an xfs backing
	// filesystem mounted with pquota; the first create with a disk size
	// settles it, see Runtime.DiskQuota).
	DiskQuota bool  `json:"disk_quota"`
	NCPU      int   `json:"ncpu"`
	MemTotal  int64 `json:"mem_total"`
	// Warnings are the engine's own warnings (missing cgroup features, …).
	Warnings []string `json:"warnings,omitempty"`
}

// Info queries the engine. Errors: EUNAVAILABLE.
func (r *Runtime) Info(ctx context.Context) (Info, error) {
	ctx, cancel := r.call(ctx)
	defer cancel()
	res, err := r.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return Info{}, wrap(ctx, "docker info", "docker engine", err)
	}
	si := res.Info
	info := Info{
		ServerVersion: si.ServerVersion,
		APIVersion:    r.cli.ClientVersion(),
		StorageDriver: si.Driver,
		RootDir:       si.DockerRootDir,
		CgroupDriver:  si.CgroupDriver,
		CgroupVersion: si.CgroupVersion,
		CDI:           len(si.CDISpecDirs) > 0,
		NCPU:          si.NCPU,
		MemTotal:      si.MemTotal,
		Warnings:      si.Warnings,
	}
	for _, kv := range si.DriverStatus {
		if kv[0] == "Backing Filesystem" {
			info.BackingFilesystem = kv[1]
		}
	}
	_, info.NvidiaRuntime = si.Runtimes["nvidia"]
	info.DiskQuota = quotaCandidate(info.StorageDriver, info.BackingFilesystem)
	r.mu.Lock()
	switch r.diskQuota {
	case quotaSupported:
		info.DiskQuota = true
	case quotaUnsupported:
		info.DiskQuota = false
	}
	r.driverInfo = &info
	warn := !info.DiskQuota && !r.quotaWarned
	r.quotaWarned = r.quotaWarned || warn
	r.mu.Unlock()
	if warn {
		r.log.Warn("storage driver cannot limit a container's disk; lease disk sizes are not enforced by the engine",
			"storage_driver", info.StorageDriver, "backing_filesystem", info.BackingFilesystem)
	}
	return info, nil
}

// quotaCandidate reports whether a storage driver can enforce the
// StorageOpt "size" option. overlay2 can only on xfs with the pquota mount
// option, which the engine does not report; the first create settles it.
func quotaCandidate(driver, backingFS string) bool {
	switch driver {
	case "btrfs", "zfs", "devicemapper", "windowsfilter":
		return true
	case "overlay2":
		return backingFS == "xfs"
	}
	return false
}

// DiskQuota reports whether the runtime enforces Resources.DiskBytes. It
// asks the engine (Info) the first time and then remembers what creating
// containers taught it. Errors: EUNAVAILABLE.
func (r *Runtime) DiskQuota(ctx context.Context) (bool, error) {
	r.mu.Lock()
	state, cached := r.diskQuota, r.driverInfo
	r.mu.Unlock()
	switch state {
	case quotaSupported:
		return true, nil
	case quotaUnsupported:
		return false, nil
	}
	if cached != nil {
		return cached.DiskQuota, nil
	}
	info, err := r.Info(ctx)
	if err != nil {
		return false, err
	}
	return info.DiskQuota, nil
}
