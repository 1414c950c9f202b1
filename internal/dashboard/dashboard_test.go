package dashboard

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func sampleValidator() *ValidatorData {
	d := &ValidatorData{
		NetUID: 1, Block: 240, Tempo: 20, UID: 0, Hotkey: "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
		Permit: true, ChainOK: true, LastSweep: 200, PoGInterval: 100, NextWeights: 250,
		Weights: Weights{Mode: "commit", Result: "ok", Block: 230, LastOK: 230, Summary: "weights committed for reveal in round 1234 (epoch 12) at block 230"},
		Miners: []MinerRow{
			{UID: 1, Hotkey: "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty", GPUs: "1 × NVIDIA H200", Score: 1, Incentive: 0.6, LastResult: "pass", LastBlock: 200, Reason: "claimed NVIDIA H200 confirmed"},
			{UID: 2, Hotkey: "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y", GPUs: "-", LastResult: "fail", LastBlock: 200, Reason: `<script>alert("x")</script>`},
		},
	}
	for _, b := range []uint64{130, 180, 230} {
		d.Scores = append(d.Scores, ScorePoint{Block: b, UID: 1, Score: 1}, ScorePoint{Block: b, UID: 2, Score: float64(b%3) / 3})
		d.Incentives = append(d.Incentives, Sample{Block: b, Values: map[string]float64{"1": 0.5, "2": 0.1, "10": 0}})
		d.Results = append(d.Results, ResultPoint{Block: b - 30, Outcome: "pass"}, ResultPoint{Block: b - 30, Outcome: "fail"})
	}
	return d
}

func get(t *testing.T, h http.Handler, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestValidatorPage(t *testing.T) {
	mux := http.NewServeMux()
	Mount(mux, "/", NewValidator(func(context.Context) (*ValidatorData, error) { return sampleValidator(), nil }, Options{MetricsURL: "/metrics"}))
	res, body := get(t, mux, "/")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Fatalf("CSP %q", csp)
	}
	for _, want := range []string{
		`<tr data-uid="1">`, `<tr data-uid="2">`, "1 × NVIDIA H200", "claimed NVIDIA H200 confirmed",
		"commit at block 230", "committed for reveal in round 1234 (epoch 12)", "20 blocks", `href="/assets/dashboard.css"`, `href="/metrics"`,
		`data-chart="Score by miner (at each weights submission)"`, `data-chart="Incentive by miner"`, `data-chart="Proof-of-GPU results by sweep"`,
		"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if n := strings.Count(body, "<svg"); n != 3 {
		t.Errorf("%d SVG charts, want 3", n)
	}
	if strings.Contains(body, "<script") {
		t.Error("page carries a script")
	}
	for _, asset := range []string{"/assets/dashboard.css", "/assets/favicon.svg"} {
		if res, body := get(t, mux, asset); res.StatusCode != 200 || len(body) < 50 {
			t.Errorf("%s: %d, %d bytes", asset, res.StatusCode, len(body))
		}
	}
	if res, _ := get(t, mux, "/nothing"); res.StatusCode != 404 {
		t.Errorf("unknown path: %d", res.StatusCode)
	}
}

func TestValidatorPageWithoutHistory(t *testing.T) {
	d := sampleValidator()
	d.Scores, d.Incentives, d.Results, d.Miners = nil, d.Incentives[:1], nil, nil
	_, body := get(t, NewValidator(func(context.Context) (*ValidatorData, error) { return d, nil }, Options{}), "/")
	if strings.Count(body, "<svg") != 0 || strings.Count(body, `class="empty"`) != 4 {
		t.Fatalf("empty charts and table not explained:\n%s", body)
	}
	h := NewValidator(func(context.Context) (*ValidatorData, error) { return nil, errors.New("store closed") }, Options{})
	if res, body := get(t, h, "/"); res.StatusCode != 503 || strings.Contains(body, "store closed") {
		t.Fatalf("failing source: %d %q", res.StatusCode, body)
	}
}

func TestMinerPage(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := &MinerData{
		NetUID: 1, UID: 3, Hotkey: "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty", Block: 99, Registered: true,
		Axon: "127.0.0.2:8091", Incentive: 0.25, Emission: 1.5, Validators: 1,
		Capacity: Resources{GPUs: []string{"NVIDIA H200"}, CPUs: 8, MemoryBytes: 32 << 30, DiskBytes: 100 << 30},
		Free:     Resources{CPUs: 7, MemoryBytes: 31 << 30, DiskBytes: 99 << 30},
		Leases: []LeaseRow{{ID: "a1b2c3d4", State: "active", Testing: true, Owner: "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
			GPUs: 1, CPUs: 1, MemoryBytes: 1 << 30, SSHPort: 4444, Created: now, Expires: now.Add(time.Hour)}},
		Requests: []RequestRow{{Hotkey: "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", Action: "allocate", Result: "conflict", Message: "all GPUs are leased", At: now}},
		History:  []Sample{{Block: 80, Values: map[string]float64{"incentive": 0.1, "emission": 1}}, {Block: 90, Values: map[string]float64{"incentive": 0.25, "emission": 1.5}}},
	}
	_, body := get(t, NewMiner(func(context.Context) (*MinerData, error) { return d, nil }, Options{Base: "/dash"}), "/")
	for _, want := range []string{"uid 3", "a1b2c3d4", "Proof-of-GPU test", "32.0 GiB", "all GPUs are leased", "NVIDIA H200",
		`href="/dash/assets/dashboard.css"`, `data-chart="Incentive"`, `data-chart="Emission (τ per epoch)"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if n := strings.Count(body, "<svg"); n != 2 {
		t.Errorf("%d charts, want 2", n)
	}
}

func TestHistory(t *testing.T) {
	h := NewHistory(3)
	for _, b := range []uint64{1, 2, 2, 3, 4} {
		h.Add(Sample{Block: b, Values: map[string]float64{"x": float64(b)}})
	}
	s := h.Samples()
	if len(s) != 3 || s[0].Block != 2 || s[2].Block != 4 {
		t.Fatalf("samples %+v", s)
	}
	h.Add(Sample{Block: 1})
	if s := h.Samples(); len(s) != 1 || s[0].Block != 1 {
		t.Fatalf("after a chain reset %+v", s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	h.Run(ctx, time.Millisecond, func(context.Context) (Sample, bool) {
		n++
		if n == 3 {
			cancel()
		}
		return Sample{Block: uint64(10 + n)}, n != 2
	})
	if s := h.Samples(); len(s) != 3 || s[2].Block != 13 {
		t.Fatalf("run added %+v", s)
	}
}
