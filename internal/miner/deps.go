package miner

import (
	"context"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/subnet"
)

// Runtime runs lease containers: internal/docker in production (adapted by
// the wiring in cmd/nicompute), a fake in tests. Lease ids name containers;
// a runtime only sees its own miner's containers. Every error carries a
// market code: ENOTFOUND (no container for the lease), ECONFLICT (state
// forbids it, port taken), EINVALID (refused spec), EUNAVAILABLE (engine
// unreachable), EINTERNAL.
type Runtime interface {
	// Create creates, without starting, the container of a lease; on
	// failure nothing is left behind.
	Create(ctx context.Context, s ContainerSpec) (Container, error)
	// Start starts it (a running container is not an error).
	Start(ctx context.Context, lease string) error
	// Restart stops and starts it, keeping its files.
	Restart(ctx context.Context, lease string) error
	// Pause freezes its processes; Unpause thaws them.
	Pause(ctx context.Context, lease string) error
	Unpause(ctx context.Context, lease string) error
	// SetAuthorizedKeys replaces the keys that may log in; open sessions
	// stay open.
	SetAuthorizedKeys(ctx context.Context, lease string, keys []ssh.PublicKey) error
	// Remove deletes the container with its filesystem; a missing
	// container is not an error.
	Remove(ctx context.Context, lease string) error
	// Inspect returns the lease's container. Errors: ENOTFOUND.
	Inspect(ctx context.Context, lease string) (Container, error)
	// List returns every container of this miner, in any state.
	List(ctx context.Context) ([]Container, error)
	// HasImage reports whether image (a canonical reference) is present.
	// Errors: EUNAVAILABLE.
	HasImage(ctx context.Context, image string) (bool, error)
	// PullImage pulls image, calling progress (when not nil) as it goes;
	// it may take minutes. Errors: ENOTFOUND (the registry does not have
	// it), EUNAVAILABLE (engine or registry unreachable).
	PullImage(ctx context.Context, image string, progress func(PullProgress)) error
	// DiskQuota reports whether the engine itself holds a container to its
	// disk size (writes past it fail with ENOSPC).
	DiskQuota(ctx context.Context) (bool, error)
	// DiskUsage returns the bytes each of this miner's lease containers
	// holds on the host's disk, by lease id: its writable layer (which the
	// engine may bound), files it deleted but holds open, and what it
	// wrote outside the layer; market.DiskUnmeasured for a lease whose
	// files could not be measured. It may take a while on large layers.
	DiskUsage(ctx context.Context) (map[string]int64, error)
	// Ping checks the engine answers. EngineVersion returns its version.
	Ping(ctx context.Context) error
	EngineVersion(ctx context.Context) (string, error)

	// The runtime also checks the renter-supplied strings it will be
	// given, before the miner reserves anything. Errors are EINVALID.

	// ValidateImage returns the canonical form of an image reference.
	ValidateImage(ref string) (string, error)
	// ParseSSHKeys parses authorized_keys text.
	ParseSSHKeys(text string) ([]ssh.PublicKey, error)
	// ValidateVolumePath checks a container path for the lease's volume
	// directory.
	ValidateVolumePath(path string) error
	// CheckDockerfile refuses a renter Dockerfile (empty text passes).
	CheckDockerfile(text string) error
}

// ContainerSpec describes the container of one lease.
type ContainerSpec struct {
	LeaseID   string
	Image     string
	Resources market.Resources
	SSHPort   int
	// Ports are extra container ports published on host ports.
	Ports []market.PortMap
	// AuthorizedKeys may log in as root; Password, when set, enables
	// SN27-compatible password login (the runtime stores only its hash).
	AuthorizedKeys []ssh.PublicKey
	Password       string
	// VolumePath, when set, is created as a directory in the container's
	// own filesystem (not a volume: the lease's disk quota covers it).
	VolumePath string
	// CacheDir, when set, is a host directory the container sees
	// read-write at CacheTarget: a validator's worker cache in its test
	// leases (cache.go).
	CacheDir, CacheTarget string
}

// Container states the miner acts on (Docker's names).
const (
	ContainerCreated = "created"
	ContainerRunning = "running"
	ContainerPaused  = "paused"
	ContainerExited  = "exited"
	ContainerDead    = "dead"
)

// Container is a lease's container as the runtime reports it.
type Container struct {
	ID      string
	LeaseID string
	Image   string
	State   string
	SSHPort int
	Created time.Time
}

// Chain is what the miner reads from and writes to the chain.
// *local.Client and the subtensor client implement it.
type Chain interface {
	CurrentBlock(ctx context.Context) (uint64, error)
	Metagraph(ctx context.Context, netuid subnet.NetUID) (*subnet.Metagraph, error)
	ServeAxon(ctx context.Context, hotkey subnet.Signer, netuid subnet.NetUID, axon subnet.AxonInfo) error
}

// LeaseStore persists leases; *sqlite.LeaseStore implements it. A live
// lease holds its port, owner slot and GPUs exclusively in the store too.
type LeaseStore interface {
	// InsertLease records a new live lease. Errors: ECONFLICT (id, port,
	// owner or a GPU taken), EINVALID.
	InsertLease(ctx context.Context, l market.Lease) error
	// SetLeaseContainer records the container id of a creating lease.
	SetLeaseContainer(ctx context.Context, id, containerID string) error
	// ActivateLease moves a lease from creating to active.
	ActivateLease(ctx context.Context, id string) error
	// EndLease ends a live lease. Errors: ENOTFOUND, ECONFLICT (ended).
	EndLease(ctx context.Context, id, reason string, at time.Time) (market.Lease, error)
	// ExtendLease moves a live lease's expiry later (never earlier).
	// Errors: ENOTFOUND, ECONFLICT (ended).
	ExtendLease(ctx context.Context, id string, expires time.Time) (market.Lease, error)
	// Lease returns a lease in any state. Errors: ENOTFOUND.
	Lease(ctx context.Context, id string) (market.Lease, error)
	// LiveLeases returns the creating and active leases.
	LiveLeases(ctx context.Context) ([]market.Lease, error)
}

// SpecsSource measures the machine; *hostinfo.Collector implements it.
type SpecsSource interface {
	Collect(ctx context.Context) (market.Specs, error)
	// Disk measures only the filesystem holding the containers, quickly
	// enough to run before every lease decision.
	Disk(ctx context.Context) (market.DiskSpecs, error)
}

// NetworkGuard confines the lease network with the host's packet filter so
// that leases reach the internet but not the host, its private networks,
// link-local addresses (the cloud metadata service) or multicast; the
// wiring in cmd/nicompute adapts internal/egress to the runtime's lease
// network. Errors say why the filter cannot be in force.
type NetworkGuard interface {
	// Check reports, changing nothing, whether Confine can work.
	Check(ctx context.Context) error
	// Confine installs the filter, or repairs it; it is idempotent.
	Confine(ctx context.Context) error
	// Release removes the filter once no container of any miner is left
	// on the lease network.
	Release(ctx context.Context) error
	// Describe names the filter and what it allows, for logs and specs.
	Describe(ctx context.Context) (detail string, allowed []string)
}

// Deps are the adapters a Service runs on.
type Deps struct {
	Chain   Chain
	Runtime Runtime
	Store   LeaseStore
	Specs   SpecsSource
	Guard   NetworkGuard
}
