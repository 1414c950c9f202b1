// Package metrics builds the Prometheus registry each nicompute daemon
// serves on --metrics.listen, and the instruments shared by several
// daemons: the build identity, chain RPC latency (client and node side)
// and HTTP requests by route. Every daemon gets its own registry, never
// the global one, because devnet runs many miners in one process; each
// package registers its own metric set (miner/metrics.go,
// validator/metrics.go, chain/local/metrics.go, hostinfo/metrics.go) on
// the registerer it is given.
//
// Names follow Prometheus conventions: the nicompute_ prefix, _total on
// counters, base units (_seconds, _bytes, _ratio, _celsius, _watts). No
// label carries a lease id, a renter, a token or an IP address: labels
// take values from small fixed sets (a synapse name, an error code, a
// route pattern, a GPU index).
package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/version"
)

// NewRegistry returns a registry holding the Go runtime and process
// collectors and nicompute_build_info{version,commit,goversion,role} = 1.
func NewRegistry(role string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	info := version.Get()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "nicompute_build_info",
		Help: "The running build (value 1): version, commit, Go version and the daemon's role.",
		ConstLabels: prometheus.Labels{
			"version": info.Version, "commit": info.Commit, "goversion": info.GoVersion, "role": role,
		},
	})
	build.Set(1)
	reg.MustRegister(build,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg in the Prometheus text (or OpenMetrics) format. A
// collector that fails is logged and left out; the others are served.
func Handler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slogPrinter{log},
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            reg,
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	})
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("metrics: " + fmt.Sprint(v...)) }

// Server is an HTTP server on its own listener: /metrics and whatever
// else the daemon mounts on its mux (the dashboard).
type Server struct {
	ln  net.Listener
	hs  *http.Server
	err chan error
}

// Listen binds addr ("127.0.0.1:9101", ":0") and serves h on it until
// Close.
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen %s: %w", addr, err)
	}
	s := &Server{ln: ln, err: make(chan error, 1), hs: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}
	go func() {
		err := s.hs.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.err <- err
	}()
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the server's base URL (http://host:port).
func (s *Server) URL() string { return "http://" + s.Addr() }

// Close stops the server at once. It is idempotent.
func (s *Server) Close() error {
	err := s.hs.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// ChainRPC records the latency of chain calls by method and result
// ("ok" or the error code the chain client classified).
type ChainRPC struct {
	seconds *prometheus.HistogramVec
}

// rpcBuckets span a loopback call (~1 ms) to a slow public node (~30 s).
var rpcBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// NewChainRPC registers nicompute_chain_rpc_duration_seconds on reg: the
// calls a miner or a validator makes to its chain.
func NewChainRPC(reg prometheus.Registerer) (*ChainRPC, error) {
	const name = "nicompute_chain_rpc_duration_seconds"
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: name, Help: "Chain calls made by this daemon, by method and result (ok or an error code).", Buckets: rpcBuckets,
	}, []string{"method", "result"})
	if err := reg.Register(h); err != nil {
		return nil, fmt.Errorf("register %s: %w", name, err)
	}
	return &ChainRPC{seconds: h}, nil
}

// Observe records one call that took d and failed with err (nil: ok);
// the result label is the error's subnet code. method must come from a
// fixed set (the client's method names). A nil *ChainRPC records nothing.
func (c *ChainRPC) Observe(method string, d time.Duration, err error) {
	if c == nil {
		return
	}
	code := subnet.ErrorCode(err)
	if code == "" {
		code = "ok"
	}
	c.seconds.WithLabelValues(method, code).Observe(d.Seconds())
}

// HTTP records HTTP requests by route pattern, method and status code.
type HTTP struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

// NewHTTP registers nicompute_http_requests_total{route,method,code} and
// nicompute_http_request_duration_seconds{route} on reg.
func NewHTTP(reg prometheus.Registerer) (*HTTP, error) {
	h := &HTTP{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicompute_http_requests_total",
			Help: "HTTP requests served, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nicompute_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{h.requests, h.seconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register http metrics: %w", err)
		}
	}
	return h, nil
}

// Wrap returns next instrumented under route, a pattern such as
// "GET /v1/allocations/{id}" (never the request's own path, which may
// carry ids). A nil *HTTP returns next.
func (h *HTTP) Wrap(route string, next http.Handler) http.Handler {
	return h.wrap(func(*http.Request) string { return route }, next)
}

// UnmatchedRoute labels requests that no route served.
const UnmatchedRoute = "unmatched"

// Middleware instruments every request under the route pattern that route
// returns once the request has been served: a router knows the pattern
// only after routing (web.RoutePattern). An empty pattern (no route
// matched) is labelled UnmatchedRoute, never with the request's path. A
// nil *HTTP returns next unchanged.
func (h *HTTP) Middleware(route func(*http.Request) string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return h.wrap(func(r *http.Request) string {
			if p := route(r); p != "" {
				return p
			}
			return UnmatchedRoute
		}, next)
	}
}

// wrap counts next's requests under the label route gives after each.
func (h *HTTP) wrap(route func(*http.Request) string, next http.Handler) http.Handler {
	if h == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		label := route(r)
		h.requests.WithLabelValues(label, methodLabel(r.Method), strconv.Itoa(sw.code)).Inc()
		h.seconds.WithLabelValues(label).Observe(time.Since(start).Seconds())
	})
}

// methodLabel keeps the method label to the standard methods.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
