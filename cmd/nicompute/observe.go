package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/nicompute/nicompute/internal/dashboard"
	"github.com/nicompute/nicompute/internal/metrics"
)

// observeFlags are the daemons' --metrics.* and --dashboard flags.
type observeFlags struct {
	listen    string
	dashboard bool
}

func (o *observeFlags) register(fs *pflag.FlagSet, dashboard bool) {
	fs.StringVar(&o.listen, "metrics.listen", "", "address of the Prometheus /metrics endpoint (and the dashboard), e.g. 127.0.0.1:9101; empty: none")
	if dashboard {
		fs.BoolVar(&o.dashboard, "dashboard", true, "serve the dashboard at / on --metrics.listen")
	}
}

// observer is one daemon's metrics registry and, once serving, the HTTP
// server of /metrics and the dashboard.
type observer struct {
	reg *prometheus.Registry
	rpc *metrics.ChainRPC
	mux *http.ServeMux
	srv *metrics.Server
	log *slog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newObserver builds the registry of role with chain RPC latency.
func newObserver(role string, log *slog.Logger) (*observer, error) {
	reg := metrics.NewRegistry(role)
	rpc, err := metrics.NewChainRPC(reg)
	if err != nil {
		return nil, err
	}
	o := &observer{reg: reg, rpc: rpc, mux: http.NewServeMux(), log: log}
	o.mux.Handle("GET /metrics", metrics.Handler(reg, log))
	return o, nil
}

// registerer is the registry, or nil for a nil observer (no metrics).
func (o *observer) registerer() prometheus.Registerer {
	if o == nil {
		return nil
	}
	return o.reg
}

// observeChain is the chain clients' observer, or nil.
func (o *observer) observeChain() func(string, time.Duration, error) {
	if o == nil {
		return nil
	}
	return o.rpc.Observe
}

// dashboard mounts page at / and runs sample (the page's history) in the
// background until close.
func (o *observer) dashboard(page http.Handler, sample func(context.Context)) {
	dashboardMount(o.mux, page)
	if sample == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	o.wg.Go(func() { sample(ctx) })
}

func dashboardMount(mux *http.ServeMux, page http.Handler) { dashboard.Mount(mux, "/", page) }

// serve starts the HTTP server on listen.
func (o *observer) serve(listen string) error {
	srv, err := metrics.Listen(listen, o.mux, o.log)
	if err != nil {
		return err
	}
	o.srv = srv
	return nil
}

// URL is the server's base URL ("" before serve).
func (o *observer) URL() string {
	if o == nil || o.srv == nil {
		return ""
	}
	return o.srv.URL()
}

// Close stops the server and the sampler. It is safe on a nil observer.
func (o *observer) Close() error {
	if o == nil {
		return nil
	}
	if o.cancel != nil {
		o.cancel()
	}
	o.wg.Wait()
	if o.srv != nil {
		return o.srv.Close()
	}
	return nil
}

// startObserver builds the observer of role when --metrics.listen is set
// (nil otherwise) and makes the chain clients dialled afterwards report
// their calls to it.
func (a *app) startObserver(role string, f observeFlags) (*observer, error) {
	if f.listen == "" {
		return nil, nil
	}
	if _, _, err := net.SplitHostPort(f.listen); err != nil {
		return nil, usageErr("--metrics.listen %q: %v", f.listen, err)
	}
	o, err := newObserver(role, a.logger())
	if err != nil {
		return nil, err
	}
	a.chainObserve = o.observeChain()
	return o, nil
}

// publish starts serving (once) and says where.
func (a *app) publish(o *observer, f observeFlags) error {
	if o == nil || o.srv != nil {
		return nil
	}
	if err := o.serve(f.listen); err != nil {
		return err
	}
	a.logger().Info("metrics served", "url", o.URL()+"/metrics")
	if f.dashboard {
		a.logger().Info("dashboard served", "url", o.URL()+"/")
	}
	return nil
}

// prometheusEndpoint is the address published on chain for a metrics
// server bound to addr: its own IP when specific (a loopback one only
// suits a development chain), else fallback (the address of the default
// route).
func prometheusEndpoint(addr string, fallback func() (string, error)) (string, uint16, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", 0, fmt.Errorf("metrics port %q", port)
	}
	if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
		return ip.String(), uint16(p), nil
	}
	ip, err := fallback()
	if err != nil {
		return "", 0, errors.New("cannot tell this machine's address: bind --metrics.listen to a specific IP")
	}
	return ip, uint16(p), nil
}
