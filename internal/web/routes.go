package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental"
)

// route is one endpoint: how it is served and how it is documented.
type route struct {
	method, pattern string
	id, summary     string
	// scope is the token scope required; "" serves without a token.
	scope market.Scope
	// body is the request body's type (a zero value), or nil.
	body any
	// query documents the query parameters.
	query []param
	// headers documents request headers.
	headers []param
	// status and resp are the success answer: its status and body's type
	// (nil: no body); also lists other success statuses.
	status int
	resp   any
	also   []int
	// errors are the problem statuses the route answers besides those of
	// authentication (401, 403, 429) and bad input (400, 413, 415).
	errors []int
	handle func(w http.ResponseWriter, r *http.Request, who market.Token) (int, any, error)
}

// param documents a query parameter or header.
type param struct {
	name, typ, desc string
}

// Health is the body of GET /healthz.
type Health struct {
	Status  string `json:"status"`
	Version string `json:"version,omitempty"`
}

// List bodies.
type (
	OfferList struct {
		Offers []rental.Offer `json:"offers"`
	}
	AllocationList struct {
		Allocations []rental.Allocation `json:"allocations"`
	}
	WebhookList struct {
		Webhooks []market.Webhook `json:"webhooks"`
	}
	DeliveryList struct {
		Deliveries []market.Delivery `json:"deliveries"`
	}
	TokenList struct {
		Tokens []market.Token `json:"tokens"`
	}
)

// IdempotencyHeader makes POST /v1/allocations safe to retry.
const IdempotencyHeader = "Idempotency-Key"

// table is the API's routes, in the order the document lists them.
func (s *Server) table() []route {
	idem := param{IdempotencyHeader, "string", "1 to 255 printable characters; a retried request with the same key and body answers the allocation the first one made (200) instead of renting twice"}
	return []route{
		{method: "GET", pattern: "/healthz", id: "health", summary: "Liveness: the API and its store answer",
			status: 200, resp: Health{}, errors: []int{503}, handle: s.health},
		{method: "GET", pattern: "/openapi.json", id: "openapi", summary: "This OpenAPI 3.1 document",
			status: 200, handle: s.openapi},

		{method: "GET", pattern: "/v1/offers", id: "listOffers", scope: market.ScopeRead,
			summary: "What can be rented now: miners whose GPUs this validator verified, grouped by verified model and count (hotkeys for admins only)",
			query: []param{
				{"gpu_model", "string", "model name, matched case-insensitively as a substring"},
				{"min_gpu_count", "integer", "at least this many GPUs"},
				{"min_vram", "string", "at least this much memory per GPU (\"80GiB\" or bytes)"},
				{"cpu_count", "integer", "at least this many free CPUs"},
				{"ram", "string", "at least this much free memory"},
				{"disk", "string", "at least this much free disk"},
			},
			status: 200, resp: OfferList{}, errors: []int{503}, handle: s.listOffers},

		{method: "GET", pattern: "/v1/allocations", id: "listAllocations", scope: market.ScopeRead,
			summary: "The tenant's allocations (an admin's: every tenant's), newest first; never a secret",
			query:   []param{{"ended", "boolean", "also list ended allocations"}},
			status:  200, resp: AllocationList{}, handle: s.listAllocations},
		{method: "POST", pattern: "/v1/allocations", id: "createAllocation", scope: market.ScopeRent,
			summary: "Allocate a machine: by requirements (verified miners only, best score first, the next one tried when one refuses) or by miner hotkey (admin); the password, when asked for, is in this answer only",
			headers: []param{idem}, body: rental.AllocateRequest{},
			status: 201, resp: rental.Allocation{}, also: []int{200}, errors: []int{404, 409, 503}, handle: s.createAllocation},
		{method: "GET", pattern: "/v1/allocations/{id}", id: "getAllocation", scope: market.ScopeRead,
			summary: "One allocation; never a secret", status: 200, resp: rental.Allocation{}, errors: []int{404}, handle: s.getAllocation},
		{method: "DELETE", pattern: "/v1/allocations/{id}", id: "endAllocation", scope: market.ScopeRent,
			summary: "End an allocation: the miner is told; 200 once it confirmed (state ended), 202 while the end is retried in the background (state ending)",
			status:  200, resp: rental.Allocation{}, also: []int{202}, errors: []int{404, 409}, handle: s.endAllocation},
		{method: "POST", pattern: "/v1/allocations/{id}/extend", id: "extendAllocation", scope: market.ScopeRent,
			summary: "Add time to an allocation's end", body: rental.ExtendRequest{},
			status: 200, resp: rental.Allocation{}, errors: []int{404, 409, 503}, handle: s.extendAllocation},
		{method: "POST", pattern: "/v1/allocations/{id}/actions", id: "actOnAllocation", scope: market.ScopeRent,
			summary: "Restart, pause or unpause the lease's container, or replace its SSH keys (exchange_key)", body: rental.ActionRequest{},
			status: 200, resp: rental.Allocation{}, errors: []int{404, 409, 503}, handle: s.actOnAllocation},

		{method: "GET", pattern: "/v1/webhooks", id: "listWebhooks", scope: market.ScopeRead,
			summary: "The tenant's webhooks (never their secrets)", status: 200, resp: WebhookList{}, handle: s.listWebhooks},
		{method: "POST", pattern: "/v1/webhooks", id: "createWebhook", scope: market.ScopeRent,
			summary: "Subscribe to allocation events; deliveries are signed with the secret answered here once (" + rental.SignatureHeader + ": t=<unix>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">)",
			body:    rental.WebhookRequest{}, status: 201, resp: rental.NewWebhook{}, errors: []int{409}, handle: s.createWebhook},
		{method: "DELETE", pattern: "/v1/webhooks/{id}", id: "deleteWebhook", scope: market.ScopeRent,
			summary: "Delete a webhook; its pending deliveries are dropped", status: 204, errors: []int{404}, handle: s.deleteWebhook},
		{method: "GET", pattern: "/v1/webhooks/{id}/deliveries", id: "listDeliveries", scope: market.ScopeRead,
			summary: "A webhook's newest deliveries and their attempts", status: 200, resp: DeliveryList{}, errors: []int{404}, handle: s.listDeliveries},

		{method: "GET", pattern: "/v1/tokens", id: "listTokens", scope: market.ScopeAdmin,
			summary: "Every API token (never a secret)", status: 200, resp: TokenList{}, handle: s.listTokens},
		{method: "POST", pattern: "/v1/tokens", id: "createToken", scope: market.ScopeAdmin,
			summary: "Create an API token; the token is in this answer only (only its hash is stored)", body: rental.TokenRequest{},
			status: 201, resp: rental.NewToken{}, handle: s.createToken},
		{method: "DELETE", pattern: "/v1/tokens/{id}", id: "revokeToken", scope: market.ScopeAdmin,
			summary: "Revoke an API token", status: 200, resp: market.Token{}, errors: []int{404}, handle: s.revokeToken},
	}
}

