package validator

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nicompute/nicompute/internal/pog"
	"github.com/nicompute/nicompute/internal/subnet"
)

// metrics are the validator's series, registered on Config.Metrics. A nil
// *metrics records nothing.
type metrics struct {
	runs     *prometheus.CounterVec   // result, reason
	seconds  *prometheus.HistogramVec // result
	weights  *prometheus.CounterVec   // mode, result
	lastSet  prometheus.Gauge
	lastSwp  prometheus.Gauge
	pending  prometheus.Gauge
	scoreDsc *prometheus.Desc
	s        *Service
}

func newMetrics(reg prometheus.Registerer, s *Service) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		s: s,
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicompute_validator_pog_runs_total",
			Help: "Finished Proof-of-GPU tests by result (pass, fail, unreachable) and reason code.",
		}, []string{"result", "reason"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nicompute_validator_pog_duration_seconds",
			Help:    "Time to test one miner, retries included, by result.",
			Buckets: []float64{1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200},
		}, []string{"result"}),
		weights: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicompute_validator_weights_submissions_total",
			Help: "Weights submissions by mode (set or commit) and result (ok or the chain's error code).",
		}, []string{"mode", "result"}),
		lastSet: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nicompute_validator_weights_last_block",
			Help: "Block at which weights were last accepted by the chain.",
		}),
		lastSwp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nicompute_validator_pog_last_sweep_block",
			Help: "Block that started the last finished Proof-of-GPU sweep.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nicompute_validator_pending_commits",
			Help: "Weights commits (commit-reveal) the chain has not been seen to reveal yet; at 10 the validator commits nothing more until they settle.",
		}),
		scoreDsc: prometheus.NewDesc("nicompute_validator_miner_score",
			"Each miner's current score (0 to 1) as the next weights would use it.", []string{"uid"}, nil),
	}
	head := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "nicompute_chain_block",
		Help: "The chain head as the validator last read it.",
	}, func() float64 { return float64(s.snapshotHead()) })
	for _, c := range []prometheus.Collector{m.runs, m.seconds, m.weights, m.lastSet, m.lastSwp, m.pending, head, scoreCollector{m}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register validator metrics: %w", err)
		}
	}
	return m, nil
}

// scoreCollector exports the miners' scores at scrape time (at most one
// series per uid).
type scoreCollector struct{ m *metrics }

func (c scoreCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.m.scoreDsc }

func (c scoreCollector) Collect(ch chan<- prometheus.Metric) {
	for _, ms := range c.m.s.scores() {
		ch <- prometheus.MustNewConstMetric(c.m.scoreDsc, prometheus.GaugeValue, ms.Score, strconv.Itoa(int(ms.Neuron.UID)))
	}
}

func (m *metrics) result(r Result) {
	if m == nil {
		return
	}
	m.runs.WithLabelValues(string(r.Outcome), reasonLabel(r)).Inc()
}

func (m *metrics) tested(outcome Outcome, d time.Duration) {
	if m == nil {
		return
	}
	m.seconds.WithLabelValues(string(outcome)).Observe(d.Seconds())
}

func (m *metrics) submitted(mode string, block uint64, err error) {
	if m == nil {
		return
	}
	code := subnet.ErrorCode(err)
	if code == "" {
		code = "ok"
		m.lastSet.Set(float64(block))
	}
	m.weights.WithLabelValues(mode, code).Inc()
}

// pendingCommits records how many commits are pending.
func (m *metrics) pendingCommits(n int) {
	if m == nil {
		return
	}
	m.pending.Set(float64(n))
}

func (m *metrics) swept(block uint64) {
	if m == nil {
		return
	}
	m.lastSwp.Set(float64(block))
}

// reasonLabel is the reason label of a result: its stable code
// (market.PoGCodes), or for a result without one (failures before the
// worker ran, results stored by an older version) the class of its reason.
func reasonLabel(r Result) string {
	if r.Code != "" {
		return string(r.Code)
	}
	return reasonClass(r.Outcome, r.Reason)
}

// reasonClass reduces a result's reason, free text today, to a small
// fixed set so that the reason label stays bounded. It keys on the
// prefixes the driver writes (pog.go) and pog.Check's reasons; a stable
// reason code carried by the result would replace it.
func reasonClass(o Outcome, reason string) string {
	if o == OutcomePass {
		return "ok"
	}
	for _, c := range []struct{ prefix, class string }{
		{"no valid proofs after the challenge", "proof_invalid"},
		{"not tested: ", "not_tested"},
		{"allocation refused", "allocation_refused"},
		{"lease credentials", "bad_credentials"},
		{"upload worker", "upload_failed"},
		{"start worker", "worker_start_failed"},
		{"no complete hello", "no_hello"},
		{"no complete answer", "timeout"},
		{"worker error", "worker_error"},
		{"no commitment within", "too_slow"},
		{"no GPUs reported", "no_gpus"},
		{pog.ReasonSimulatedRefused, "simulated_refused"},
		{"session: ", "session_failed"},
		{"generate ", "internal"},
	} {
		if strings.HasPrefix(reason, c.prefix) {
			return c.class
		}
	}
	switch {
	case strings.Contains(reason, "GPUs proved their computation"):
		return "proof_invalid"
	case strings.Contains(reason, "no model in the table is consistent"):
		return "model_unidentified"
	case o == OutcomeUnreachable:
		return "ssh_unreachable"
	case reason == "":
		return "none"
	}
	return "other"
}
