package dashboard

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSessions accepts the token "good" and knows the sessions it made.
type fakeSessions struct {
	mu       sync.Mutex
	live     map[string]bool
	n        int
	checkErr error
	signIns  int
}

func (f *fakeSessions) SignIn(_ context.Context, token string) (string, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signIns++
	if token != "good" {
		return "", time.Time{}, errors.New("the bearer token is not known")
	}
	f.n++
	s := "nics_session" + string(rune('a'+f.n))
	f.live[s] = true
	return s, time.Now().Add(time.Hour), nil
}

func (f *fakeSessions) SignedIn(_ context.Context, s string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.live[s], f.checkErr
}

func (f *fakeSessions) SignOut(_ context.Context, s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.live, s)
	return nil
}

func sampleAPI() *APIData {
	v := sampleValidator()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &APIData{
		NetUID: 1, Block: 240, Tempo: 20, ChainOK: true, UID: 0, Hotkey: v.Hotkey, Registered: true, Permit: true,
		LastSweep: 200, LastWeights: 230, PendingCommits: 1, Offered: 1,
		Miners: v.Miners, Scores: v.Scores, Incentives: v.Incentives, Results: v.Results,
		Allocations: []AllocationRow{
			{ID: "a0123456789abcdef", Tenant: "alice", State: "online", GPUModel: "NVIDIA H200", GPUCount: 1, Miner: v.Miners[0].Hotkey, MinerUID: 1,
				Host: "127.0.0.2", Port: 46000, Created: now, Expires: now.Add(time.Hour), Checked: now.Add(time.Minute)},
			{ID: "afedcba9876543210", Tenant: "bob", State: "ended", EndReason: "deleted", Created: now, Expires: now.Add(time.Hour), Ended: now.Add(time.Minute),
				Note: `<b>the miner said</b>`},
		},
	}
}

// apiDashboard serves NewAPI under /dashboard/ and records the admin
// flag of each data read.
func apiDashboard(t *testing.T) (*httptest.Server, *fakeSessions, *[]bool) {
	t.Helper()
	sess := &fakeSessions{live: map[string]bool{}}
	var mu sync.Mutex
	var asked []bool
	h := NewAPI(func(_ context.Context, admin bool) (*APIData, error) {
		mu.Lock()
		asked = append(asked, admin)
		mu.Unlock()
		return sampleAPI(), nil // allocations even for anonymous: the page must drop them
	}, sess, Options{Base: "/dashboard/"})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, sess, &asked
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	res, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func getPage(t *testing.T, url string, cookies ...*http.Cookie) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return do(t, req)
}

func postForm(t *testing.T, u string, form url.Values, hdr map[string]string, cookies ...*http.Cookie) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return do(t, req)
}

