package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/nicompute/nicompute/internal/devnet"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental"
)

// startDevnetAPI starts the allocation API with the devnet validator's
// hotkey and results into svc, with its metrics on a port of their own and
// its dashboard, records their endpoints, and makes sure its admin token
// file holds a working admin token.
func (a *app) startDevnetAPI(ctx context.Context, o devnetOptions, paths devnet.Paths, l *devnet.Layout, endpoint string, svc *devnetServices) error {
	aobs, client, err := svc.obs.daemon(ctx, "api", endpoint)
	if err != nil {
		return err
	}
	api, err := startAPI(ctx, apiOptions{
		NetUID: l.NetUID, Hotkey: l.Validator.Hotkey, Chain: client,
		DataDir: paths.API, ValidatorDir: paths.Validator, Listen: o.apiListen,
		Metrics: aobs.reg, Dashboard: true,
		Log: a.logger().With("component", "api"),
		Service: rental.Config{
			HealthInterval:       max(5*o.blockTime, 2*time.Second),
			GoneAfter:            2 * time.Minute,
			MetagraphTTL:         max(2*o.blockTime, time.Second), // fast blocks: keep the dashboard's block current
			AllowPrivateWebhooks: true,                            // a development subnet on loopback
		},
	})
	if err != nil {
		return fmt.Errorf("start devnet api: %w", err)
	}
	svc.api = api
	svc.obs.eps["api"], svc.obs.eps["api.dashboard"] = api.URL, api.DashboardURL
	if err := svc.obs.serve(aobs, "api", false); err != nil {
		return err
	}
	if err := ensureAdminToken(ctx, api.Tokens(), paths.AdminToken); err != nil {
		return fmt.Errorf("devnet admin token: %w", err)
	}
	return nil
}

// ensureAdminToken keeps a working admin token in path: the one there
// when it still authenticates, else a new one.
func ensureAdminToken(ctx context.Context, t *rental.Tokens, path string) error {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if _, err := t.Authenticate(ctx, strings.TrimSpace(string(b))); err == nil {
			return nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	nt, err := t.Create(ctx, rental.TokenRequest{Name: "devnet-admin", Scopes: []market.Scope{market.ScopeAdmin}, RatePerMinute: rental.MaxRatePerMinute})
	if err != nil {
		return err
	}
	return devnet.WriteSecret(path, nt.Secret)
}
