package docker

import (
	"fmt"
	"maps"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/sshd"
)

// Spec describes one lease container. Validate renter-supplied parts with
// ValidateImage, ParseSSHKeys and ValidateVolumePath before building it;
// Create checks the rest.
type Spec struct {
	// LeaseID names the lease (see ValidateLeaseID).
	LeaseID string
	// Image is the base image; empty means Config.DefaultImage.
	Image string
	// Resources are the lease's limits. CPUs and MemoryBytes are required.
	Resources market.Resources
	// SSHPort is the host port container port 22 is published on.
	SSHPort int
	// Ports are extra container TCP ports published on host ports (on
	// the same address as SSH). The lease network's isolation rules apply
	// to them as to SSH: they are reachable only through the host port.
	Ports []market.PortMap
	// HostIP is the address the port is published on; empty means
	// Config.HostIP.
	HostIP string
	// AuthorizedKeys may log in; at least one key or a Password is needed.
	AuthorizedKeys []ssh.PublicKey
	// Password, when set, enables SN27-compatible password login; only its
	// hash is written into the container.
	Password string
	// VolumePath, when set, is created as a directory (0755, root) in the
	// container's own filesystem before it starts. It is not a volume: it
	// lives in the container's writable layer, so the disk quota covers it
	// and Remove deletes it with the container.
	VolumePath string
	// Cache, when set, is a host directory bind-mounted read-write into
	// the container: a validator's Proof-of-GPU worker cache in its test
	// leases. It lies outside the container's writable layer, so no disk
	// quota of the engine covers it: the miner bounds it itself.
	Cache *BindMount
}

// BindMount is a host directory and the path where a container sees it.
type BindMount struct {
	// Source is an existing directory of the host, absolute and clean.
	Source string
	// Target follows ValidateVolumePath's rules and is not the lease's
	// VolumePath, above it or under it.
	Target string
}

// MinMemoryBytes is the smallest memory limit accepted for a lease.
const MinMemoryBytes = 64 << 20

// containerPort is the SSH port inside every lease container.
var containerPort = network.MustParsePort("22/tcp")

// gpuEnv is the variable the NVIDIA container toolkit reads to pick GPUs.
const gpuEnv = "NVIDIA_VISIBLE_DEVICES"