// TestAPIPageAnonymous: the page shows the subnet, the miners and the
// charts, and no allocation (even when its data source returns some),
// with a link to sign in; it runs no script and may post forms only to
// itself.
func TestAPIPageAnonymous(t *testing.T) {
	srv, _, asked := apiDashboard(t)
	res, body := getPage(t, srv.URL+"/dashboard/")
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "form-action 'self'") || strings.Contains(csp, "script-src") {
		t.Fatalf("CSP %q", csp)
	}
	for _, want := range []string{`<tr data-uid="1">`, "1 × NVIDIA H200", "weights commits pending", `href="/dashboard/login"`,
		`href="/dashboard/assets/dashboard.css"`, `data-chart="Proof-of-GPU results by sweep"`, `id="signin"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, leak := range []string{`id="allocations"`, "a0123456789abcdef", "alice", "logout", "<script"} {
		if strings.Contains(body, leak) {
			t.Errorf("anonymous page shows %q", leak)
		}
	}
	if len(*asked) != 1 || (*asked)[0] {
		t.Fatalf("data asked with admin=%v", *asked)
	}
	if res, _ := getPage(t, srv.URL+"/dashboard/assets/favicon.svg"); res.StatusCode != 200 {
		t.Errorf("favicon: %d", res.StatusCode)
	}
	if res, _ := getPage(t, srv.URL+"/dashboard"); res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/dashboard/" {
		t.Errorf("/dashboard: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
}

// TestAPISignIn signs in through the form, sees the allocations, and
// signs out: the cookie holds the session (never the token), is HttpOnly,
// SameSite=Strict, scoped to the dashboard and Secure over TLS; refused
// tokens, cross-origin posts and oversized forms get no session.
func TestAPISignIn(t *testing.T) {
	srv, sess, asked := apiDashboard(t)
	res, body := getPage(t, srv.URL+"/dashboard/login")
	if res.StatusCode != 200 || !strings.Contains(body, `<form class="signin" method="post" action="/dashboard/login">`) ||
		!strings.Contains(body, `name="token" type="password"`) || strings.Contains(body, `http-equiv="refresh"`) {
		t.Fatalf("login page %d:\n%s", res.StatusCode, body)
	}

	res, body = postForm(t, srv.URL+"/dashboard/login", url.Values{"token": {"nic_wrong"}}, nil)
	if res.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "cannot sign in") || len(res.Cookies()) != 0 || strings.Contains(body, "nic_wrong") {
		t.Fatalf("refused token: %d %v\n%s", res.StatusCode, res.Cookies(), body)
	}
	before := sess.signIns
	for name, hdr := range map[string]map[string]string{
		"cross-site fetch":   {"Sec-Fetch-Site": "cross-site"},
		"foreign origin":     {"Origin": "https://evil.example"},
		"cross-site + token": {"Sec-Fetch-Site": "same-site", "Origin": "https://sub.evil.example"},
	} {
		if res, _ := postForm(t, srv.URL+"/dashboard/login", url.Values{"token": {"good"}}, hdr); res.StatusCode != http.StatusForbidden || len(res.Cookies()) != 0 {
			t.Errorf("%s: %d %v", name, res.StatusCode, res.Cookies())
		}
	}
	if res, _ := postForm(t, srv.URL+"/dashboard/login", url.Values{"token": {"good"}, "pad": {strings.Repeat("x", maxFormBytes)}}, nil); res.StatusCode != http.StatusBadRequest || len(res.Cookies()) != 0 {
		t.Errorf("oversized form: %d", res.StatusCode)
	}
	if sess.signIns != before {
		t.Fatalf("refused posts reached SignIn %d times", sess.signIns-before)
	}

	res, _ = postForm(t, srv.URL+"/dashboard/login", url.Values{"token": {"good"}}, map[string]string{"Origin": srv.URL})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/dashboard/" {
		t.Fatalf("sign in: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	set := res.Header.Get("Set-Cookie")
	cookies := res.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %q", set)
	}
	c := cookies[0]
	if c.Name != SessionCookie || !strings.HasPrefix(c.Value, "nics_") || c.Path != "/dashboard/" || !c.HttpOnly || c.Secure ||
		c.SameSite != http.SameSiteStrictMode || c.MaxAge <= 0 || strings.Contains(set, "good") {
		t.Fatalf("session cookie %q", set)
	}

	res, body = getPage(t, srv.URL+"/dashboard/", c)
	if res.StatusCode != 200 || strings.Count(body, "<tr data-allocation=") != 2 || !strings.Contains(body, "alice") ||
		!strings.Contains(body, `action="/dashboard/logout"`) || !strings.Contains(body, "&lt;b&gt;the miner said&lt;/b&gt;") || strings.Contains(body, `id="signin"`) {
		t.Fatalf("signed-in page %d:\n%s", res.StatusCode, body)
	}
	if a := *asked; len(a) != 1 || !a[0] {
		t.Fatalf("data asked with admin=%v", a)
	}
	sess.checkErr = errors.New("database is locked")
	if _, body := getPage(t, srv.URL+"/dashboard/", c); strings.Contains(body, `id="allocations"`) {
		t.Fatal("a session that could not be checked was let in")
	}
	sess.checkErr = nil
	if _, body := getPage(t, srv.URL+"/dashboard/", &http.Cookie{Name: SessionCookie, Value: "nics_forged"}); strings.Contains(body, `id="allocations"`) {
		t.Fatal("a forged session was let in")
	}
	if res, _ := postForm(t, srv.URL+"/dashboard/logout", nil, map[string]string{"Sec-Fetch-Site": "cross-site"}, c); res.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site sign-out: %d", res.StatusCode)
	}

	res, _ = postForm(t, srv.URL+"/dashboard/logout", nil, nil, c)
	if res.StatusCode != http.StatusSeeOther || len(res.Cookies()) != 1 || res.Cookies()[0].MaxAge >= 0 {
		t.Fatalf("sign out: %d %q", res.StatusCode, res.Header.Get("Set-Cookie"))
	}
	if _, body := getPage(t, srv.URL+"/dashboard/", c); strings.Contains(body, `id="allocations"`) {
		t.Fatal("the session outlived sign-out")
	}

	// Over TLS the cookie is Secure.
	p := &apiPage{opt: Options{Base: "/dashboard/"}}
	if !p.cookie(&http.Request{TLS: &tls.ConnectionState{}}, "nics_x", time.Now().Add(time.Hour)).Secure {
		t.Fatal("the session cookie is not Secure over TLS")
	}
}
