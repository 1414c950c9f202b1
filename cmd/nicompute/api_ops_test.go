package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/dashboard"
)

// TestAPIOperations runs `nicompute api` as a service manager would: it
// notifies READY and STOPPING, serves its metrics on --metrics.listen —
// requests by route pattern and code, never an id or a token — and its
// dashboard, where a browser signed in with an admin token (posted once in
// a form) sees the allocations, and nobody else does.
func TestAPIOperations(t *testing.T) {
	w := newMinerWorld(t)
	notices := notifySocket(t)
	apiData := t.TempDir()
	adminFile, admin := createToken(t, apiData, "ops", "admin")
	_, reader := createToken(t, apiData, "ann", "read")
	api := runInBackground(t, regexp.MustCompile(`allocation API on (http://127\.0\.0\.1:\d+)`), "api",
		"--netuid", strconv.Itoa(int(w.netuid)), "--subtensor.chain_endpoint", w.node.Endpoint(),
		"--wallet.path", w.wallets, "--wallet.name", "validator", "--api.listen", "127.0.0.1:0", "--api.data", apiData,
		"--api.validator-data", t.TempDir(), "--metrics.listen", "127.0.0.1:0")
	if ready := waitNotice(t, notices, "READY=1"); !strings.Contains(ready, "STATUS=api running") {
		t.Errorf("ready notification %q", ready)
	}
	m := regexp.MustCompile(`msg="metrics served" url=(\S+)`).FindStringSubmatch(api.errb.String())
	if m == nil {
		t.Fatalf("no metrics URL logged:\n%s", api.errb)
	}

	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"/v1/offers", admin, 200},
		{"/v1/offers", "", 401},
		{"/v1/allocations/a-secret-0123", admin, 404},
		{"/nothing-here/tok_hidden", "", 404},
	} {
		req, _ := http.NewRequest(http.MethodGet, api.match+c.path, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		if res := send(t, http.DefaultClient, req); res.StatusCode != c.want {
			t.Errorf("GET %s: %d, want %d", c.path, res.StatusCode, c.want)
		}
	}

	// The dashboard: anonymous, refused, signed in, signed out by
	// revoking the token.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	base := api.match + dashboardPath
	if page := body(t, browser, http.MethodGet, base, nil); !strings.Contains(page, "nicompute allocation API · subnet") || strings.Contains(page, `id="allocations"`) {
		t.Fatalf("anonymous dashboard:\n%s", page)
	}
	if res := send(t, browser, form(t, base+"login", base, reader)); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("sign-in with a read token: %d", res.StatusCode)
	}
	res := send(t, browser, form(t, base+"login", base, admin))
	page := res.body
	if res.StatusCode != 200 || !strings.Contains(page, `id="allocations"`) || !strings.Contains(page, "no allocation") {
		t.Fatalf("signed-in dashboard %d:\n%s", res.StatusCode, page)
	}
	u, _ := url.Parse(base)
	cookies := jar.Cookies(u)
	if len(cookies) != 1 || cookies[0].Name != dashboard.SessionCookie || cookies[0].Value == admin {
		t.Fatalf("browser cookies %v", cookies)
	}
	if db, _ := os.ReadFile(filepath.Join(apiData, "api.db")); strings.Contains(string(db), cookies[0].Value) {
		t.Fatal("the session secret is stored in clear")
	}
	if code, out, errs := runCLI(t, "api", "token", "revoke", tokenID(t, apiData, "ops"), "--api.data", apiData); code != 0 {
		t.Fatalf("revoke: %d %s %s", code, out, errs)
	}
	if page := body(t, browser, http.MethodGet, base, nil); strings.Contains(page, `id="allocations"`) {
		t.Fatal("the session outlived its token")
	}

	text := httpGet(t, m[1])
	for _, want := range []string{`role="api"`,
		`nicompute_http_requests_total{code="200",method="GET",route="/v1/offers"} 1`,
		`nicompute_http_requests_total{code="401",method="GET",route="/v1/offers"} 1`,
		`nicompute_http_requests_total{code="404",method="GET",route="/v1/allocations/{id}"} 1`,
		`nicompute_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`nicompute_http_requests_total{code="303",method="POST",route="/dashboard/*"} 1`,
		`nicompute_api_allocations{state="online"} 0`,
		`nicompute_chain_rpc_duration_seconds_count{method="metagraph",result="ok"}`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, leak := range []string{"a-secret-0123", "tok_hidden", admin, reader, cookies[0].Value} {
		if strings.Contains(text, leak) {
			t.Errorf("metrics carry %q", leak)
		}
	}
	if _, err := os.Stat(adminFile); err != nil {
		t.Fatal(err)
	}
	if code := api.stop(); code != 0 {
		t.Fatalf("exit %d:\n%s", code, api.errb)
	}
	waitNotice(t, notices, "STOPPING=1")
}

// httpAnswer is a response with its body read.
type httpAnswer struct {
	*http.Response
	body string
}

func send(t *testing.T, c *http.Client, req *http.Request) httpAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(req.Context(), 15*time.Second)
	defer cancel()
	res, err := c.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	return httpAnswer{res, string(b)}
}

func body(t *testing.T, c *http.Client, method, u string, r io.Reader) string {
	t.Helper()
	req, _ := http.NewRequest(method, u, r)
	return send(t, c, req).body
}

// form is the sign-in form posted from the dashboard's own origin.
func form(t *testing.T, action, origin, token string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, action, strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	o, _ := url.Parse(origin)
	req.Header.Set("Origin", o.Scheme+"://"+o.Host)
	return req
}

// tokenID is the id of the token named name in the API store of apiData.
func tokenID(t *testing.T, apiData, name string) string {
	t.Helper()
	code, out, _ := runCLI(t, "api", "token", "list", "--api.data", apiData)
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); code == 0 && len(f) > 1 && f[1] == name {
			return f[0]
		}
	}
	t.Fatalf("no token %s:\n%s", name, out)
	return ""
}
