package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nicompute/nicompute/internal/allocator"
	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/metrics"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/sqlite"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/version"
	"github.com/nicompute/nicompute/internal/web"
)

// defaultAPIListen is the API's address: loopback, SN27's register_api
// port.
const defaultAPIListen = "127.0.0.1:8903"

// apiChain is what the API reads of the chain: the metagraph (the
// service) and the tempo (the dashboard).
type apiChain interface {
	rental.Chain
	Hyperparameters(ctx context.Context, netuid subnet.NetUID) (subnet.Hyperparameters, error)
}

// apiOptions configure one allocation API; `nicompute api` fills them from
// its flags and devnet builds one.
type apiOptions struct {
	NetUID subnet.NetUID
	Hotkey *keys.Keypair
	Chain  apiChain
	// DataDir holds api.db; ValidatorDir the validator's validator.db.
	DataDir      string
	ValidatorDir string
	Listen       string
	// TLS, when set, serves HTTPS.
	TLS     *tls.Config
	Service rental.Config
	// MinerTimeout bounds each call to a miner.
	MinerTimeout time.Duration
	// Metrics, when set, receives the service's series and the requests
	// by route; Dashboard serves the operators' page at /dashboard/.
	Metrics   prometheus.Registerer
	Dashboard bool
	Log       *slog.Logger
}

// dashboardPath is where the API serves its dashboard.
const dashboardPath = "/dashboard/"

// runningAPI is a serving API with what it owns.
type runningAPI struct {
	*rental.Service
	URL string
	// DashboardURL is the dashboard's address ("" when it is off).
	DashboardURL string
	db           *sqlite.DB
	vdb          *sqlite.DB
	d            *axon.Dendrite
	// cancel stops serving and the dashboard's sampler.
	cancel context.CancelFunc
	bg     sync.WaitGroup
	// served is closed once the server stopped, serveErr saying why.
	served    chan struct{}
	serveErr  error
	closeOnce sync.Once
	closeErr  error
}

// Done is closed once the API stopped serving.
func (r *runningAPI) Done() <-chan struct{} { return r.served }

// Err is why the API stopped serving (nil when it was closed), once Done
// is closed.
func (r *runningAPI) Err() error {
	select {
	case <-r.served:
		return r.serveErr
	default:
		return nil
	}
}

// Close stops serving, then the service, then closes its stores. It is
// idempotent.
func (r *runningAPI) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		<-r.served
		r.bg.Wait()
		r.closeErr = errors.Join(r.serveErr, r.Service.Close(), r.d.Close(), r.db.Close(), r.vdb.Close())
	})
	return r.closeErr
}

// openRentalDB opens the API's store in dir.
func openRentalDB(ctx context.Context, dir string) (*sqlite.DB, error) {
	db, err := sqlite.Open(ctx, filepath.Join(dir, "api.db"), sqlite.RentalSchema)
	if err != nil {
		return nil, fmt.Errorf("open the api store: %w", err)
	}
	return db, nil
}

// startAPI wires the stores, a dendrite signed by the hotkey and the
// chain into the rental service and serves it, with its metrics and
// dashboard when asked. The caller keeps the chain.
func startAPI(ctx context.Context, o apiOptions) (_ *runningAPI, err error) {
	db, err := openRentalDB(ctx, o.DataDir)
	if err != nil {
		return nil, err
	}
	closers := []func() error{db.Close}
	defer func() {
		if err != nil {
			for _, c := range closers {
				_ = c()
			}
		}
	}()
	vdb, err := sqlite.Open(ctx, filepath.Join(o.ValidatorDir, "validator.db"), sqlite.ValidatorSchema)
	if err != nil {
		return nil, fmt.Errorf("open the validator's results: %w", err)
	}
	closers = append(closers, vdb.Close)
	d := axon.NewDendrite(o.Hotkey, axon.WithVersion(int64(version.Int())))
	closers = append(closers, d.Close)
	cfg := o.Service
	cfg.NetUID, cfg.Hotkey, cfg.Log, cfg.Metrics = o.NetUID, o.Hotkey.SS58(), o.Log, o.Metrics
	vstore := sqlite.NewValidatorStore(vdb)
	svc, err := rental.New(ctx, rental.Deps{
		Chain: o.Chain, Verifier: vstore, Store: sqlite.NewRentalStore(db),
		Miners: allocator.New(d, o.MinerTimeout),
	}, cfg)
	if err != nil {
		return nil, err
	}
	closers = append(closers, svc.Close)
	var middleware []func(http.Handler) http.Handler
	if o.Metrics != nil {
		hm, err := metrics.NewHTTP(o.Metrics)
		if err != nil {
			return nil, err
		}
		middleware = append(middleware, hm.Middleware(web.RoutePattern))
	}
	srv, err := web.New(web.Config{
		Service: svc, Tokens: svc.Tokens(), Version: version.Get().Version, Log: o.Log, Middleware: middleware,
		Health: func(ctx context.Context) error { return db.SQL().PingContext(ctx) },
	})
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	r := &runningAPI{Service: svc, db: db, vdb: vdb, d: d, cancel: cancel, served: make(chan struct{})}
	if o.Dashboard {
		page, sample := apiDashboard(svc, vstore, o.Chain, o.NetUID, o.Hotkey.SS58(), o.Log)
		srv.Mount(strings.TrimSuffix(dashboardPath, "/"), page)
		r.bg.Go(func() { sample(sctx) })
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		cancel()
		r.bg.Wait()
		return nil, fmt.Errorf("api listen on %s: %w", o.Listen, err)
	}
	scheme := "http"
	if o.TLS != nil {
		scheme = "https"
	}
	r.URL = scheme + "://" + ln.Addr().String()
	if o.Dashboard {
		r.DashboardURL = r.URL + dashboardPath
	}
	go func() {
		r.serveErr = srv.Serve(sctx, ln, o.TLS)
		close(r.served)
	}()
	return r, nil
}

// serverTLS loads the API's certificate and, with a CA file, requires
// client certificates it signed (SN27's register_api authenticates that
// way).
func serverTLS(cert, key, clientCA string) (*tls.Config, error) {
	switch {
	case cert == "" && key == "" && clientCA == "":
		return nil, nil
	case cert == "" || key == "":
		return nil, usageErr("--api.tls-cert and --api.tls-key go together")
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, usageErr("--api.tls-cert/--api.tls-key: %v", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pool, err := certPool(clientCA)
		if err != nil {
			return nil, usageErr("--api.tls-client-ca: %v", err)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// certPool reads PEM certificates from path.
func certPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
