// Package web serves the allocation API of internal/rental over HTTP: JSON
// under /v1, bearer tokens with scopes and per-token rate limits, errors as
// RFC 9457 problem details with stable codes, and an OpenAPI 3.1 document
// at /openapi.json generated from the same route table that registers the
// handlers (routes.go), so the document cannot drift from the code. It
// also holds the Go client `nicompute rent` uses (client.go).
//
// Extending. Config.Middleware wraps every request (outermost first) and
// RoutePattern tells such a middleware, after the request was routed,
// which route served it ("/v1/allocations/{id}"), a bounded label for
// metrics; Mount adds handlers outside /v1 (a dashboard).
package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-chi/chi/v5"
	"golang.org/x/time/rate"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental"
)

// Service is what the API serves; *rental.Service implements it. Errors
// carry market kinds, and *rental.Error a stable code.
type Service interface {
	Offers(ctx context.Context, who market.Token, f rental.OfferFilter) ([]rental.Offer, error)
	Allocate(ctx context.Context, who market.Token, r rental.AllocateRequest, idemKey string) (rental.Allocation, bool, error)
	Allocations(ctx context.Context, who market.Token, ended bool) ([]rental.Allocation, error)
	Allocation(ctx context.Context, who market.Token, id string) (rental.Allocation, error)
	Extend(ctx context.Context, who market.Token, id string, d time.Duration) (rental.Allocation, error)
	Act(ctx context.Context, who market.Token, id string, r rental.ActionRequest) (rental.Allocation, error)
	End(ctx context.Context, who market.Token, id string) (rental.Allocation, error)
	CreateWebhook(ctx context.Context, who market.Token, r rental.WebhookRequest) (rental.NewWebhook, error)
	Webhooks(ctx context.Context, who market.Token) ([]market.Webhook, error)
	DeleteWebhook(ctx context.Context, who market.Token, id string) error
	Deliveries(ctx context.Context, who market.Token, id string) ([]market.Delivery, error)
}

// Tokens authenticates and manages API tokens; *rental.Tokens implements
// it.
type Tokens interface {
	Authenticate(ctx context.Context, token string) (market.Token, error)
	Create(ctx context.Context, r rental.TokenRequest) (rental.NewToken, error)
	List(ctx context.Context) ([]market.Token, error)
	Revoke(ctx context.Context, id string) (market.Token, error)
}

// DefaultMaxBodyBytes bounds a request body.
const DefaultMaxBodyBytes = 64 << 10

// Config configures a Server. Service and Tokens are required.
type Config struct {
	Service Service
	Tokens  Tokens
	// Health, when set, is asked by GET /healthz (e.g. whether the store
	// answers); nil reports healthy.
	Health func(ctx context.Context) error
	// Middleware wraps every request, outermost first.
	Middleware []func(http.Handler) http.Handler
	// MaxBodyBytes bounds request bodies (default 64 KiB).
	MaxBodyBytes int64
	// Version is reported by /healthz and the OpenAPI document.
	Version string
	Log     *slog.Logger
}

// Server is the API's http.Handler.
type Server struct {
	cfg    Config
	log    *slog.Logger
	mux    chi.Router
	routes []route
	doc    []byte // the OpenAPI document, JSON
	spec   *openapi3.T

	// mu protects limiters: one token bucket per token id.
	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

// New builds the server and its OpenAPI document.
func New(cfg Config) (*Server, error) {
	if cfg.Service == nil || cfg.Tokens == nil {
		return nil, errors.New("web: service and tokens are required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Log.With("component", "api"), limiters: map[string]*rate.Limiter{}}
	s.routes = s.table()
	spec, doc, err := buildOpenAPI(s.routes, cfg.Version)
	if err != nil {
		return nil, fmt.Errorf("web: openapi document: %w", err)
	}
	s.spec, s.doc = spec, doc
	mux := chi.NewRouter()
	mux.Use(cfg.Middleware...)
	mux.Use(s.recoverer)
	mux.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeProblem(w, newProblem(http.StatusNotFound, "not_found", "no such route"))
	})
	mux.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		writeProblem(w, newProblem(http.StatusMethodNotAllowed, "method_not_allowed", "the route does not take this method"))
	})
	for _, rt := range s.routes {
		mux.Method(rt.method, rt.pattern, s.handler(rt))
	}
	s.mux = mux
	return s, nil
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Mount serves h under pattern (outside /v1, e.g. "/dashboard"); the
// server's middleware applies to it too.
func (s *Server) Mount(pattern string, h http.Handler) { s.mux.Mount(pattern, h) }

