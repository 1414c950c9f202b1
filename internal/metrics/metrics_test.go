package metrics

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/version"
)

func TestServeRegistry(t *testing.T) {
	reg := NewRegistry("miner")
	rpc, err := NewChainRPC(reg)
	if err != nil {
		t.Fatal(err)
	}
	rpc.Observe("metagraph", 3*time.Millisecond, nil)
	rpc.Observe("metagraph", time.Second, subnet.Errorf(subnet.EUNAVAILABLE, "down"))
	rpc.Observe("submit/set_weights", time.Millisecond, errors.New("plain"))
	(*ChainRPC)(nil).Observe("ignored", 0, nil)

	h, err := NewHTTP(reg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h.Wrap("GET /metrics", Handler(reg, nil)))
	mux.Handle("GET /leases/{id}", h.Wrap("GET /leases/{id}", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no such lease", http.StatusNotFound)
	})))
	s, err := Listen("127.0.0.1:0", mux, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, id := range []string{"a", "b", "secret-lease-id"} {
		resp, err := http.Get(s.URL() + "/leases/" + id)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(s.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`nicompute_build_info{commit="` + version.Get().Commit + `",goversion="` + version.Get().GoVersion + `",role="miner",version="` + version.Version + `"} 1`,
		`nicompute_chain_rpc_duration_seconds_count{method="metagraph",result="ok"} 1`,
		`nicompute_chain_rpc_duration_seconds_count{method="metagraph",result="unavailable"} 1`,
		`nicompute_chain_rpc_duration_seconds_count{method="submit/set_weights",result="internal"} 1`,
		`nicompute_http_requests_total{code="404",method="GET",route="GET /leases/{id}"} 3`,
		"go_goroutines ",
		"process_start_time_seconds ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(text, "secret-lease-id") {
		t.Error("a request path reached a label")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := http.Get(s.URL() + "/metrics"); err == nil {
		t.Fatal("server still answers after Close")
	}
}

func TestWrapCountsImplicitStatus(t *testing.T) {
	reg := NewRegistry("api")
	h, err := NewHTTP(reg)
	if err != nil {
		t.Fatal(err)
	}
	wrapped := h.Wrap("POST /x", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	s, err := Listen("127.0.0.1:0", wrapped, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req, _ := http.NewRequest("BREW", s.URL(), nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	if got := testutil.ToFloat64(h.requests.WithLabelValues("POST /x", "other", "200")); got != 1 {
		t.Fatalf("requests{method=other,code=200} = %v", got)
	}
	if (*HTTP)(nil).Wrap("r", wrapped) == nil {
		t.Fatal("nil HTTP must return the handler")
	}
	if _, err := Listen("256.0.0.1:0", wrapped, nil); err == nil {
		t.Fatal("bad address accepted")
	}
}

// TestMiddlewareLabelsByPatternAfterRouting: the middleware wraps a
// router and reads the pattern the router matched once it has served the
// request; a path no route matched is labelled "unmatched", never with
// the path.
func TestMiddlewareLabelsByPatternAfterRouting(t *testing.T) {
	reg := NewRegistry("api")
	h, err := NewHTTP(reg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/allocations/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	// ServeMux records the matched pattern on the request it routes.
	s, err := Listen("127.0.0.1:0", h.Middleware(func(r *http.Request) string { return r.Pattern })(mux), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, path := range []string{"/v1/allocations/a-secret-id", "/v1/allocations/b", "/no/such/route-with-token"} {
		resp, err := http.Get(s.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := testutil.ToFloat64(h.requests.WithLabelValues("GET /v1/allocations/{id}", "GET", "204")); got != 2 {
		t.Errorf("requests by pattern = %v, want 2", got)
	}
	if got := testutil.ToFloat64(h.requests.WithLabelValues(UnmatchedRoute, "GET", "404")); got != 1 {
		t.Errorf("unmatched requests = %v, want 1", got)
	}
	text := httpText(t, Handler(reg, nil))
	for _, leak := range []string{"a-secret-id", "route-with-token"} {
		if strings.Contains(text, leak) {
			t.Errorf("a request path reached a label: %s", leak)
		}
	}
	if (*HTTP)(nil).Middleware(func(*http.Request) string { return "" })(mux) == nil {
		t.Fatal("nil HTTP must return the handler")
	}
}

// httpText serves one GET of h and returns the body.
func httpText(t *testing.T, h http.Handler) string {
	t.Helper()
	s, err := Listen("127.0.0.1:0", h, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := http.Get(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
