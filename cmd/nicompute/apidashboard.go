package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nicompute/nicompute/internal/dashboard"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/sqlite"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/validator"
)

var _ dashboard.Sessions = (*rental.Tokens)(nil)

// endedShown is how many ended allocations the operator's table keeps
// below the live ones.
const endedShown = 20

// apiPageTTL is how long the page's shared part (subnet, miners, charts'
// data) is reused: anyone may load the page, and each build reads the
// chain's cache and the validator's store.
const apiPageTTL = 5 * time.Second

// pageCache reuses one build of the shared part of the API's page for
// apiPageTTL; concurrent views wait for one build.
type pageCache struct {
	build func(ctx context.Context) (*dashboard.APIData, error)
	// mu protects the following.
	mu sync.Mutex
	d  *dashboard.APIData
	at time.Time
}

// get returns a copy of the shared part, built again when older than
// apiPageTTL.
func (c *pageCache) get(ctx context.Context) (*dashboard.APIData, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.d == nil || time.Since(c.at) > apiPageTTL {
		d, err := c.build(ctx)
		if err != nil {
			return nil, err
		}
		c.d, c.at = d, time.Now()
	}
	d := *c.d
	return &d, nil
}

// apiDashboard returns the allocation API's dashboard, to mount at
// dashboardPath, and the sampler of its incentive history (run until its
// context ends). The page reads the service (metagraph, standings,
// allocations), the validator's store (scores, results, sweeps, commits)
// and the chain's tempo; allocations only for a signed-in operator.
func apiDashboard(svc *rental.Service, vstore *sqlite.ValidatorStore, ch apiChain, netuid subnet.NetUID, hotkey string, log *slog.Logger) (http.Handler, func(context.Context)) {
	hist := dashboard.NewHistory(0)
	tempo := &tempoCache{chain: ch, netuid: netuid}
	shared := &pageCache{build: func(ctx context.Context) (*dashboard.APIData, error) {
		d := &dashboard.APIData{NetUID: uint16(netuid), Hotkey: hotkey, Tempo: tempo.get(ctx)}
		if mg, err := svc.Metagraph(ctx); err == nil {
			d.ChainOK, d.Block = svc.ChainReachable(), mg.Block
			if n, ok := mg.ByHotkey(hotkey); ok {
				d.Registered, d.UID, d.Permit = true, uint16(n.UID), n.ValidatorPermit
			}
			if err := minerRows(ctx, svc, d); err != nil {
				return nil, err
			}
		}
		return d, validatorFacts(ctx, vstore, d)
	}}
	data := func(ctx context.Context, admin bool) (*dashboard.APIData, error) {
		d, err := shared.get(ctx)
		if err != nil {
			return nil, err
		}
		d.Incentives = hist.Samples()
		if !admin {
			return d, nil
		}
		list, err := svc.OperatorAllocations(ctx, endedShown)
		if err != nil {
			return nil, err
		}
		mg, _ := svc.Metagraph(ctx)
		for _, a := range list {
			d.Allocations = append(d.Allocations, allocationRow(a, mg))
		}
		return d, nil
	}
	page := dashboard.NewAPI(data, svc.Tokens(), dashboard.Options{Base: dashboardPath, Log: log})
	sample := func(ctx context.Context) {
		hist.Run(ctx, sampleEvery, func(ctx context.Context) (dashboard.Sample, bool) {
			mg, err := svc.Metagraph(ctx)
			if err != nil {
				return dashboard.Sample{}, false
			}
			return incentiveSample(mg, hotkey), true
		})
	}
	return page, sample
}

// minerRows fills d's miner table from the service's standings.
func minerRows(ctx context.Context, svc *rental.Service, d *dashboard.APIData) error {
	st, err := svc.Standings(ctx)
	if err != nil {
		return err
	}
	for _, m := range st {
		row := dashboard.MinerRow{UID: uint16(m.UID), Hotkey: m.Hotkey, GPUs: "-", Score: m.Score, Incentive: m.Incentive, Rented: m.Rented}
		if m.Count > 0 {
			row.GPUs = fmt.Sprintf("%d × %s", m.Count, m.Model)
		}
		if m.Last != nil {
			row.LastResult, row.LastBlock, row.Reason = string(m.Last.Outcome), m.Last.Block, m.Last.Reason
		}
		if m.Offered {
			d.Offered++
		}
		d.Miners = append(d.Miners, row)
	}
	return nil
}

// validatorFacts fills what d shows of the validator's store: its last
// sweep and weights submission, its pending commits, the score history and
// the Proof-of-GPU results.
func validatorFacts(ctx context.Context, vstore *sqlite.ValidatorStore, d *dashboard.APIData) error {
	if v, ok, err := vstore.State(ctx, validator.StateLastSweep); err != nil {
		return err
	} else if ok && v > 0 {
		d.LastSweep = uint64(v)
	}
	pending, err := vstore.Commits(ctx, market.CommitPending)
	if err != nil {
		return err
	}
	d.PendingCommits = len(pending)
	if d.Scores, err = scorePoints(ctx, vstore); err != nil {
		return err
	}
	if n := len(d.Scores); n > 0 {
		d.LastWeights = d.Scores[n-1].Block
	}
	results, err := vstore.Results(ctx, validator.DefaultKeepResults)
	if err != nil {
		return err
	}
	for _, hist := range results {
		for _, r := range hist {
			d.Results = append(d.Results, dashboard.ResultPoint{Block: r.Block, Outcome: string(r.Outcome)})
		}
	}
	sort.Slice(d.Results, func(i, j int) bool { return d.Results[i].Block < d.Results[j].Block })
	return nil
}

// scorePoints reads the scores behind the newest weights submissions,
// oldest block first.
func scorePoints(ctx context.Context, vstore *sqlite.ValidatorStore) ([]dashboard.ScorePoint, error) {
	scores, err := vstore.RecentScores(ctx, scoreSubmissions)
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.ScorePoint, 0, len(scores))
	for _, s := range scores {
		out = append(out, dashboard.ScorePoint{Block: s.Block, UID: uint16(s.UID), Score: s.Score})
	}
	return out, nil
}

// allocationRow is a's row of the operator's table (mg, when known, names
// its miner's uid).
func allocationRow(a rental.Allocation, mg *subnet.Metagraph) dashboard.AllocationRow {
	r := dashboard.AllocationRow{ID: a.ID, Tenant: a.Tenant, State: string(a.State), EndReason: a.EndReason,
		GPUModel: a.GPUModel, GPUCount: a.GPUCount, Miner: a.MinerHotkey, Host: a.Host, Port: a.Port,
		Created: a.CreatedAt, Expires: a.ExpiresAt, Note: a.Note}
	if a.CheckedAt != nil {
		r.Checked = *a.CheckedAt
	}
	if a.EndedAt != nil {
		r.Ended = *a.EndedAt
	}
	if mg != nil {
		if n, ok := mg.ByHotkey(a.MinerHotkey); ok {
			r.MinerUID = int(n.UID)
		}
	}
	return r
}

// incentiveSample is the incentive of every neuron of mg but self's, keyed
// by uid.
func incentiveSample(mg *subnet.Metagraph, self string) dashboard.Sample {
	s := dashboard.Sample{Block: mg.Block, At: time.Now(), Values: map[string]float64{}}
	for _, n := range mg.Neurons {
		if n.Hotkey != self {
			s.Values[strconv.Itoa(int(n.UID))] = n.Incentive
		}
	}
	return s
}
