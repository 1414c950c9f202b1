package web_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental/rentaltest"
	"github.com/nicompute/nicompute/internal/web"
)

// FuzzAllocateRequest sends arbitrary bodies to POST /v1/allocations on a
// service with no miner: the server never panics or fails with a 5xx, a
// refusal is always a problem with a known code, and nothing is ever
// allocated (a valid request finds no offer).
func FuzzAllocateRequest(f *testing.F) {
	for _, seed := range []string{
		`{"requirements": {"gpu_count": 1}, "ssh_keys": ["` + rentaltest.SSHKey + `"], "duration": "1h"}`,
		`{"requirements": {"gpu_count": 1, "gpu_model": "H100", "min_vram": "80GiB", "cpu_count": 4, "ram": "16GiB", "disk": 1073741824}, "ssh_keys": ["` + rentaltest.SSHKey + `"], "duration": "7d", "password": true, "ports": [8888, 6006], "image": "ubuntu:22.04"}`,
		`{"requirements": {"gpu_count": 1e400}}`,
		`{"requirements": {"ram": "1e99GiB"}}`,
		`{"duration": "9999999999h"}`,
		`{"ssh_keys": ["ssh-ed25519 \u0000"]}`,
		`{"requirements": null, "ports": [22, -1, 70000]}`,
		`{"miner_hotkey": "5` + strings.Repeat("A", 100) + `"}`,
		`[]`, `"x"`, `{`, ``, `{"a":1}`,
	} {
		f.Add([]byte(seed))
	}
	a := newAPI(f, rentaltest.Options{}, nil)
	_, tok := a.w.Token(f, "fuzz", market.ScopeRent)
	codes := map[string]bool{}
	for _, c := range web.ProblemCodes() {
		codes[c] = true
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/v1/allocations", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		a.web.ServeHTTP(rec, req)
		if rec.Code < 400 || rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		var p web.Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || !codes[p.Code] || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("answer %d %s for %q", rec.Code, rec.Body, body)
		}
		if rec.Code == http.StatusConflict && p.Code != "no_offer" {
			t.Fatalf("conflict %s", rec.Body)
		}
	})
}
