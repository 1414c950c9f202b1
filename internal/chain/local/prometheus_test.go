package local

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
)

func TestServePrometheus(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, nil)
	cold, hot := key(t, "//Carol"), key(t, "//Carol/h")
	w.register(t, cold, hot, 10)
	info := subnet.PrometheusInfo{IP: "127.0.0.1", Port: 9101, Version: 10002000}
	if err := w.c.ServePrometheus(ctx, hot, w.netuid, info); err != nil {
		t.Fatal(err)
	}
	block := must[uint64](t)(w.c.CurrentBlock(ctx))
	want := subnet.PrometheusInfo{Block: block, Version: 10002000, IP: "127.0.0.1", Port: 9101, IPType: 4}
	mg := must[*subnet.Metagraph](t)(w.c.Metagraph(ctx, w.netuid))
	n, ok := mg.ByHotkey(hot.SS58())
	if !ok || n.Prometheus != want {
		t.Fatalf("metagraph prometheus = %+v, want %+v", n.Prometheus, want)
	}
	if nr := must[subnet.Neuron](t)(w.c.Neuron(ctx, w.netuid, hot.SS58())); nr.Prometheus != want {
		t.Fatalf("neuron prometheus = %+v", nr.Prometheus)
	}
	if own, _ := mg.ByHotkey(w.owner.SS58()); own.Prometheus != (subnet.PrometheusInfo{}) {
		t.Fatalf("a neuron that never served has %+v", own.Prometheus)
	}
	for _, tc := range []struct {
		name   string
		hotkey *keys.Keypair
		netuid subnet.NetUID
		info   subnet.PrometheusInfo
		code   string
	}{
		{"rate limited", hot, w.netuid, info, subnet.ERATELIMITED},
		{"unregistered", cold, w.netuid, info, subnet.ENOTREGISTERED},
		{"no subnet", hot, 99, info, subnet.ENOSUBNET},
		{"bad ip", hot, w.netuid, subnet.PrometheusInfo{IP: "example.com", Port: 1}, subnet.EINVALID},
		{"unspecified ip", hot, w.netuid, subnet.PrometheusInfo{IP: "::", Port: 1}, subnet.EINVALID},
		{"port zero", hot, w.netuid, subnet.PrometheusInfo{IP: "10.0.0.1"}, subnet.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.code != subnet.ERATELIMITED {
				advance(t, w.n, DefaultGenesis().ServingRateLimit)
			}
			before := w.snapshot(t)
			wantCode(t, w.c.ServePrometheus(ctx, tc.hotkey, tc.netuid, tc.info), tc.code)
			w.unchanged(t, before)
		})
	}
	advance(t, w.n, DefaultGenesis().ServingRateLimit)
	if err := w.c.ServePrometheus(ctx, hot, w.netuid, subnet.PrometheusInfo{IP: "::1", Port: 9200, Version: 7}); err != nil {
		t.Fatal(err)
	}
	if nr := must[subnet.Neuron](t)(w.c.Neuron(ctx, w.netuid, hot.SS58())); nr.Prometheus.IP != "::1" || nr.Prometheus.IPType != 6 || nr.Prometheus.Port != 9200 {
		t.Fatalf("prometheus = %+v", nr.Prometheus)
	}
}

func TestNodeMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, err := Open(context.Background(), Config{DataDir: t.TempDir(), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	var methods []string
	c := dialNode(t, n, WithObserver(func(m string, _ time.Duration, err error) {
		if err == nil {
			methods = append(methods, m)
		}
	}))
	ctx := context.Background()
	alice := key(t, "//Alice")
	must[subnet.Balance](t)(c.Faucet(ctx, alice.SS58(), subnet.TAO(100)))
	must[subnet.NetUID](t)(c.CreateSubnet(ctx, alice, 0))
	wantCode(t, c.Transfer(ctx, alice, alice.SS58(), subnet.TAO(1e6)), subnet.EINSUFFICIENTBALANCE)
	advance(t, n, 3)

	if got := gauge(t, reg, "nicompute_chain_block"); got != float64(n.Head()) || got < 3 {
		t.Fatalf("nicompute_chain_block = %v, head %d", got, n.Head())
	}
	want := `
# HELP nicompute_chain_extrinsics_total Signed extrinsics submitted to the embedded chain node, by call and result (ok or the refusal's code).
# TYPE nicompute_chain_extrinsics_total counter
nicompute_chain_extrinsics_total{call="create_subnet",result="ok"} 1
nicompute_chain_extrinsics_total{call="transfer",result="insufficient_balance"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "nicompute_chain_extrinsics_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "nicompute_chain_node_request_duration_seconds"); n < 4 {
		t.Fatalf("%d request series, want faucet, account, submit, chain_info…", n)
	}
	if strings.Join(methods, ",") != "chain_info,faucet,account,submit/create_subnet,account" {
		t.Fatalf("client observed %v", methods)
	}
}

// gauge returns the value of the single-series gauge name in reg.
func gauge(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	tb.Fatalf("no single-series metric %s", name)
	return 0
}

func TestClientTime(t *testing.T) {
	n := testNode(t, nil)
	c := dialNode(t, n)
	got, err := c.Time(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(got); d < -2*time.Second || d > 2*time.Second {
		t.Fatalf("node time %v is %v from ours", got, d)
	}
}
