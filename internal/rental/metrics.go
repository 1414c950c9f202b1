package rental

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nicompute/nicompute/internal/market"
)

// metrics are the allocation service's series, registered on
// Config.Metrics. Labels take values from fixed sets: an action name, a
// problem code, a state, an end reason. A nil *metrics records nothing.
type metrics struct {
	actions    *prometheus.CounterVec   // action, result
	seconds    *prometheus.HistogramVec // action
	ended      *prometheus.CounterVec   // reason
	checks     *prometheus.CounterVec   // result
	flips      *prometheus.CounterVec   // to
	deliveries *prometheus.CounterVec   // result
	stateDesc  *prometheus.Desc
	s          *Service
}

// Labels of the metrics.
const (
	resultOK       = "ok"
	resultReplayed = "replayed"
	checkOK        = "ok"
	checkFailing   = "failing"
	checkLost      = "lost"
)

// allocationBuckets span a refusal from a loopback miner (~10 ms) to a
// lease created after an image pull and a few candidates (minutes).
var allocationBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// scrapeTimeout bounds the store read of a scrape.
const scrapeTimeout = 5 * time.Second

func newMetrics(reg prometheus.Registerer, s *Service) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		s: s,
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicompute_api_allocations_total",
			Help: "Allocation requests by action (allocate, extend, restart, pause, unpause, exchange_key, end) and result (ok, replayed, or the problem code).",
		}, []string{"action", "result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nicompute_api_allocation_duration_seconds",
			Help:    "Time to answer an allocation request, miners' calls included, by action.",
			Buckets: allocationBuckets,
		}, []string{"action"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicompute_api_allocations_ended_total",
			Help: "Allocations ended, by reason (deleted, expired, gone, lost).",
		}, []string{"reason"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicompute_api_health_checks_total",
			Help: "Health checks of running allocations by result (ok, failing: the miner or the SSH port did not answer, lost: the miner holds no lease).",
		}, []string{"result"}),
		flips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicompute_api_health_flips_total",
			Help: "Allocations whose health changed, by the state they went to (offline, online).",
		}, []string{"to"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicompute_api_webhook_deliveries_total",
			Help: "Webhook delivery attempts by result (delivered, retrying, failed: given up after the last attempt).",
		}, []string{"result"}),
		stateDesc: prometheus.NewDesc("nicompute_api_allocations",
			"Allocations not ended, by state (allocating, online, offline, ending).", []string{"state"}, nil),
	}
	head := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "nicompute_chain_block",
		Help: "The chain head as the API last read it.",
	}, func() float64 { return float64(s.mg.block()) })
	for _, c := range []prometheus.Collector{m.actions, m.seconds, m.ended, m.checks, m.flips, m.deliveries, head, stateCollector{m}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register api metrics: %w", err)
		}
	}
	for _, to := range []string{string(market.AllocOffline), string(market.AllocOnline)} {
		m.flips.WithLabelValues(to)
	}
	return m, nil
}

// stateCollector counts the live allocations by state at scrape time,
// from the store (orphans, the hidden attempts being released, are left
// out).
type stateCollector struct{ m *metrics }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.m.stateDesc }

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	live, err := c.m.s.deps.Store.LiveAllocations(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.m.stateDesc, fmt.Errorf("read allocations: %w", err))
		return
	}
	n := map[market.AllocationState]int{}
	for _, a := range live {
		if !a.Orphan {
			n[a.State]++
		}
	}
	for _, st := range []market.AllocationState{market.AllocAllocating, market.AllocOnline, market.AllocOffline, market.AllocEnding} {
		ch <- prometheus.MustNewConstMetric(c.m.stateDesc, prometheus.GaugeValue, float64(n[st]), string(st))
	}
}

// resultLabel is the result label of a request that ended with err: ok,
// the problem's stable code, or its market kind.
func resultLabel(err error) string {
	if err == nil {
		return resultOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return market.ErrorCode(err)
}

// request records a request of action that started at start and ended
// with result.
func (m *metrics) request(action string, start time.Time, result string) {
	if m == nil {
		return
	}
	m.actions.WithLabelValues(action, result).Inc()
	m.seconds.WithLabelValues(action).Observe(time.Since(start).Seconds())
}

// endedAllocation records an allocation's end.
func (m *metrics) endedAllocation(reason string) {
	if m == nil {
		return
	}
	if reason == "" {
		reason = market.EndReasonUnknown
	}
	m.ended.WithLabelValues(reason).Inc()
}

// checked records one health check and the state it flipped to, if any.
func (m *metrics) checked(result string, flipped market.AllocationState) {
	if m == nil {
		return
	}
	m.checks.WithLabelValues(result).Inc()
	if flipped != "" {
		m.flips.WithLabelValues(string(flipped)).Inc()
	}
}

// delivered records one webhook delivery attempt.
func (m *metrics) delivered(result string) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(result).Inc()
}
