package rental_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/rental/rentaltest"
)

// TestMetrics drives allocations, health checks and webhook deliveries
// and reads them back from the registry: requests by action and result,
// health flips, ends by reason, deliveries by result and the live
// allocations by state. No series carries an allocation id, a tenant or
// a token.
func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	w := rentaltest.New(t, rentaltest.Options{Miners: 1, Config: rental.Config{Metrics: reg, ProbeTimeout: 200 * time.Millisecond, WebhookAttempts: 2}})
	w.Verify(t, 0, h100, 1)
	ctx := context.Background()
	lea, secret := w.Token(t, "lea", market.ScopeRead, market.ScopeRent)
	ok := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	defer down.Close()
	for _, u := range []string{ok.URL, down.URL} {
		if _, err := w.Svc.CreateWebhook(ctx, lea, rental.WebhookRequest{URL: u, Events: []string{market.EventAllocated}}); err != nil {
			t.Fatal(err)
		}
	}

	a, _, err := w.Svc.Allocate(ctx, lea, req(1, time.Hour), "k1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Svc.Allocate(ctx, lea, req(1, time.Hour), "k1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Svc.Allocate(ctx, lea, req(8, time.Hour), ""); code(err) != "no_offer" {
		t.Fatalf("8 GPUs: %v", err)
	}
	if _, err := w.Svc.Extend(ctx, lea, a.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Svc.Act(ctx, lea, a.ID, rental.ActionRequest{Action: "dance"}); err == nil {
		t.Fatal("an unknown action was accepted")
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP nicompute_api_allocations Allocations not ended, by state (allocating, online, offline, ending).
# TYPE nicompute_api_allocations gauge
nicompute_api_allocations{state="allocating"} 0
nicompute_api_allocations{state="ending"} 0
nicompute_api_allocations{state="offline"} 0
nicompute_api_allocations{state="online"} 1
`), "nicompute_api_allocations"); err != nil {
		t.Fatal(err)
	}

	m := w.Miners[0]
	m.Set(nil, time.Second) // the miner hangs: offline
	w.Svc.CheckHealth(ctx)
	m.Set(nil, 0)
	w.Svc.CheckHealth(ctx)
	if _, err := w.Svc.End(ctx, lea, a.ID); err != nil {
		t.Fatal(err)
	}
	rentaltest.Eventually(t, 10*time.Second, "both deliveries settle", func() bool {
		return value(t, reg, "nicompute_api_webhook_deliveries_total", "failed") == 1
	})

	want := `
# HELP nicompute_api_allocations_total Allocation requests by action (allocate, extend, restart, pause, unpause, exchange_key, end) and result (ok, replayed, or the problem code).
# TYPE nicompute_api_allocations_total counter
nicompute_api_allocations_total{action="allocate",result="no_offer"} 1
nicompute_api_allocations_total{action="allocate",result="ok"} 1
nicompute_api_allocations_total{action="allocate",result="replayed"} 1
nicompute_api_allocations_total{action="end",result="ok"} 1
nicompute_api_allocations_total{action="extend",result="ok"} 1
nicompute_api_allocations_total{action="invalid",result="invalid_request"} 1
# HELP nicompute_api_allocations_ended_total Allocations ended, by reason (deleted, expired, gone, lost).
# TYPE nicompute_api_allocations_ended_total counter
nicompute_api_allocations_ended_total{reason="deleted"} 1
# HELP nicompute_api_health_checks_total Health checks of running allocations by result (ok, failing: the miner or the SSH port did not answer, lost: the miner holds no lease).
# TYPE nicompute_api_health_checks_total counter
nicompute_api_health_checks_total{result="failing"} 1
nicompute_api_health_checks_total{result="ok"} 1
# HELP nicompute_api_health_flips_total Allocations whose health changed, by the state they went to (offline, online).
# TYPE nicompute_api_health_flips_total counter
nicompute_api_health_flips_total{to="offline"} 1
nicompute_api_health_flips_total{to="online"} 1
# HELP nicompute_api_webhook_deliveries_total Webhook delivery attempts by result (delivered, retrying, failed: given up after the last attempt).
# TYPE nicompute_api_webhook_deliveries_total counter
nicompute_api_webhook_deliveries_total{result="delivered"} 1
nicompute_api_webhook_deliveries_total{result="failed"} 1
nicompute_api_webhook_deliveries_total{result="retrying"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "nicompute_api_allocations_total", "nicompute_api_allocations_ended_total",
		"nicompute_api_health_checks_total", "nicompute_api_health_flips_total", "nicompute_api_webhook_deliveries_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "nicompute_api_allocation_duration_seconds"); n != 4 {
		t.Errorf("%d duration series, want allocate, extend, end and invalid", n)
	}
	if testutil.CollectAndCount(reg, "nicompute_chain_block") != 1 {
		t.Error("no chain block gauge")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if v := l.GetValue(); strings.Contains(v, a.ID) || strings.Contains(v, "lea") || v == secret || strings.Contains(v, lea.ID) {
					t.Errorf("%s carries %s=%q", mf.GetName(), l.GetName(), v)
				}
			}
		}
	}
}

// value returns the value of counter name's series whose one label is v
// (0 when there is none).
func value(t *testing.T, reg *prometheus.Registry, name, v string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == v {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