func (s *Server) health(_ http.ResponseWriter, r *http.Request, _ market.Token) (int, any, error) {
	if s.cfg.Health != nil {
		if err := s.cfg.Health(r.Context()); err != nil {
			s.log.Warn("health check failed", "err", err)
			return 0, nil, newProblem(http.StatusServiceUnavailable, "unavailable", "the API's store does not answer")
		}
	}
	return 200, Health{Status: "ok", Version: s.cfg.Version}, nil
}

func (s *Server) openapi(_ http.ResponseWriter, _ *http.Request, _ market.Token) (int, any, error) {
	return 200, rawJSON(s.doc), nil
}

// queryInt reads a non-negative integer query parameter.
func queryInt(q url.Values, name string) (int, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 1<<20 {
		return 0, newProblem(http.StatusBadRequest, "invalid_request", name+" must be a non-negative integer")
	}
	return n, nil
}

// querySize reads a size query parameter ("80GiB" or bytes).
func querySize(q url.Values, name string) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := rental.ParseSize(v)
	if err != nil {
		return 0, newProblem(http.StatusBadRequest, "invalid_request", name+": "+clip(err.Error()))
	}
	return n, nil
}

func (s *Server) listOffers(_ http.ResponseWriter, r *http.Request, who market.Token) (int, any, error) {
	q := r.URL.Query()
	var f rental.OfferFilter
	var err error
	f.GPUModel = strings.TrimSpace(q.Get("gpu_model"))
	if len(f.GPUModel) > market.MaxGPUTypeLen {
		return 0, nil, newProblem(http.StatusBadRequest, "invalid_request", "gpu_model is too long")
	}
	if f.MinGPUCount, err = queryInt(q, "min_gpu_count"); err != nil {
		return 0, nil, err
	}
	if f.CPUs, err = queryInt(q, "cpu_count"); err != nil {
		return 0, nil, err
	}
	if f.MinVRAM, err = querySize(q, "min_vram"); err != nil {
		return 0, nil, err
	}
	if f.RAM, err = querySize(q, "ram"); err != nil {
		return 0, nil, err
	}
	if f.Disk, err = querySize(q, "disk"); err != nil {
		return 0, nil, err
	}
	offers, err := s.cfg.Service.Offers(r.Context(), who, f)
	if offers == nil {
		offers = []rental.Offer{}
	}
	return 200, OfferList{Offers: offers}, err
}

