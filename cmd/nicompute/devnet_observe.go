package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"

	"github.com/nicompute/nicompute/internal/chain/local"
	"github.com/nicompute/nicompute/internal/devnet"
)

// devnetObservers give each devnet daemon its own metrics registry, its
// own chain client (so chain RPC latency is per daemon) and its own
// loopback HTTP server for /metrics and the dashboard, and collect the
// endpoints devnet prints and writes to endpoints.json.
type devnetObservers struct {
	log       *slog.Logger
	port      int // next port; 0: free ports
	observers []*observer
	clients   []*local.Client
	eps       map[string]string
}

func newDevnetObservers(firstPort int, log *slog.Logger) *devnetObservers {
	return &devnetObservers{log: log, port: firstPort, eps: map[string]string{}}
}

// observer returns a new registry of role.
func (d *devnetObservers) observer(role string) (*observer, error) {
	o, err := newObserver(role, d.log)
	if err != nil {
		return nil, err
	}
	d.observers = append(d.observers, o)
	return o, nil
}

// dial connects a chain client that reports its calls to o.
func (d *devnetObservers) dial(ctx context.Context, endpoint string, o *observer) (*local.Client, error) {
	c, err := local.Dial(ctx, endpoint, local.WithObserver(o.observeChain()))
	if err != nil {
		return nil, err
	}
	d.clients = append(d.clients, c)
	return c, nil
}

// serve starts o on the next loopback port and records its endpoints
// under name (and the dashboard's, when it has one).
func (d *devnetObservers) serve(o *observer, name string, dashboard bool) error {
	port := 0
	if d.port > 0 {
		port = d.port
		d.port++
	}
	if err := o.serve(net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
		return fmt.Errorf("devnet %s metrics: %w", name, err)
	}
	d.eps[name+".metrics"] = o.URL() + "/metrics"
	if dashboard {
		d.eps[name+".dashboard"] = o.URL() + "/"
	}
	return nil
}

// write records the endpoints (and the chain's) in root/endpoints.json.
func (d *devnetObservers) write(root, chain string) error {
	d.eps["chain"] = chain
	return devnet.WriteEndpoints(root, d.eps)
}

// print lists the endpoints, sorted.
func (d *devnetObservers) print(w io.Writer, root string) {
	var names []string
	for n := range d.eps {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "\nendpoints (also in %s):\n", root+"/"+devnet.EndpointsFile)
	for _, n := range names {
		fmt.Fprintf(w, "  %-22s %s\n", n, d.eps[n])
	}
}

// close stops the servers and the clients.
func (d *devnetObservers) close() error {
	var errs []error
	for _, o := range d.observers {
		errs = append(errs, o.Close())
	}
	for _, c := range d.clients {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// daemon returns a new observer of role and a chain client reporting to it.
func (d *devnetObservers) daemon(ctx context.Context, role, endpoint string) (*observer, *local.Client, error) {
	o, err := d.observer(role)
	if err != nil {
		return nil, nil, err
	}
	c, err := d.dial(ctx, endpoint, o)
	if err != nil {
		return nil, nil, fmt.Errorf("devnet %s: connect to the chain: %w", role, err)
	}
	return o, c, nil
}
