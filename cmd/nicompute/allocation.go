package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/allocations"
	"github.com/nicompute/nicompute/internal/allocator"
	"github.com/nicompute/nicompute/internal/protocol"
)

// The allocation commands act on the leases nicompute allocate recorded.

func newAllocationCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "allocation",
		Short: "Inspect and act on the leases you allocated",
	}
	cmd.AddCommand(newAllocationStatusCmd(a), newAllocationActionCmd(a), newAllocationListCmd(a))
	return cmd
}

func newAllocationStatusCmd(a *app) *cobra.Command {
	var f allocFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Ask the miner about your lease (and settle a pending allocation)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := a.openAlloc(ctx, &f)
			if err != nil {
				return err
			}
			defer s.close()
			rec, o, recorded, err := s.client.StatusRecorded(ctx, s.records, s.miner)
			if err != nil {
				if rec.Pending && allocator.Absent(err) {
					_, deallocCmd := f.leaseCommands(s.miner.Hotkey)
					return fmt.Errorf("%w\nthe pending allocation has no lease on miner uid %d; run `%s` to remove its record", err, rec.UID, deallocCmd)
				}
				return s.noRecord(err)
			}
			if f.asJSON {
				out := map[string]any{"uid": rec.UID, "hotkey": rec.Hotkey, "lease_id": o.LeaseID, "alive": o.Alive, "state": o.State, "port": o.Port, "pending": rec.Pending}
				if !o.ExpiresAt.IsZero() {
					out["expires_at"] = o.ExpiresAt
				}
				if o.Note != "" {
					out["note"] = o.Note
				}
				return a.printJSON(out)
			}
			exp := ""
			if !o.ExpiresAt.IsZero() {
				exp = o.ExpiresAt.Format(time.RFC3339)
			}
			fmt.Fprintf(a.Out, "lease %s on miner uid %d: %s (alive %v), port %d, expires %s\n", o.LeaseID, rec.UID, o.State, o.Alive, o.Port, exp)
			if o.Note != "" {
				fmt.Fprintf(a.Out, "note: %s\n", o.Note)
			}
			if recorded {
				fmt.Fprintf(a.Out, "the pending allocation is now recorded as allocated: %s\n", sshCommand("", rec.Username, rec.Host, rec.Port))
			}
			return nil
		},
	}
	f.register(cmd, 30*time.Second, `{"uid", "hotkey", "lease_id", "alive", "state", "port", "expires_at", "pending"}`)
	return cmd
}

// dockerActions maps the action names the CLIs accept to the protocol's.
var dockerActions = map[string]string{
	"restart": protocol.ActionRestart, "pause": protocol.ActionPause, "unpause": protocol.ActionUnpause,
	"resume": protocol.ActionUnpause, "exchange-key": protocol.ActionExchangeKey, "exchange_key": protocol.ActionExchangeKey,
}

func newAllocationActionCmd(a *app) *cobra.Command {
	var f allocFlags
	var sshKey string
	cmd := &cobra.Command{
		Use:   "action restart|pause|unpause|exchange-key",
		Short: "Restart, pause, unpause your lease's container or replace its SSH key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			action := dockerActions[args[0]]
			if action == "" {
				return usageErr("unknown action %q: want restart, pause, unpause or exchange-key", args[0])
			}
			var keyText string
			if action == protocol.ActionExchangeKey {
				if sshKey == "" {
					return usageErr("exchange-key needs --ssh-key")
				}
				var err error
				if keyText, err = readSSHKey(sshKey); err != nil {
					return err
				}
			} else if sshKey != "" {
				return usageErr("--ssh-key is only for exchange-key")
			}
			ctx := cmd.Context()
			s, err := a.openAlloc(ctx, &f)
			if err != nil {
				return err
			}
			defer s.close()
			rec, lease, err := s.client.ActRecorded(ctx, s.records, s.miner, action, keyText)
			if err != nil {
				return s.noRecord(err)
			}
			if f.asJSON {
				return a.printJSON(map[string]any{"uid": rec.UID, "hotkey": rec.Hotkey, "lease_id": lease, "action": args[0], "ok": true})
			}
			fmt.Fprintf(a.Out, "%s done on lease %s (miner uid %d)\n", args[0], lease, rec.UID)
			return nil
		},
	}
	f.register(cmd, time.Minute, `{"uid", "hotkey", "lease_id", "action", "ok"}`)
	cmd.Flags().StringVar(&sshKey, "ssh-key", "", "new OpenSSH public key file (exchange-key)")
	return cmd
}

func newAllocationListCmd(a *app) *cobra.Command {
	var w walletFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the allocations recorded for the wallet's hotkey (no secrets)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			dir, err := w.dir()
			if err != nil {
				return err
			}
			recs, err := allocations.List(allocations.Dir(dir, w.name, w.hotkey))
			if err != nil {
				return err
			}
			if asJSON {
				if recs == nil {
					recs = []allocations.Record{}
				}
				return a.printJSON(map[string]any{"allocations": recs})
			}
			tw := tabwriter.NewWriter(a.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NETUID\tUID\tHOTKEY\tLEASE\tLOGIN\tEXPIRES\tSTATE")
			for _, r := range recs {
				state := "allocated"
				if r.Pending {
					state = "pending (no answer from the miner)"
				}
				fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\n", r.NetUID, r.UID, short(r.Hotkey), r.LeaseID,
					sshCommand("", r.Username, r.Host, r.Port), r.ExpiresAt.Format(time.RFC3339), state)
			}
			if len(recs) == 0 {
				fmt.Fprintln(tw, strings.Repeat("-\t", 6)+"-")
			}
			return tw.Flush()
		},
	}
	w.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"allocations": [...]}`)
	return cmd
}