// OpenAPI returns the API's OpenAPI 3.1 document as JSON.
func (s *Server) OpenAPI() []byte { return append([]byte(nil), s.doc...) }

// Spec returns the parsed OpenAPI document (do not modify it).
func (s *Server) Spec() *openapi3.T { return s.spec }

// RoutePattern returns the pattern of the route that served r, such as
// "/v1/allocations/{id}", once the request has been routed ("" before,
// and for requests no route matched).
func RoutePattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		return rc.RoutePattern()
	}
	return ""
}

// recoverer turns a handler's panic into a logged 500 problem.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panicked", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
				writeProblem(w, newProblem(http.StatusInternalServerError, "internal", ""))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// handler authenticates, authorizes and rate-limits a request for rt,
// then runs it.
func (s *Server) handler(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var who market.Token
		if rt.scope != "" {
			var err error
			if who, err = s.authenticate(r); err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="nicompute"`)
				writeError(w, r, s.log, err)
				return
			}
			if !who.Has(rt.scope) {
				writeProblem(w, newProblem(http.StatusForbidden, "forbidden", fmt.Sprintf("this route needs a token with the %s scope", rt.scope)))
				return
			}
			if wait, ok := s.allow(who); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
				writeProblem(w, newProblem(http.StatusTooManyRequests, "rate_limited",
					fmt.Sprintf("this token may make %d requests a minute", who.RatePerMinute)))
				return
			}
		}
		status, body, err := rt.handle(w, r, who)
		switch {
		case err != nil:
			writeError(w, r, s.log, err)
		case body == nil:
			w.WriteHeader(status)
		default:
			writeJSON(w, status, body)
		}
	})
}

// authenticate reads the bearer token. Errors: EUNAUTHORIZED problems.
func (s *Server) authenticate(r *http.Request) (market.Token, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return market.Token{}, newProblem(http.StatusUnauthorized, "unauthorized", "send an API token: Authorization: Bearer nic_…")
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return market.Token{}, newProblem(http.StatusUnauthorized, "unauthorized", "the Authorization header must be \"Bearer <token>\"")
	}
	return s.cfg.Tokens.Authenticate(r.Context(), strings.TrimSpace(tok))
}

// allow takes one request from who's token bucket (RatePerMinute a
// minute, bursts of as many); when empty it returns how long until the
// next request is allowed.
func (s *Server) allow(who market.Token) (time.Duration, bool) {
	per := max(who.RatePerMinute, 1)
	s.mu.Lock()
	lim := s.limiters[who.ID]
	if lim == nil || lim.Burst() != per {
		lim = rate.NewLimiter(rate.Limit(float64(per)/60), per)
		s.limiters[who.ID] = lim
	}
	s.mu.Unlock()
	now := time.Now()
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}

// Timeouts of Serve. An allocation may ask several miners in turn, each
// for up to a minute, before it answers.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 5 * time.Minute
	IdleTimeout       = 2 * time.Minute
	ShutdownTimeout   = 10 * time.Second
)

// Serve serves the API on ln (over TLS when tlsCfg is set) until ctx ends,
// then shuts down, letting running requests finish for a while.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsCfg *tls.Config) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			_ = hs.Close()
		}
	}()
	err := hs.Serve(ln)
	cancel()
	<-stopped
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
