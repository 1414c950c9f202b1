package web_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/rental/rentaltest"
	"github.com/nicompute/nicompute/internal/web"
)

const h100 = "NVIDIA H100 80GB HBM3"

func minimal() map[string]any {
	return map[string]any{"requirements": map[string]any{"gpu_count": 1}, "ssh_keys": []string{rentaltest.SSHKey}, "duration": "1h"}
}

// TestAPIFlow drives the API as a tenant and an admin over real HTTP:
// offers, the minimal allocation body, a retried request with its
// Idempotency-Key, lists without secrets, another tenant's 404s, an
// admin's view, extend, actions, webhooks and tokens over the API, and
// the end.
func TestAPIFlow(t *testing.T) {
	t.Parallel()
	a := newAPI(t, rentaltest.Options{Miners: 2}, nil)
	a.w.Verify(t, 0, h100, 1)
	a.w.Verify(t, 1, h100, 1)
	_, admin := a.w.Token(t, "ops", market.ScopeAdmin)
	_, alice := a.w.Token(t, "alice", market.ScopeRead, market.ScopeRent)
	_, bob := a.w.Token(t, "bob", market.ScopeRead, market.ScopeRent)

	if r := a.call("GET", "/healthz", "", nil); r.status != 200 || !strings.Contains(string(r.body), `"ok"`) {
		t.Fatalf("healthz: %d %s", r.status, r.body)
	}
	r := a.call("GET", "/v1/offers?gpu_model=h100&min_gpu_count=1&min_vram=79GiB", alice, nil)
	var offers web.OfferList
	r.decode(t, &offers)
	if r.status != 200 || len(offers.Offers) != 1 || offers.Offers[0].Miners != 2 || offers.Offers[0].Hotkeys != nil {
		t.Fatalf("offers: %d %s", r.status, r.body)
	}

	body := minimal()
	body["password"] = true
	r = a.call("POST", "/v1/allocations", alice, body, web.IdempotencyHeader, "order-1")
	var created rental.Allocation
	r.decode(t, &created)
	if r.status != 201 || created.ID == "" || created.Host == "" || created.Port == 0 || created.Username != "root" ||
		!strings.HasPrefix(created.SSHCommand, "ssh -p ") || created.ExpiresAt.IsZero() || created.Password == "" ||
		r.header.Get("Location") != "/v1/allocations/"+created.ID {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	r = a.call("POST", "/v1/allocations", alice, body, web.IdempotencyHeader, "order-1")
	var again rental.Allocation
	r.decode(t, &again)
	if r.status != 200 || again.ID != created.ID || again.Password != "" || r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry: %d %s", r.status, r.body)
	}
	leases := len(a.w.Miners[0].Leases()) + len(a.w.Miners[1].Leases())
	if leases != 1 {
		t.Fatalf("%d leases after a retried request", leases)
	}
	for _, path := range []string{"/v1/allocations", "/v1/allocations/" + created.ID, "/v1/allocations?ended=true"} {
		r = a.call("GET", path, alice, nil)
		if r.status != 200 || strings.Contains(string(r.body), created.Password) || strings.Contains(string(r.body), `"password":`) {
			t.Fatalf("GET %s shows a secret or failed: %d %s", path, r.status, r.body)
		}
	}

	// Another tenant: not found, and nothing changes.
	id := "/v1/allocations/" + created.ID
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", id, nil}, {"DELETE", id, nil},
		{"POST", id + "/extend", map[string]any{"duration": "1h"}},
		{"POST", id + "/actions", map[string]any{"action": "restart"}},
	} {
		if r := a.call(c.method, c.path, bob, c.body); r.status != 404 || r.problem(t).Code != "not_found" {
			t.Errorf("bob %s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	var list web.AllocationList
	a.call("GET", "/v1/allocations", bob, nil).decode(t, &list)
	if len(list.Allocations) != 0 {
		t.Fatalf("bob lists %s", list.Allocations[0].ID)
	}

	// The admin sees the tenant and the miner, and may act.
	var adminView rental.Allocation
	a.call("GET", id, admin, nil).decode(t, &adminView)
	if adminView.Tenant != "alice" || adminView.MinerHotkey == "" {
		t.Fatalf("admin view %+v", adminView)
	}
	if r := a.call("POST", id+"/actions", admin, map[string]any{"action": "pause"}); r.status != 200 {
		t.Fatalf("admin pause: %d %s", r.status, r.body)
	}
	var ext rental.Allocation
	r = a.call("POST", id+"/extend", alice, map[string]any{"duration": "2h"})
	r.decode(t, &ext)
	if r.status != 200 || !ext.ExpiresAt.Equal(created.ExpiresAt.Add(2*time.Hour)) {
		t.Fatalf("extend: %d %s", r.status, r.body)
	}
	r = a.call("POST", id+"/actions", alice, map[string]any{"action": "exchange_key", "ssh_keys": []string{rentaltest.SSHKey}})
	if r.status != 200 {
		t.Fatalf("exchange_key: %d %s", r.status, r.body)
	}

	// Webhooks and their deliveries.
	r = a.call("POST", "/v1/webhooks", alice, map[string]any{"url": "https://example.com/hook", "events": []string{"allocation.ended"}})
	var wh rental.NewWebhook
	r.decode(t, &wh)
	if r.status != 201 || wh.Secret == "" {
		t.Fatalf("create webhook: %d %s", r.status, r.body)
	}
	if r := a.call("GET", "/v1/webhooks", alice, nil); r.status != 200 || strings.Contains(string(r.body), wh.Secret) {
		t.Fatalf("list webhooks shows the secret: %s", r.body)
	}
	if r := a.call("GET", "/v1/webhooks/"+wh.ID+"/deliveries", alice, nil); r.status != 200 {
		t.Fatalf("deliveries: %d %s", r.status, r.body)
	}
	if r := a.call("DELETE", "/v1/webhooks/"+wh.ID, bob, nil); r.status != 404 {
		t.Fatalf("bob deletes alice's webhook: %d", r.status)
	}
	if r := a.call("DELETE", "/v1/webhooks/"+wh.ID, alice, nil); r.status != 204 {
		t.Fatalf("delete webhook: %d %s", r.status, r.body)
	}

	// Tokens over the API: admin only; the secret once.
	if r := a.call("POST", "/v1/tokens", alice, map[string]any{"name": "x", "scopes": []string{"read"}}); r.status != 403 || r.problem(t).Code != "forbidden" {
		t.Fatalf("tenant creates a token: %d %s", r.status, r.body)
	}
	var nt rental.NewToken
	r = a.call("POST", "/v1/tokens", admin, map[string]any{"name": "carol", "scopes": []string{"read", "rent"}, "rate_per_minute": 60})
	r.decode(t, &nt)
	if r.status != 201 || !strings.HasPrefix(nt.Secret, "nic_") {
		t.Fatalf("admin creates a token: %d %s", r.status, r.body)
	}
	if r := a.call("GET", "/v1/tokens", admin, nil); r.status != 200 || strings.Contains(string(r.body), nt.Secret) {
		t.Fatalf("token list shows a secret: %s", r.body)
	}
	if r := a.call("GET", "/v1/offers", nt.Secret, nil); r.status != 200 {
		t.Fatalf("new token: %d", r.status)
	}
	if r := a.call("DELETE", "/v1/tokens/"+nt.ID, admin, nil); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := a.call("GET", "/v1/offers", nt.Secret, nil); r.status != 401 || r.problem(t).Code != "token_revoked" {
		t.Fatalf("revoked token: %d %s", r.status, r.body)
	}

	var ended rental.Allocation
	r = a.call("DELETE", id, alice, nil)
	r.decode(t, &ended)
	if r.status != 200 || ended.State != market.AllocEnded {
		t.Fatalf("end: %d %s", r.status, r.body)
	}
	if a.checked.Load() < 25 {
		t.Fatalf("only %d answers were checked against the document", a.checked.Load())
	}
}

// TestAPIAuth checks every way a request can fail to authenticate or be
// authorized, and the rate limit: problem+json with the right status and
// code, and WWW-Authenticate on 401.
func TestAPIAuth(t *testing.T) {
	t.Parallel()
	a := newAPI(t, rentaltest.Options{}, nil)
	_, reader := a.w.Token(t, "rita", market.ScopeRead)
	ctx := context.Background()
	exp, err := a.w.Svc.Tokens().Create(ctx, rental.TokenRequest{Name: "old", Scopes: []market.Scope{market.ScopeRead}, TTL: rental.Duration(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	a.w.Clock.Advance(time.Hour)
	slow, err := a.w.Svc.Tokens().Create(ctx, rental.TokenRequest{Name: "slow", Scopes: []market.Scope{market.ScopeRead}, RatePerMinute: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path, auth string
		status                   int
		code                     string
	}{
		{"no token", "GET", "/v1/offers", "", 401, "unauthorized"},
		{"basic auth", "GET", "/v1/offers", "Basic dXNlcjpwdw==", 401, "unauthorized"},
		{"unknown token", "GET", "/v1/offers", "Bearer nic_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 401, "invalid_token"},
		{"not a token", "GET", "/v1/offers", "Bearer hunter2", 401, "invalid_token"},
		{"expired", "GET", "/v1/offers", "Bearer " + exp.Secret, 401, "token_expired"},
		{"read token rents", "POST", "/v1/allocations", "Bearer " + reader, 403, "forbidden"},
		{"read token ends", "DELETE", "/v1/allocations/a1", "Bearer " + reader, 403, "forbidden"},
		{"read token lists tokens", "GET", "/v1/tokens", "Bearer " + reader, 403, "forbidden"},
		{"unknown route", "GET", "/v1/nothing", "Bearer " + reader, 404, "not_found"},
		{"wrong method", "PUT", "/v1/offers", "Bearer " + reader, 405, "method_not_allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.call(tc.method, tc.path, "", nil, "Authorization", tc.auth)
			if r.status != tc.status || r.problem(t).Code != tc.code {
				t.Fatalf("%d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
			if tc.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("no WWW-Authenticate: %v", r.header)
			}
		})
	}
	for i := range 3 {
		if r := a.call("GET", "/v1/offers", slow.Secret, nil); r.status != 200 {
			t.Fatalf("request %d within the rate: %d", i, r.status)
		}
	}
	r := a.call("GET", "/v1/offers", slow.Secret, nil)
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if r.status != 429 || r.problem(t).Code != "rate_limited" || err != nil || ra < 1 || ra > 60 {
		t.Fatalf("over the rate: %d, Retry-After %q: %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	if r := a.call("GET", "/v1/offers", reader, nil); r.status != 200 {
		t.Fatalf("another token is limited too: %d", r.status)
	}
}

// TestAPIBadInput sends every kind of bad request: each gets a clear
// problem with the right status and code, and nothing changes (no
// allocation, no lease, no miner asked).
func TestAPIBadInput(t *testing.T) {
	t.Parallel()
	a := newAPI(t, rentaltest.Options{Miners: 1}, nil)
	a.w.Verify(t, 0, h100, 1)
	_, tok := a.w.Token(t, "sam", market.ScopeRead, market.ScopeRent)
	with := func(k string, v any) map[string]any {
		b := minimal()
		b[k] = v
		return b
	}
	big := minimal()
	big["image"] = strings.Repeat("x", web.DefaultMaxBodyBytes)
	for _, tc := range []struct {
		name   string
		body   any
		hdr    []string
		status int
		code   string
	}{
		{"malformed json", `{"requirements": {"gpu_count": 1}`, nil, 400, "invalid_json"},
		{"syntax error", `{"requirements": }`, nil, 400, "invalid_json"},
		{"empty body", ``, nil, 400, "invalid_json"},
		{"trailing data", `{"requirements":{"gpu_count":1},"ssh_keys":["` + rentaltest.SSHKey + `"],"duration":"1h"} {}`, nil, 400, "invalid_json"},
		{"an array", `[1,2]`, nil, 400, "invalid_json"},
		{"unknown field", with("gpu", 1), nil, 400, "unknown_field"},
		{"unknown nested field", with("requirements", map[string]any{"gpu_count": 1, "gpus": 2}), nil, 400, "unknown_field"},
		{"oversized", big, nil, 413, "body_too_large"},
		{"not json", "gpu_count=1", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"},
		{"wrong type", with("duration", 3600), nil, 400, "invalid_request"},
		{"bad duration", with("duration", "forever"), nil, 400, "invalid_request"},
		{"duration too short", with("duration", "1s"), nil, 400, "invalid_request"},
		{"bad size", with("requirements", map[string]any{"gpu_count": 1, "ram": "lots"}), nil, 400, "invalid_request"},
		{"no ssh key", with("ssh_keys", []string{}), nil, 400, "invalid_request"},
		{"bad ssh key", with("ssh_keys", []string{"ssh-rsa notbase64"}), nil, 400, "invalid_ssh_key"},
		{"private key", with("ssh_keys", []string{"-----BEGIN OPENSSH PRIVATE KEY-----"}), nil, 400, "invalid_ssh_key"},
		{"two keys in one", with("ssh_keys", []string{rentaltest.SSHKey + "\n" + rentaltest.SSHKey}), nil, 400, "invalid_ssh_key"},
		{"key with options", with("ssh_keys", []string{`command="sh" ` + rentaltest.SSHKey}), nil, 400, "invalid_ssh_key"},
		{"impossible gpu count", with("requirements", map[string]any{"gpu_count": 99}), nil, 400, "invalid_request"},
		{"no such offer", with("requirements", map[string]any{"gpu_count": 8}), nil, 409, "no_offer"},
		{"bad image", with("image", "UPPER/CASE::tag"), nil, 400, "invalid_request"},
		{"ssh port as extra port", with("ports", []int{22}), nil, 400, "invalid_request"},
		{"tenant picks a miner", with("miner_hotkey", a.w.Miners[0].Hotkey.SS58()), nil, 403, "forbidden"},
		{"bad idempotency key", minimal(), []string{web.IdempotencyHeader, ""}, 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := a.w.Miners[0].Calls(0) + a.w.Miners[0].Calls(3)
			r := a.call("POST", "/v1/allocations", tok, tc.body, tc.hdr...)
			if r.status != tc.status || r.problem(t).Code != tc.code {
				t.Fatalf("%d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
			if p := r.problem(t); p.Detail == "" || strings.Contains(p.Detail, strings.Repeat("x", 200)) {
				t.Errorf("detail %q", p.Detail)
			}
			if after := a.w.Miners[0].Calls(0) + a.w.Miners[0].Calls(3); after != before {
				t.Errorf("a miner was asked")
			}
		})
	}
	all, err := a.w.Store.TenantAllocations(context.Background(), "", true, 100)
	if err != nil || len(all) != 0 || len(a.w.Miners[0].Leases()) != 0 {
		t.Fatalf("bad requests left allocations %+v / leases %+v (%v)", all, a.w.Miners[0].Leases(), err)
	}
	for _, tc := range []struct {
		method, path string
		body         any
		code         string
	}{
		{"GET", "/v1/offers?min_gpu_count=-1", nil, "invalid_request"},
		{"GET", "/v1/offers?ram=lots", nil, "invalid_request"},
		{"GET", "/v1/allocations?ended=maybe", nil, "invalid_request"},
		{"POST", "/v1/allocations/a1/extend", `{"duration": "1h", "extra": 1}`, "unknown_field"},
		{"POST", "/v1/allocations/a1/extend", `{"duration": "0s"}`, "invalid_request"},
		{"POST", "/v1/allocations/a1/actions", `{"action": "rm"}`, "invalid_request"},
		{"POST", "/v1/webhooks", `{"url": "gopher://x"}`, "invalid_webhook"},
		{"POST", "/v1/webhooks", `{"url": "https://example.com", "events": ["nope"]}`, "invalid_webhook"},
	} {
		r := a.call(tc.method, tc.path, tok, tc.body)
		if r.status != 400 || r.problem(t).Code != tc.code {
			t.Errorf("%s %s: %d %s, want 400 %s", tc.method, tc.path, r.status, r.body, tc.code)
		}
	}
	for _, path := range []string{"/v1/allocations/nope", "/v1/allocations/" + strings.Repeat("%ff", 50), "/v1/webhooks/nope/deliveries"} {
		if r := a.call("GET", path, tok, nil); r.status != 404 || r.problem(t).Code != "not_found" {
			t.Errorf("GET %s: %d %s", path, r.status, r.body)
		}
	}
}

// TestAPIPanicsAreProblems checks a panicking handler answers a 500
// problem without detail and the server keeps serving.
func TestAPIPanicsAreProblems(t *testing.T) {
	t.Parallel()
	var boom bool
	a := newAPI(t, rentaltest.Options{}, func(c *web.Config) {
		c.Health = func(context.Context) error {
			if boom {
				panic("boom")
			}
			return fmt.Errorf("store closed")
		}
	})
	if r := a.call("GET", "/healthz", "", nil); r.status != 503 || r.problem(t).Code != "unavailable" {
		t.Fatalf("unhealthy: %d %s", r.status, r.body)
	}
	boom = true
	r := a.call("GET", "/healthz", "", nil)
	if r.status != 500 || r.problem(t).Code != "internal" || strings.Contains(string(r.body), "boom") {
		t.Fatalf("panic: %d %s", r.status, r.body)
	}
	if r := a.call("GET", "/openapi.json", "", nil); r.status != http.StatusOK {
		t.Fatalf("after a panic: %d", r.status)
	}
}