// checkSpec validates the parts of s that Create relies on, returning an
// EINVALID *market.Error.
func checkSpec(s Spec) error {
	if err := ValidateLeaseID(s.LeaseID); err != nil {
		return err
	}
	res := s.Resources
	if res.CPUs < 1 {
		return market.Errorf(market.EINVALID, "lease %s: at least one cpu is required", s.LeaseID)
	}
	if res.MemoryBytes < MinMemoryBytes {
		return market.Errorf(market.EINVALID, "lease %s: memory limit must be at least %d bytes", s.LeaseID, MinMemoryBytes)
	}
	if res.DiskBytes < 0 {
		return market.Errorf(market.EINVALID, "lease %s: negative disk size", s.LeaseID)
	}
	seen := make(map[string]bool, len(res.GPUs))
	for _, id := range res.GPUs {
		if !validGPUID(id) {
			return market.Errorf(market.EINVALID, "lease %s: invalid gpu device id %q", s.LeaseID, id)
		}
		if seen[id] {
			return market.Errorf(market.EINVALID, "lease %s: gpu %s listed twice", s.LeaseID, id)
		}
		seen[id] = true
	}
	if s.SSHPort < 1 || s.SSHPort > 65535 {
		return market.Errorf(market.EINVALID, "lease %s: ssh port %d out of range", s.LeaseID, s.SSHPort)
	}
	containerPorts := make([]int, 0, len(s.Ports))
	hostPorts := map[int]bool{s.SSHPort: true}
	for _, p := range s.Ports {
		if p.Host < 1 || p.Host > 65535 || hostPorts[p.Host] {
			return market.Errorf(market.EINVALID, "lease %s: host port %d out of range or repeated", s.LeaseID, p.Host)
		}
		hostPorts[p.Host] = true
		containerPorts = append(containerPorts, p.Container)
	}
	if err := market.ValidatePorts(containerPorts); err != nil {
		return fmt.Errorf("lease %s: %w", s.LeaseID, err)
	}
	if s.HostIP != "" {
		if _, err := parseHostIP(s.HostIP); err != nil {
			return err
		}
	}
	if len(s.AuthorizedKeys) == 0 && s.Password == "" {
		return market.Errorf(market.EINVALID, "lease %s: an ssh key or a password is required", s.LeaseID)
	}
	if len(s.AuthorizedKeys) > MaxSSHKeys {
		return market.Errorf(market.EINVALID, "lease %s: more than %d ssh keys", s.LeaseID, MaxSSHKeys)
	}
	if s.Password != "" && (len(s.Password) < MinPasswordLen || len(s.Password) > MaxPasswordLen) {
		return market.Errorf(market.EINVALID, "lease %s: password must be %d to %d characters", s.LeaseID, MinPasswordLen, MaxPasswordLen)
	}
	if s.VolumePath != "" {
		if err := ValidateVolumePath(s.VolumePath); err != nil {
			return err
		}
	}
	if c := s.Cache; c != nil {
		if !path.IsAbs(c.Source) || path.Clean(c.Source) != c.Source || c.Source == "/" {
			return market.Errorf(market.EINVALID, "lease %s: cache directory %q must be absolute and clean", s.LeaseID, c.Source)
		}
		if err := ValidateVolumePath(c.Target); err != nil {
			return fmt.Errorf("lease %s: cache mount: %w", s.LeaseID, err)
		}
		if v := s.VolumePath; v != "" && (v == c.Target || strings.HasPrefix(v, c.Target+"/") || strings.HasPrefix(c.Target, v+"/")) {
			return market.Errorf(market.EINVALID, "lease %s: volume path %s overlaps the cache mount %s", s.LeaseID, v, c.Target)
		}
	}
	return nil
}

// validGPUID reports whether id looks like an NVML index or UUID (or a
// MIG id): 1..128 of [A-Za-z0-9:._-], and not one of the toolkit's
// keywords (all, none, void), which would widen or change the device set.
func validGPUID(id string) bool {
	switch strings.ToLower(id) {
	case "all", "none", "void":
		return false
	}
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// parseHostIP parses the address the SSH port is published on.
func parseHostIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, market.Errorf(market.EINVALID, "invalid host ip %q", s)
	}
	return ip, nil
}

// containerName is the Docker name of a lease's container.
func containerName(instance, lease string) string {
	return "nicompute-" + instance + "-" + lease
}

// legacyVolumeName is the Docker name of the named volume earlier
// versions created for a lease's volume path; Remove still deletes it.
func legacyVolumeName(instance, lease string) string {
	return containerName(instance, lease) + "-data"
}

// shmSize is min(memory/2, max).
func shmSize(memory, max int64) int64 {
	return min(memory/2, max)
}

// noIPv6 are the sysctls that turn IPv6 off in a container's network
// namespace. A lease network without IPv6 still lets engines from Docker 26
// on give every container interface an IPv6 link-local address, through
// which the host's own link-local address and neighbouring leases answer
// whatever isolation the network promises for IPv4; these engines skip
// IPv6 for a container that turns it off.
var noIPv6 = map[string]string{
	"net.ipv6.conf.all.disable_ipv6":     "1",
	"net.ipv6.conf.default.disable_ipv6": "1",
}

