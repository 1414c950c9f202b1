package doctor

import (
	"context"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
)

// Probes observe the machine and the chain. Every method may fail; a
// check turns a failure into a verdict with its reason.
type Probes interface {
	// Docker describes the engine.
	Docker(ctx context.Context) (Docker, error)
	// GPUs lists the GPUs the NVIDIA driver sees (nvidia-smi).
	GPUs(ctx context.Context) ([]string, error)
	// PacketFilter describes the firewall tables Docker's isolation needs.
	PacketFilter(ctx context.Context) (PacketFilter, error)
	// Listening reports whether something accepts TCP connections on port
	// of this machine.
	Listening(ctx context.Context, port int) bool
	// UFW reports ufw's state; installed false when there is no ufw.
	UFW(ctx context.Context) (UFW, error)
	// OutboundIP is the address of the default route.
	OutboundIP() (string, error)
	// Chain reads the subnet.
	Chain(ctx context.Context) (Chain, error)
	// DiskFree returns the free and total bytes of path's filesystem.
	DiskFree(path string) (free, total uint64, err error)
	// Now is the local clock.
	Now() time.Time

	// ValidatorResults reads the validator's results the API offers from.
	ValidatorResults(ctx context.Context) (ValidatorResults, error)
	// Certificate loads the API's TLS certificate with its key.
	Certificate(ctx context.Context) (Certificate, error)
	// File describes the file at path (Exists false when there is none).
	File(path string) (File, error)
	// Token authenticates the token in Config.TokenFile against the API's
	// store.
	Token(ctx context.Context) (Token, error)
}

// Docker is what doctor needs of the engine.
type Docker struct {
	ServerVersion string
	APIVersion    string
	StorageDriver string
	BackingFS     string
	// DiskQuota: the storage driver can bound a container's disk.
	DiskQuota     bool
	NvidiaRuntime bool
	CDI           bool
	Warnings      []string
}

// PacketFilter describes the host firewall.
type PacketFilter struct {
	// Backend is "iptables-nft", "iptables-legacy" or "nft" ("" unknown).
	Backend string
	// DockerChains: the DOCKER and DOCKER-ISOLATION chains exist, so
	// Docker manages the filter that isolates bridge networks.
	DockerChains bool
	// SecurityTable: the kernel offers the security table, where the
	// miner's guard chains keep lease traffic confined while the engine
	// re-inserts its FORWARD → DOCKER-USER jump.
	SecurityTable bool
	// RawTable: the kernel offers the raw table, where the miner drops
	// packets with forged sources before connection tracking.
	RawTable bool
}

// UFW is ufw's state.
type UFW struct {
	Installed, Active bool
	// Allowed lists the allowed rules ("8091/tcp", "4444:4543/tcp").
	Allowed []string
}

// Chain is the subnet as the chain reports it.
type Chain struct {
	Metagraph *subnet.Metagraph
	Hyper     subnet.Hyperparameters
	// Time is the chain's clock and Uncertainty how far it may honestly
	// be from real time (a block's timestamp lags up to a block time).
	Time        time.Time
	Uncertainty time.Duration
}
