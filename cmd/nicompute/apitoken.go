package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/sqlite"
)

// withTokens opens the API's store named by f and runs fn on its tokens.
func withTokens(ctx context.Context, f *apiFlags, fn func(*rental.Tokens) error) error {
	data, _, err := f.dirs()
	if err != nil {
		return err
	}
	db, err := openRentalDB(ctx, data)
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(rental.NewTokens(sqlite.NewRentalStore(db), nil))
}

func newAPITokenCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke the API's tokens (only their hashes are stored)",
	}
	cmd.AddCommand(newAPITokenCreateCmd(a), newAPITokenListCmd(a), newAPITokenRevokeCmd(a))
	return cmd
}

func newAPITokenCreateCmd(a *app) *cobra.Command {
	var f apiFlags
	var name, tenant, scopes string
	var rate int
	var ttl time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create an API token and print it once",
		Long: `Create an API token. The token is printed once: only its SHA-256 is
stored. Its tenant (default: its name) owns the allocations and webhooks
it creates; tokens of one tenant see the same allocations. Scopes: read
(offers, own allocations and webhooks), rent (allocate, extend, act, end;
webhooks), admin (every tenant, allocation by miner hotkey, tokens).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sc, err := market.ParseScopes(scopes)
			if err != nil {
				return usageErr("--scope: %v", err)
			}
			if ttl < 0 {
				return usageErr("--ttl must not be negative")
			}
			return withTokens(cmd.Context(), &f, func(t *rental.Tokens) error {
				nt, err := t.Create(cmd.Context(), rental.TokenRequest{Name: name, Tenant: tenant, Scopes: sc, RatePerMinute: rate, TTL: rental.Duration(ttl)})
				if market.ErrorCode(err) == market.EINVALID {
					return usageErr("%v", err)
				}
				if err != nil {
					return err
				}
				if asJSON {
					return a.printJSON(nt)
				}
				fmt.Fprintf(a.Out, "token %s for tenant %s, scopes %s, %d requests/minute\n", nt.ID, nt.Tenant, scopeList(nt.Scopes), nt.RatePerMinute)
				if !nt.ExpiresAt.IsZero() {
					fmt.Fprintf(a.Out, "expires %s\n", nt.ExpiresAt.Format(time.RFC3339))
				}
				fmt.Fprintf(a.Out, "%s\n(shown once; only its hash is stored)\n", nt.Secret)
				return nil
			})
		},
	}
	f.registerData(cmd)
	fs := cmd.Flags()
	fs.StringVar(&name, "name", "", "the token's name (required)")
	_ = cmd.MarkFlagRequired("name")
	fs.StringVar(&tenant, "tenant", "", "the tenant it acts for (default: its name)")
	fs.StringVar(&scopes, "scope", "read,rent", "scopes: read, rent, admin (comma-separated)")
	fs.IntVar(&rate, "rate", rental.DefaultRatePerMinute, "requests a minute")
	fs.DurationVar(&ttl, "ttl", 0, "lifetime (default: no expiry)")
	fs.BoolVar(&asJSON, "json", false, `print {"id", "name", "tenant", "scopes", "rate_per_minute", "token", …}`)
	return cmd
}

func scopeList(s []market.Scope) string {
	names := make([]string, len(s))
	for i, x := range s {
		names[i] = string(x)
	}
	return strings.Join(names, ",")
}

func newAPITokenListCmd(a *app) *cobra.Command {
	var f apiFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the API's tokens (never a secret)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withTokens(cmd.Context(), &f, func(t *rental.Tokens) error {
				list, err := t.List(cmd.Context())
				if err != nil {
					return err
				}
				if asJSON {
					return a.printJSON(map[string]any{"tokens": list})
				}
				tw := tabwriter.NewWriter(a.Out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tTENANT\tSCOPES\tRATE/MIN\tCREATED\tSTATE")
				for _, x := range list {
					st := "active"
					if err := x.Usable(time.Now()); err != nil {
						st = market.ErrorMessage(err)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", x.ID, x.Name, x.Tenant, scopeList(x.Scopes), x.RatePerMinute, x.CreatedAt.Format(time.RFC3339), st)
				}
				return tw.Flush()
			})
		},
	}
	f.registerData(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"tokens": [...]}`)
	return cmd
}

func newAPITokenRevokeCmd(a *app) *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API token; requests with it are refused from now on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withTokens(cmd.Context(), &f, func(t *rental.Tokens) error {
				tok, err := t.Revoke(cmd.Context(), args[0])
				if market.ErrorCode(err) == market.ENOTFOUND {
					return fmt.Errorf("no token %s (nicompute api token list shows them)", args[0])
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(a.Out, "revoked token %s (%s, tenant %s)\n", tok.ID, tok.Name, tok.Tenant)
				return nil
			})
		},
	}
	f.registerData(cmd)
	return cmd
}
