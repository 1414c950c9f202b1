package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nicompute/nicompute/internal/dashboard"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/sqlite"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/validator"
)

// sampleEvery is how often a dashboard's history reads its daemon.
const sampleEvery = 5 * time.Second

// scoreSubmissions is how many weights submissions the score chart shows.
const scoreSubmissions = 60

// tempoCache reads the subnet's tempo at most once a minute.
type tempoCache struct {
	chain interface {
		Hyperparameters(ctx context.Context, netuid subnet.NetUID) (subnet.Hyperparameters, error)
	}
	netuid subnet.NetUID
	// mu protects the following.
	mu    sync.Mutex
	tempo uint16
	at    time.Time
}

func (t *tempoCache) get(ctx context.Context) uint16 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if time.Since(t.at) > time.Minute {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if hp, err := t.chain.Hyperparameters(cctx, t.netuid); err == nil {
			t.tempo, t.at = hp.Tempo, time.Now()
		}
		cancel()
	}
	return t.tempo
}

// validatorDashboard serves the validator's page on o: its status, miner
// table, stored scores and a sampled incentive history.
func validatorDashboard(o *observer, v *runningValidator, ch validator.Chain, netuid subnet.NetUID) {
	hist := dashboard.NewHistory(0)
	store := sqlite.NewValidatorStore(v.db)
	tempo := &tempoCache{chain: ch, netuid: netuid}
	page := dashboard.NewValidator(func(ctx context.Context) (*dashboard.ValidatorData, error) {
		st := v.Status()
		d := &dashboard.ValidatorData{
			NetUID: uint16(st.NetUID), Block: st.Block, Tempo: tempo.get(ctx), UID: uint16(st.UID), Hotkey: st.Hotkey,
			Permit: st.Permit, ChainOK: st.ChainOK, LastSweep: st.LastSweep, Sweeping: st.Sweeping,
			PoGInterval: st.PoGInterval, NextWeights: st.NextWeights,
			Weights: dashboard.Weights{Mode: st.Weights.Mode, Result: st.Weights.Result, Error: st.Weights.Error,
				Block: st.Weights.Block, LastOK: st.Weights.LastOK, At: st.Weights.At, Summary: st.Weights.Summary},
			Incentives: hist.Samples(),
		}
		incentive := map[uint16]float64{}
		if mg := v.Metagraph(); mg != nil {
			for _, n := range mg.Neurons {
				incentive[uint16(n.UID)] = n.Incentive
			}
		}
		for _, m := range v.Miners() {
			d.Miners = append(d.Miners, dashboard.MinerRow{UID: m.UID, Hotkey: m.Hotkey, GPUs: m.GPUs, Score: m.Score,
				Incentive: incentive[m.UID], Rented: m.Rented, LastResult: m.LastResult, LastBlock: m.LastBlock, Reason: m.Reason})
		}
		var err error
		if d.Scores, err = scorePoints(ctx, store); err != nil {
			return nil, err
		}
		for _, r := range v.Results() {
			d.Results = append(d.Results, dashboard.ResultPoint{Block: r.Block, Outcome: string(r.Outcome)})
		}
		return d, nil
	}, dashboard.Options{MetricsURL: "/metrics", Log: o.log})
	o.dashboard(page, func(ctx context.Context) {
		hist.Run(ctx, sampleEvery, func(context.Context) (dashboard.Sample, bool) {
			mg := v.Metagraph()
			if mg == nil {
				return dashboard.Sample{}, false
			}
			return incentiveSample(mg, v.Status().Hotkey), true
		})
	})
}

// minerDashboard serves the miner's page on o: its standing, capacity,
// live leases, last requests and a sampled incentive/emission history.
func minerDashboard(o *observer, m *runningMiner) {
	hist := dashboard.NewHistory(0)
	page := dashboard.NewMiner(func(ctx context.Context) (*dashboard.MinerData, error) {
		st := m.Status()
		n := st.Neuron
		d := &dashboard.MinerData{
			NetUID: uint16(st.NetUID), UID: uint16(n.UID), Hotkey: st.Hotkey, Block: st.Block, Registered: st.Registered,
			Axon: "not served", Incentive: n.Incentive, Emission: n.Emission.TAO(), Stake: n.Stake.TAO(),
			Validators: st.Validators, Capacity: resources(st.Capacity), History: hist.Samples(),
		}
		if n.Axon.Served() {
			d.Axon = n.Axon.Addr()
		}
		free, err := m.Free(ctx)
		if err != nil {
			return nil, err
		}
		d.Free = resources(free)
		leases, err := m.Leases(ctx)
		if err != nil {
			return nil, err
		}
		for _, l := range leases {
			d.Leases = append(d.Leases, dashboard.LeaseRow{ID: shortID(l.ID), State: string(l.State), Testing: l.Testing,
				Owner: l.Owner.Hotkey, GPUs: len(l.Resources.GPUs), CPUs: l.Resources.CPUs, MemoryBytes: l.Resources.MemoryBytes,
				SSHPort: l.SSHPort, Created: l.CreatedAt, Expires: l.ExpiresAt})
		}
		for _, r := range m.Requests() {
			d.Requests = append(d.Requests, dashboard.RequestRow{Hotkey: r.Hotkey, Action: r.Action, Result: r.Result, Message: r.Message, At: r.At})
		}
		return d, nil
	}, dashboard.Options{MetricsURL: "/metrics", Log: o.log})
	o.dashboard(page, func(ctx context.Context) {
		hist.Run(ctx, sampleEvery, func(context.Context) (dashboard.Sample, bool) {
			st := m.Status()
			if !st.Registered {
				return dashboard.Sample{}, false
			}
			return dashboard.Sample{Block: st.Block, At: time.Now(), Values: map[string]float64{
				"incentive": st.Neuron.Incentive, "emission": st.Neuron.Emission.TAO()}}, true
		})
	})
}

func resources(c market.Capacity) dashboard.Resources {
	r := dashboard.Resources{CPUs: c.CPUs, MemoryBytes: c.MemoryBytes, DiskBytes: c.DiskBytes}
	for _, g := range c.GPUs {
		r.GPUs = append(r.GPUs, fmt.Sprintf("%d: %s", g.Index, g.Name))
	}
	return r
}

// shortID shows the first 8 characters of a lease id: enough to tell
// leases apart on the page.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8] + "…"
	}
	return id
}
