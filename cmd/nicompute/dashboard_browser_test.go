package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nicompute/nicompute/internal/devnet"
)

// findChromium returns a Chromium binary: Debian's chromium (which
// .ci/test installs), or another Chrome on PATH.
func findChromium() (string, bool) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, true
		}
	}
	return "", false
}

// screenshotDir is where dashboard screenshots are kept after the test
// (NICOMPUTE_SCREENSHOTS, default the system's temporary directory).
func screenshotDir() string {
	if d := os.Getenv("NICOMPUTE_SCREENSHOTS"); d != "" {
		return d
	}
	return os.TempDir()
}

// dashboardPage is what a page must show.
type dashboardPage struct {
	name string // endpoints.json key
	// shot names the screenshot (default: name).
	shot string
	// rows is a CSS selector of table rows and want their least number;
	// charts the number of chart figures that must hold an SVG; absent a
	// selector that must match nothing.
	rows   string
	want   int
	charts int
	absent string
	// signIn, when set, is an admin token to sign in with through the
	// page's form (at URL + "login") first.
	signIn string
}

// checkDashboards loads the dashboards of a running devnet whose data
// directory is dir in headless Chromium: every page must show its tables
// and charts, with nothing on the console at error level, and each is
// saved as a screenshot whose path the test output names.
func checkDashboards(t *testing.T, dir string, pages []dashboardPage) {
	t.Helper()
	t.Run("dashboards in chromium", func(t *testing.T) {
		bin, ok := findChromium()
		if !ok {
			t.Skip("chromium is not installed (.ci/test installs Debian's chromium; install it with apt-get install chromium to run this check)")
		}
		eps := readEndpoints(t, dir)
		actx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 1600))...)
		defer cancel()
		for _, p := range pages {
			url := eps[p.name]
			if url == "" {
				t.Fatalf("endpoints.json has no %s: %v", p.name, eps)
			}
			loadDashboard(t, actx, p, url)
		}
	})
}

func loadDashboard(t *testing.T, actx context.Context, p dashboardPage, url string) {
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, stop := context.WithTimeout(ctx, 90*time.Second)
	defer stop()
	var mu sync.Mutex
	var problems []string
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleWarning {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()
	if p.signIn != "" {
		if err := chromedp.Do(ctx, chromedp.Navigate(url+"login"), chromedp.SendKeys(chromedp.ID("token"), p.signIn),
			chromedp.Submit(chromedp.ID("token")), chromedp.WaitVisible(chromedp.ID("allocations"))); err != nil {
			t.Fatalf("%s: sign in through the form: %v", p.name, err)
		}
	}
	// The charts need two samples of history: reload until they are drawn.
	var rows, charts int
	for deadline := time.Now().Add(60 * time.Second); ; {
		if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
			t.Fatalf("%s: load %s: %v", p.name, url, err)
		}
		var err error
		if rows, err = chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", p.rows))); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		if charts, err = chromedp.Run(ctx, chromedp.Evaluate[int]("document.querySelectorAll('figure.chart svg').length")); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		if (rows >= p.want && charts >= p.charts) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	if p.absent != "" {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", p.absent)))
		if err != nil || n != 0 {
			t.Errorf("%s shows %d of %s (%v)", p.name, n, p.absent, err)
		}
	}
	shotName := p.shot
	if shotName == "" {
		shotName = p.name
	}
	path := filepath.Join(screenshotDir(), fmt.Sprintf("nicompute-%s-%s.png", strings.ReplaceAll(shotName, ".", "-"), time.Now().Format("20060102-150405")))
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: screenshot %s (%d rows, %d charts)", p.name, path, rows, charts)
	if rows < p.want || charts < p.charts {
		t.Errorf("%s at %s shows %d rows (want ≥ %d) and %d charts (want %d)", p.name, url, rows, p.want, charts, p.charts)
	}
	time.Sleep(200 * time.Millisecond) // let late console messages arrive
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("%s: the console reported:\n%s", p.name, strings.Join(problems, "\n"))
	}
}

// checkDevnetObservability reads every daemon's /metrics from the
// devnet's endpoints.json, then loads the dashboards in Chromium — the
// API's anonymously and signed in with devnet's admin token. It runs while
// one allocation made through the API is online.
func checkDevnetObservability(t *testing.T, dir string) {
	t.Helper()
	eps := readEndpoints(t, dir)
	admin, err := os.ReadFile(filepath.Join(dir, "api", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{
		"chain.metrics": {`nicompute_build_info{`, `role="chain"`, "nicompute_chain_block ", `nicompute_chain_extrinsics_total{call="commit_timelocked_weights",result="ok"}`},
		"validator.metrics": {`role="validator"`, `nicompute_validator_pog_runs_total{reason="ok",result="pass"}`,
			`nicompute_validator_weights_submissions_total{mode="commit",result="ok"}`, `nicompute_validator_miner_score{uid="1"}`,
			`nicompute_chain_rpc_duration_seconds_count{method="metagraph",result="ok"}`, "nicompute_validator_pog_duration_seconds_count"},
		"miner-0.metrics": {`role="miner"`, `nicompute_miner_allocations_total{action="allocate",result="ok"}`,
			`nicompute_miner_axon_requests_total{status="200",synapse="Allocate"}`, "nicompute_chain_block "},
		"api.metrics": {`role="api"`, `nicompute_api_allocations_total{action="allocate",result="ok"} 1`,
			`nicompute_http_requests_total{code="201",method="POST",route="/v1/allocations"} 1`, `nicompute_api_allocations{state="online"} 1`,
			`nicompute_http_requests_total{code="200",method="GET",route="/v1/offers"}`, `nicompute_chain_rpc_duration_seconds_count{method="metagraph",result="ok"}`},
	} {
		text := httpGet(t, eps[name])
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("%s (%s) lacks %s", name, eps[name], w)
			}
		}
	}
	checkDashboards(t, dir, []dashboardPage{
		{name: "validator.dashboard", rows: "#miners tr[data-uid]", want: 3, charts: 3},
		{name: "miner-0.dashboard", rows: "#capacity tbody tr", want: 2, charts: 2},
		{name: "api.dashboard", shot: "api.dashboard.anonymous", rows: "#miners tr[data-uid]", want: 3, charts: 3, absent: "#allocations"},
		{name: "api.dashboard", shot: "api.dashboard.admin", rows: `#allocations tr[data-state="online"]`, want: 1, charts: 3, signIn: strings.TrimSpace(string(admin))},
	})
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// readEndpoints reads a devnet's endpoints.json.
func readEndpoints(t *testing.T, dir string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, devnet.EndpointsFile))
	if err != nil {
		t.Fatal(err)
	}
	var eps map[string]string
	if err := json.Unmarshal(b, &eps); err != nil {
		t.Fatal(err)
	}
	return eps
}