func (s *Server) listAllocations(_ http.ResponseWriter, r *http.Request, who market.Token) (int, any, error) {
	ended := false
	switch v := r.URL.Query().Get("ended"); v {
	case "", "false", "0":
	case "true", "1":
		ended = true
	default:
		return 0, nil, newProblem(http.StatusBadRequest, "invalid_request", "ended must be true or false")
	}
	list, err := s.cfg.Service.Allocations(r.Context(), who, ended)
	if list == nil {
		list = []rental.Allocation{}
	}
	return 200, AllocationList{Allocations: list}, err
}

func (s *Server) createAllocation(w http.ResponseWriter, r *http.Request, who market.Token) (int, any, error) {
	var req rental.AllocateRequest
	if err := decode(r, &req, s.cfg.MaxBodyBytes); err != nil {
		return 0, nil, err
	}
	key := r.Header.Get(IdempotencyHeader)
	if _, ok := r.Header[http.CanonicalHeaderKey(IdempotencyHeader)]; ok {
		if err := rental.CheckIdempotencyKey(key); err != nil {
			return 0, nil, err
		}
	}
	a, created, err := s.cfg.Service.Allocate(r.Context(), who, req, key)
	if err != nil {
		return 0, nil, err
	}
	w.Header().Set("Location", "/v1/allocations/"+a.ID)
	if !created {
		w.Header().Set("Idempotent-Replayed", "true")
		return 200, a, nil
	}
	return 201, a, nil
}

func (s *Server) getAllocation(_ http.ResponseWriter, r *http.Request, who market.Token) (int, any, error) {
	a, err := s.cfg.Service.Allocation(r.Context(), who, chi.URLParam(r, "id"))
	return 200, a, err
}

func (s *Server) endAllocation(_ http.ResponseWriter, r *http.Request, who market.Token) (int, any, error) {
	a, err := s.cfg.Service.End(r.Context(), who, chi.URLParam(r, "id"))
	if err == nil && a.State != market.AllocEnded {
		return 202, a, nil
	}
	return 200, a, err
}

func (s *Server) extendAllocation(_ http.ResponseWriter, r *http.Request, who market.Token) (int, any, error) {
	var req rental.ExtendRequest
	if err := decode(r, &req, s.cfg.MaxBodyBytes); err != nil {
		return 0, nil, err
	}
	a, err := s.cfg.Service.Extend(r.Context(), who, chi.URLParam(r, "id"), time.Duration(req.Duration))
	return 200, a, err
}

func (s *Server) actOnAllocation(_ http.ResponseWriter, r *http.Request, who market.Token) (int, any, error) {
	var req rental.ActionRequest
	if err := decode(r, &req, s.cfg.MaxBodyBytes); err != nil {
		return 0, nil, err
	}
	a, err := s.cfg.Service.Act(r.Context(), who, chi.URLParam(r, "id"), req)
	return 200, a, err
}

func (s *Server) listWebhooks(_ http.ResponseWriter, r *http.Request, who market.Token) (int, any, error) {
	list, err := s.cfg.Service.Webhooks(r.Context(), who)
	return 200, WebhookList{Webhooks: list}, err
}

func (s *Server) createWebhook(_ http.ResponseWriter, r *http.Request, who market.Token) (int, any, error) {
	var req rental.WebhookRequest
	if err := decode(r, &req, s.cfg.MaxBodyBytes); err != nil {
		return 0, nil, err
	}
	wh, err := s.cfg.Service.CreateWebhook(r.Context(), who, req)
	return 201, wh, err
}

func (s *Server) deleteWebhook(_ http.ResponseWriter, r *http.Request, who market.Token) (int, any, error) {
	return 204, nil, s.cfg.Service.DeleteWebhook(r.Context(), who, chi.URLParam(r, "id"))
}

func (s *Server) listDeliveries(_ http.ResponseWriter, r *http.Request, who market.Token) (int, any, error) {
	list, err := s.cfg.Service.Deliveries(r.Context(), who, chi.URLParam(r, "id"))
	return 200, DeliveryList{Deliveries: list}, err
}

func (s *Server) listTokens(_ http.ResponseWriter, r *http.Request, _ market.Token) (int, any, error) {
	list, err := s.cfg.Tokens.List(r.Context())
	return 200, TokenList{Tokens: list}, err
}

func (s *Server) createToken(_ http.ResponseWriter, r *http.Request, _ market.Token) (int, any, error) {
	var req rental.TokenRequest
	if err := decode(r, &req, s.cfg.MaxBodyBytes); err != nil {
		return 0, nil, err
	}
	t, err := s.cfg.Tokens.Create(r.Context(), req)
	return 201, t, err
}

func (s *Server) revokeToken(_ http.ResponseWriter, r *http.Request, _ market.Token) (int, any, error) {
	t, err := s.cfg.Tokens.Revoke(r.Context(), chi.URLParam(r, "id"))
	if market.ErrorCode(err) == market.ENOTFOUND {
		err = newProblem(http.StatusNotFound, "not_found", "no such token")
	}
	return 200, t, err
}
