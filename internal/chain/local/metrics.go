package local

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nicompute/nicompute/internal/subnet"
)

// nodeMetrics are the embedded chain node's series, registered on
// Config.Metrics. A nil *nodeMetrics records nothing.
type nodeMetrics struct {
	requests   *prometheus.HistogramVec // method, result
	extrinsics *prometheus.CounterVec   // call, result
}

func newNodeMetrics(reg prometheus.Registerer, n *Node) (*nodeMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &nodeMetrics{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nicompute_chain_node_request_duration_seconds",
			Help:    "Requests served by the embedded chain node, by method and result (ok or an error code).",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 20},
		}, []string{"method", "result"}),
		extrinsics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicompute_chain_extrinsics_total",
			Help: "Signed extrinsics submitted to the embedded chain node, by call and result (ok or the refusal's code).",
		}, []string{"call", "result"}),
	}
	block := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "nicompute_chain_block",
		Help: "The best block.",
	}, func() float64 { return float64(n.Head()) })
	for _, c := range []prometheus.Collector{m.requests, m.extrinsics, block} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register chain metrics: %w", err)
		}
	}
	return m, nil
}

// observe records a served request; method is "invalid" when the request
// did not parse, so the label keeps to the known methods.
func (m *nodeMetrics) observe(method string, start time.Time, err error) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(method, result(err)).Observe(time.Since(start).Seconds())
}

// extrinsic records a submitted extrinsic of a known call.
func (m *nodeMetrics) extrinsic(call string, err error) {
	if m == nil {
		return
	}
	m.extrinsics.WithLabelValues(call, result(err)).Inc()
}

func result(err error) string {
	if err == nil {
		return "ok"
	}
	return subnet.ErrorCode(err)
}
