package miner

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nicompute/nicompute/internal/market"
)

// metrics are the nicompute_miner_* series, registered on the injected
// registerer (devnet runs several miners, each with its own registry or
// const labels). A nil *metrics records nothing.
type metrics struct {
	requests  *prometheus.CounterVec   // action, result
	latency   *prometheus.HistogramVec // action
	allocated *prometheus.CounterVec   // testing
	ended     *prometheus.CounterVec   // reason
	leases    *prometheus.GaugeVec     // state
	axon      *prometheus.CounterVec   // synapse, status
	paused    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, head func() uint64) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicompute_miner_allocations_total",
			Help: "Allocate requests by action (the request's mode: check, allocate, status, deallocate, docker action) and result (ok or an error code).",
		}, []string{"action", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nicompute_miner_allocation_duration_seconds",
			Help:    "Time to serve an Allocate request, by action.",
			Buckets: []float64{0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"action"}),
		allocated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicompute_miner_leases_allocated_total",
			Help: "Leases allocated, by whether they are Proof-of-GPU test leases.",
		}, []string{"testing"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicompute_miner_leases_ended_total",
			Help: "Leases ended, by reason.",
		}, []string{"reason"}),
		leases: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nicompute_miner_leases",
			Help: "Live leases by state, as of the last sweep.",
		}, []string{"state"}),
		axon: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicompute_miner_axon_requests_total",
			Help: "Axon requests by synapse and HTTP status.",
		}, []string{"synapse", "status"}),
		paused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nicompute_miner_leases_disk_paused_total",
			Help: "Leases paused for writing past their disk size.",
		}),
	}
	block := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "nicompute_chain_block",
		Help: "The block of the metagraph the miner's policy decides with.",
	}, func() float64 { return float64(head()) })
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.allocated, m.ended, m.leases, m.axon, m.paused, block} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observeRequest(mode string, err error, d time.Duration) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = market.ErrorCode(err)
	}
	m.requests.WithLabelValues(mode, result).Inc()
	m.latency.WithLabelValues(mode).Observe(d.Seconds())
}

func (m *metrics) observeAxon(synapse string, status int, _ time.Duration) {
	if m == nil {
		return
	}
	if synapse == "" {
		synapse = "unknown"
	}
	m.axon.WithLabelValues(synapse, strconv.Itoa(status)).Inc()
}

func (m *metrics) leaseAllocated(testing bool) {
	if m == nil {
		return
	}
	m.allocated.WithLabelValues(strconv.FormatBool(testing)).Inc()
}

func (m *metrics) leaseEnded(reason string) {
	if m == nil {
		return
	}
	m.ended.WithLabelValues(reason).Inc()
}

func (m *metrics) diskPaused() {
	if m == nil {
		return
	}
	m.paused.Inc()
}

func (m *metrics) setLeases(ctx context.Context, store LeaseStore) {
	if m == nil {
		return
	}
	live, err := store.LiveLeases(ctx)
	if err != nil {
		return
	}
	counts := map[market.LeaseState]int{market.LeaseCreating: 0, market.LeaseActive: 0}
	for _, l := range live {
		counts[l.State]++
	}
	for st, n := range counts {
		m.leases.WithLabelValues(string(st)).Set(float64(n))
	}
}