// createOptions builds the container create request for s with image
// (already validated and resolved) on cfg. quota says whether to put the
// disk size into StorageOpt, netIPv6 whether the lease network gives
// containers IPv6 (if not, the container turns IPv6 off). It does no I/O,
// so the whole HostConfig of a GPU lease can be checked without a GPU.
func createOptions(cfg Config, s Spec, image string, quota, netIPv6 bool) client.ContainerCreateOptions {
	res := s.Resources
	hostIP := s.HostIP
	if hostIP == "" {
		hostIP = cfg.HostIP
	}
	ip, _ := parseHostIP(hostIP) // checked by New and checkSpec

	labels := map[string]string{
		LabelManaged: "true",
		LabelLease:   s.LeaseID,
		LabelMiner:   cfg.Instance,
		LabelSSHPort: strconv.Itoa(s.SSHPort),
	}

	gpus := "void" // CPU lease: the toolkit exposes no GPU and no driver
	var devices []container.DeviceRequest
	if len(res.GPUs) > 0 {
		gpus = strings.Join(res.GPUs, ",")
		devices = []container.DeviceRequest{{
			Driver:       "nvidia",
			DeviceIDs:    append([]string(nil), res.GPUs...),
			Capabilities: [][]string{{"gpu"}},
		}}
	}

	// The binary, and a test lease's cache: the volume path is a
	// directory of the container's own filesystem (written by Create), so
	// no volume escapes the quota.
	mounts := []mount.Mount{{
		Type:     mount.TypeBind,
		Source:   cfg.BinaryPath,
		Target:   sshd.BinaryPath,
		ReadOnly: true,
	}}
	if c := s.Cache; c != nil {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: c.Source, Target: c.Target})
	}

	var storage map[string]string
	if quota && res.DiskBytes > 0 {
		storage = map[string]string{"size": strconv.FormatInt(res.DiskBytes, 10)}
	}

	exposed := network.PortSet{containerPort: {}}
	bindings := network.PortMap{containerPort: {{HostIP: ip, HostPort: strconv.Itoa(s.SSHPort)}}}
	for _, p := range s.Ports {
		cp := network.MustParsePort(strconv.Itoa(p.Container) + "/tcp") // checked by checkSpec
		exposed[cp] = struct{}{}
		bindings[cp] = []network.PortBinding{{HostIP: ip, HostPort: strconv.Itoa(p.Host)}}
	}

	var sysctls map[string]string
	if !netIPv6 {
		sysctls = maps.Clone(noIPv6)
	}

	pids := cfg.PidsLimit
	init := true
	stop := int(cfg.StopTimeout.Seconds())
	return client.ContainerCreateOptions{
		Name: containerName(cfg.Instance, s.LeaseID),
		Config: &container.Config{
			Image:        image,
			User:         "0:0", // the server must read its root-only files
			Entrypoint:   sshd.Entrypoint(!cfg.DisableSSHForwarding),
			Env:          []string{gpuEnv + "=" + gpus},
			ExposedPorts: exposed,
			Labels:       labels,
			StopTimeout:  &stop,
		},
		HostConfig: &container.HostConfig{
			NetworkMode:   container.NetworkMode(cfg.Network),
			PortBindings:  bindings,
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
			LogConfig: container.LogConfig{
				Type:   "json-file",
				Config: map[string]string{"max-size": "10m", "max-file": "3"},
			},
			IpcMode:     container.IPCModePrivate,
			Privileged:  false,
			SecurityOpt: []string{"no-new-privileges:true"},
			CapDrop:     []string{"NET_RAW", "MKNOD"},
			Sysctls:     sysctls,
			StorageOpt:  storage,
			ShmSize:     shmSize(res.MemoryBytes, cfg.MaxShm),
			Init:        &init,
			Mounts:      mounts,
			Resources: container.Resources{
				NanoCPUs:       int64(res.CPUs) * 1e9,
				Memory:         res.MemoryBytes,
				MemorySwap:     res.MemoryBytes,
				PidsLimit:      &pids,
				DeviceRequests: devices,
			},
		},
		NetworkingConfig: &network.NetworkingConfig{
			EndpointsConfig: map[string]*network.EndpointSettings{cfg.Network: {}},
		},
	}
}
