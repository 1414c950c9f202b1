package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/allocator"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/subnet"
)

// apiFlags are `nicompute api`'s flags.
type apiFlags struct {
	w            walletFlags
	sf           subtensorFlags
	netuid       uint16
	listen       string
	dataDir      string
	validatorDir string
	tlsCert      string
	tlsKey       string
	tlsClientCA  string
	health       time.Duration
	goneAfter    time.Duration
	maxDuration  time.Duration
	minerTimeout time.Duration
	private      bool
	obs          observeFlags
	dashboard    bool
}

// dirs returns the data directories, defaulting to the wallet's.
func (f *apiFlags) dirs() (data, validator string, err error) {
	id := fmt.Sprintf("%s-%s-netuid%d", f.w.name, f.w.hotkey, f.netuid)
	data, validator = f.dataDir, f.validatorDir
	if data == "" {
		data = filepath.Join("~", ".nicompute", "api", id)
	}
	if validator == "" {
		validator = filepath.Join("~", ".nicompute", "validator", id)
	}
	if data, err = expandHome(data); err != nil {
		return "", "", err
	}
	validator, err = expandHome(validator)
	return data, validator, err
}

func (f *apiFlags) registerData(cmd *cobra.Command) {
	fs := cmd.Flags()
	f.w.register(fs)
	fs.Uint16Var(&f.netuid, "netuid", 27, "subnet id")
	fs.StringVar(&f.dataDir, "api.data", "", "state directory for api.db (default ~/.nicompute/api/WALLET-HOTKEY-netuidN)")
}

func newAPICmd(a *app) *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Serve the renters' allocation API with the validator's hotkey",
		Long: `Serve the allocation API: renters with API tokens list the miners this
validator verified with Proof-of-GPU and allocate them, signing the miners'
Allocate requests with the wallet's hotkey (as nicompute allocate does).

It reads the validator's results from --api.validator-data/validator.db and
keeps its own state in --api.data/api.db (tokens as hashes, allocations,
webhooks and their queue), so a restart loses nothing. It listens on
--api.listen (loopback by default); --api.tls-cert and --api.tls-key serve
HTTPS, and --api.tls-client-ca also requires client certificates.

Tokens: nicompute api token create --name NAME --scope read,rent prints a
token once. The API's reference is its OpenAPI document at /openapi.json.

Operators: --metrics.listen serves Prometheus metrics (requests by route,
allocations, health checks, webhook deliveries) on an address of its own;
the dashboard at /dashboard/ shows the subnet and its miners as the
validator's results show them, and the allocations and their health to a
browser signed in with an admin token (a form; the browser keeps a session
cookie, never the token).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runAPI(cmd.Context(), f) },
	}
	f.registerData(cmd)
	f.sf.register(cmd.Flags())
	fs := cmd.Flags()
	fs.StringVar(&f.listen, "api.listen", defaultAPIListen, "address the API listens on")
	fs.StringVar(&f.validatorDir, "api.validator-data", "", "the validator's state directory, holding validator.db (default ~/.nicompute/validator/WALLET-HOTKEY-netuidN)")
	fs.StringVar(&f.tlsCert, "api.tls-cert", "", "TLS certificate (PEM): serve HTTPS")
	fs.StringVar(&f.tlsKey, "api.tls-key", "", "TLS private key (PEM)")
	fs.StringVar(&f.tlsClientCA, "api.tls-client-ca", "", "CA certificates (PEM) whose client certificates are required")
	fs.DurationVar(&f.health, "api.health-interval", rental.DefaultHealthInterval, "how often live allocations are checked")
	fs.DurationVar(&f.goneAfter, "api.gone-after", rental.DefaultGoneAfter, "how long an allocation may stay offline before it is ended")
	fs.DurationVar(&f.maxDuration, "api.max-duration", rental.DefaultMaxDuration, "longest allocation, extensions included")
	fs.DurationVar(&f.minerTimeout, "api.miner-timeout", allocator.DefaultTimeout, "how long each call to a miner may take")
	fs.BoolVar(&f.private, "api.webhooks.allow-private", false, "let webhooks target loopback and private addresses (keep off when tenants are not trusted)")
	f.obs.register(fs, false)
	fs.BoolVar(&f.dashboard, "dashboard", true, "serve the operators' dashboard at /dashboard/ on --api.listen (allocations after signing in with an admin token)")
	cmd.AddCommand(newAPITokenCmd(a))
	return cmd
}

func (a *app) runAPI(ctx context.Context, f apiFlags) error {
	tlsCfg, err := serverTLS(f.tlsCert, f.tlsKey, f.tlsClientCA)
	if err != nil {
		return err
	}
	switch {
	case f.health <= 0 || f.goneAfter <= 0 || f.maxDuration < rental.MinDuration || f.minerTimeout <= 0:
		return usageErr("--api.health-interval, --api.gone-after, --api.miner-timeout must be positive and --api.max-duration at least %s", rental.MinDuration)
	}
	data, vdir, err := f.dirs()
	if err != nil {
		return err
	}
	hotkey, err := a.loadHotkey(f.w)
	if err != nil {
		return err
	}
	obs, err := a.startObserver("api", f.obs)
	if err != nil {
		return err
	}
	defer obs.Close()
	ch, err := a.dialChain(ctx, f.sf)
	if err != nil {
		return err
	}
	defer ch.Close()
	log := a.logger()
	api, err := startAPI(ctx, apiOptions{
		NetUID: subnet.NetUID(f.netuid), Hotkey: hotkey, Chain: ch, DataDir: data, ValidatorDir: vdir,
		Listen: f.listen, TLS: tlsCfg, MinerTimeout: f.minerTimeout, Log: log,
		Metrics: obs.registerer(), Dashboard: f.dashboard,
		Service: rental.Config{HealthInterval: f.health, GoneAfter: f.goneAfter, MaxDuration: f.maxDuration, AllowPrivateWebhooks: f.private},
	})
	if err != nil {
		return err
	}
	if err := a.publish(obs, f.obs); err != nil {
		return errors.Join(err, api.Close())
	}
	log.Info("allocation api serving", "url", api.URL, "data", data, "validator_data", vdir, "hotkey", hotkey.SS58())
	fmt.Fprintf(a.Out, "allocation API on %s (OpenAPI document at %s/openapi.json)\n", api.URL, api.URL)
	if api.DashboardURL != "" {
		log.Info("dashboard served", "url", api.DashboardURL)
	}
	// Runs until a signal or the server's own end, speaking sd_notify.
	return a.lifecycle(ctx, "api", api, nil, updateFlags{}, nil)
}
