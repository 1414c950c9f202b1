package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// MinerData is what the miner's page shows; the miner command fills it
// from the running service.
type MinerData struct {
	NetUID     uint16
	UID        uint16
	Hotkey     string
	Block      uint64
	Registered bool
	// Axon is the address on chain ("ip:port", or "not served").
	Axon       string
	Incentive  float64
	Emission   float64 // TAO per epoch
	Stake      float64 // TAO
	Validators int
	Capacity   Resources
	Free       Resources
	Leases     []LeaseRow
	Requests   []RequestRow
	// History holds sampled "incentive" and "emission" values.
	History []Sample
}

// Resources are leasable resources; GPUs by name.
type Resources struct {
	GPUs        []string
	CPUs        int
	MemoryBytes int64
	DiskBytes   int64
}

// LeaseRow is one live lease. ID is abbreviated by the caller if need be;
// Owner is the validator hotkey that holds it (never the renter's key).
type LeaseRow struct {
	ID          string
	State       string
	Testing     bool
	Owner       string
	GPUs        int
	CPUs        int
	MemoryBytes int64
	SSHPort     int
	Created     time.Time
	Expires     time.Time
}

// RequestRow is the last Allocate outcome of one validator.
type RequestRow struct {
	Hotkey, Action, Result, Message string
	At                              time.Time
}

// NewMiner returns the miner page handler; data is called for every
// request.
func NewMiner(data func(context.Context) (*MinerData, error), opt Options) http.Handler {
	opt.setDefaults()
	return &handler{opt: opt, tmpl: parse("miner.html"), build: func(r *http.Request) (page, error) {
		d, err := data(r.Context())
		if err != nil {
			return page{}, err
		}
		sub := "not registered"
		if d.Registered {
			sub = fmt.Sprintf("uid %d", d.UID)
		}
		return page{
			Title:    fmt.Sprintf("nicompute miner · subnet %d", d.NetUID),
			Subtitle: fmt.Sprintf("%s · block %d · %d live leases", sub, d.Block, len(d.Leases)),
			Data:     d,
			Charts: []Chart{
				sampledChart("Incentive", d.History, func(string) string { return "incentive" }, "", "incentive"),
				sampledChart("Emission (τ per epoch)", d.History, func(string) string { return "emission" }, "tao", "emission"),
			},
		}, nil
	}}
}
