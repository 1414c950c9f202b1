package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/allocations"
	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/docker"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/version"
)

// allocFlags are the flags every allocation command shares: who signs
// (the wallet's hotkey), which chain and subnet, which miner.
type allocFlags struct {
	w       walletFlags
	sf      subtensorFlags
	netuid  uint16
	uid     int
	hotkey  string
	asJSON  bool
	timeout time.Duration
}

func (f *allocFlags) register(cmd *cobra.Command, timeout time.Duration, jsonHelp string) {
	fs := cmd.Flags()
	f.w.register(fs)
	f.sf.register(fs)
	netuidFlag(cmd, &f.netuid)
	fs.IntVar(&f.uid, "uid", -1, "the miner's uid")
	fs.StringVar(&f.hotkey, "hotkey", "", "the miner's hotkey (instead of --uid)")
	fs.BoolVar(&f.asJSON, "json", false, "print one JSON object: "+jsonHelp)
	fs.DurationVar(&f.timeout, "timeout", timeout, "how long to wait for the miner")
}

func (f *allocFlags) check() error {
	switch {
	case f.uid < 0 && f.hotkey == "":
		return usageErr("name the miner with --uid or --hotkey")
	case f.uid >= 0 && f.hotkey != "":
		return usageErr("--uid and --hotkey are exclusive")
	case f.uid > 65535:
		return usageErr("--uid %d out of range", f.uid)
	case f.hotkey != "" && !keys.ValidSS58(f.hotkey):
		return usageErr("--hotkey %q is not an SS58 address", f.hotkey)
	case f.timeout <= 0:
		return usageErr("--timeout must be positive")
	}
	return nil
}

// recordDir is where the wallet's hotkey keeps its allocation records.
func (f *allocFlags) recordDir() (string, error) {
	dir, err := f.w.dir()
	if err != nil {
		return "", err
	}
	return allocations.Dir(dir, f.w.name, f.w.hotkey), nil
}

// allocSession is an open connection to a miner for one command.
type allocSession struct {
	signer *keys.Keypair
	chain  subnet.Chain
	miner  subnet.Neuron
	dir    string
	d      *axon.Dendrite
}

func (s *allocSession) close() {
	s.d.Close()
	s.chain.Close()
}

// open loads the hotkey, reads the metagraph and finds the miner.
func (a *app) openAlloc(ctx context.Context, f *allocFlags) (*allocSession, error) {
	dir, err := f.recordDir()
	if err != nil {
		return nil, err
	}
	signer, err := a.loadHotkey(f.w)
	if err != nil {
		return nil, err
	}
	ch, err := a.dialChain(ctx, f.sf)
	if err != nil {
		return nil, err
	}
	mg, err := ch.Metagraph(ctx, subnet.NetUID(f.netuid))
	if err != nil {
		ch.Close()
		return nil, chainErr("read metagraph of subnet %d: %w", f.netuid, err)
	}
	var n subnet.Neuron
	var ok bool
	if f.hotkey != "" {
		n, ok = mg.ByHotkey(f.hotkey)
	} else {
		n, ok = mg.ByUID(subnet.UID(f.uid))
	}
	if !ok {
		ch.Close()
		if f.hotkey != "" {
			return nil, fmt.Errorf("hotkey %s is not registered on subnet %d", f.hotkey, f.netuid)
		}
		return nil, fmt.Errorf("uid %d is not registered on subnet %d", f.uid, f.netuid)
	}
	if !n.Axon.Served() {
		ch.Close()
		return nil, fmt.Errorf("miner uid %d (%s) serves no axon on subnet %d", n.UID, n.Hotkey, f.netuid)
	}
	return &allocSession{
		signer: signer, chain: ch, miner: n, dir: dir,
		d: axon.NewDendrite(signer, axon.WithVersion(int64(version.Int()))),
	}, nil
}

// call sends req to the miner. A refusal is returned as an error with the
// miner's reason; resp holds the answer either way.
func (s *allocSession) call(ctx context.Context, req *protocol.Allocate, resp *protocol.Allocate, timeout time.Duration) error {
	target := axon.Target{Addr: s.miner.Axon.Addr(), Hotkey: s.miner.Hotkey}
	_, err := protocol.CallAllocate(ctx, s.d, target, req, resp, timeout)
	if err == nil {
		return nil
	}
	var ae *axon.Error
	if errors.As(err, &ae) {
		msg := ae.Message
		if resp.Output.Error != "" {
			msg = resp.Output.Error
		}
		return &minerRefusal{status: ae.Status, msg: msg}
	}
	return fmt.Errorf("call miner uid %d at %s: %w", s.miner.UID, target.Addr, err)
}

// minerRefusal is a miner's non-200 answer.
type minerRefusal struct {
	status int
	msg    string
}

func (e *minerRefusal) Error() string {
	return fmt.Sprintf("miner refused (%d %s): %s", e.status, http.StatusText(e.status), e.msg)
}

func refusalStatus(err error) int {
	var r *minerRefusal
	if errors.As(err, &r) {
		return r.status
	}
	return 0
}

// definiteRefusal reports whether err is a miner's answer that nothing
// was done: a 4xx other than 408. A 408 (the miner may have finished after
// the deadline), a 5xx or no answer at all leave the outcome unknown.
func definiteRefusal(err error) bool {
	st := refusalStatus(err)
	return st >= 400 && st < 500 && st != http.StatusRequestTimeout
}

// leaseCommands names the commands that check or release this wallet's
// allocation on the miner with hotkey, for messages: with the flags that
// select the same wallet, chain and subnet.
func (f *allocFlags) leaseCommands(hotkey string) (status, deallocate string) {
	return commandLine("allocation status", f.netuid, f.w, f.sf, "--hotkey", hotkey),
		commandLine("deallocate", f.netuid, f.w, f.sf, "--hotkey", hotkey)
}

// openOwnLease opens a session to the flags' miner and loads this hotkey's
// record of its lease there, with a request carrying the lease's public
// key. The caller closes the session.
func (a *app) openOwnLease(ctx context.Context, f *allocFlags) (*allocSession, allocations.Record, *protocol.Allocate, error) {
	s, err := a.openAlloc(ctx, f)
	if err != nil {
		return nil, allocations.Record{}, nil, err
	}
	rec, req, err := s.ownRecord(f.netuid)
	if err != nil {
		s.close()
		return nil, rec, nil, err
	}
	return s, rec, req, nil
}

// ownRecord loads this hotkey's record and key for the session's miner.
func (s *allocSession) ownRecord(netuid uint16) (allocations.Record, *protocol.Allocate, error) {
	rec, err := allocations.Load(s.dir, netuid, s.miner.Hotkey)
	if errors.Is(err, allocations.ErrNotFound) {
		return rec, nil, fmt.Errorf("no allocation of yours on miner uid %d (%s) in %s", s.miner.UID, s.miner.Hotkey, s.dir)
	}
	if err != nil {
		return rec, nil, err
	}
	key, err := allocations.Key(s.dir, netuid, s.miner.Hotkey)
	if err != nil {
		return rec, nil, err
	}
	pub, err := protocol.PublicKeyPEM(&key.PublicKey)
	if err != nil {
		return rec, nil, err
	}
	req := protocol.NewAllocate()
	req.PublicKey = pub
	return rec, req, nil
}

func newAllocateCmd(a *app) *cobra.Command {
	var f allocFlags
	var sshKey, ram, disk, image string
	var gpus, cpus int
	var timeline int64
	var password bool
	cmd := &cobra.Command{
		Use:   "allocate",
		Short: "Allocate a miner's machine directly with the wallet's hotkey and print how to log in",
		Long: `Allocate a lease on one miner over the signed axon transport, as a
validator operator, signing with the wallet's hotkey.

A fresh RSA key pair owns the lease: it is kept with the allocation record
under WALLET_PATH/WALLET/allocations/HOTKEY (mode 0600) so that later
deallocate, allocation status and allocation action commands can act on the
lease. The password (only with --password, which also asks the miner for
password login) is printed once and never stored.

A miner's refusal (4xx) removes the record and key. When the outcome is
unknown — no answer, a timeout (408) or a server error (5xx) — the record
is kept as pending, with its key: allocation status tells whether the lease
exists (and records it), deallocate releases it. allocate refuses to run
while a record for the miner exists, pending or not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			keyText, err := readSSHKey(sshKey)
			if err != nil {
				return err
			}
			r := market.Requirement{GPUs: gpus, CPUs: cpus}
			if r.MemoryBytes, err = parseBytes("--ram", ram); err != nil {
				return err
			}
			if r.DiskBytes, err = parseBytes("--disk", disk); err != nil {
				return err
			}
			if err := r.Validate(); err != nil {
				return usageErr("%v", err)
			}
			if timeline < 1 || timeline > protocol.MaxTimelineDays {
				return usageErr("--timeline must be 1 to %d days", protocol.MaxTimelineDays)
			}
			if image != "" {
				if _, err := docker.ValidateImage(image); err != nil {
					return usageErr("--image: %v", err)
				}
			}
			return a.runAllocate(cmd.Context(), &f, r, keyText, image, timeline, password)
		},
	}
	f.register(cmd, time.Minute, `{"uid", "hotkey", "host", "port", "username"} (+ "password" with --password)`)
	fs := cmd.Flags()
	fs.StringVar(&sshKey, "ssh-key", "", "OpenSSH public key file that may log in (required)")
	_ = cmd.MarkFlagRequired("ssh-key")
	fs.IntVar(&gpus, "gpus", 0, "number of GPUs")
	fs.IntVar(&cpus, "cpus", 1, "number of CPUs")
	fs.StringVar(&ram, "ram", "1GiB", "memory")
	fs.StringVar(&disk, "disk", "1GiB", "disk")
	fs.Int64Var(&timeline, "timeline", 1, "lease length in days")
	fs.StringVar(&image, "image", "", "image to run (default: the miner's)")
	fs.BoolVar(&password, "password", false, "also enable password login and print the password")
	return cmd
}

// readSSHKey reads and checks a public key file.
func readSSHKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", usageErr("--ssh-key: %v", err)
	}
	if _, err := docker.ParseSSHKeys(string(b)); err != nil {
		return "", usageErr("--ssh-key %s: %v", path, err)
	}
	return string(b), nil
}

func (a *app) runAllocate(ctx context.Context, f *allocFlags, r market.Requirement, sshKey, image string, timeline int64, password bool) error {
	s, err := a.openAlloc(ctx, f)
	if err != nil {
		return err
	}
	defer s.close()
	statusCmd, deallocCmd := f.leaseCommands(s.miner.Hotkey)
	// An existing record, pending or not, holds the key of a lease the
	// miner may have: never replace it.
	existing := func(old allocations.Record) error {
		if old.Pending {
			return fmt.Errorf("an allocation on miner uid %d is pending: an earlier allocate got no answer and the miner may hold a lease for it; "+
				"run `%s` to see whether it does, or `%s` to release it, before allocating again", s.miner.UID, statusCmd, deallocCmd)
		}
		return fmt.Errorf("you already hold an allocation on miner uid %d (lease %s); run `%s` to check it or `%s` to release it first",
			s.miner.UID, old.LeaseID, statusCmd, deallocCmd)
	}
	old, err := allocations.Load(s.dir, f.netuid, s.miner.Hotkey)
	switch {
	case err == nil:
		return existing(old)
	case !errors.Is(err, allocations.ErrNotFound):
		return fmt.Errorf("read allocation record: %w", err)
	}
	priv, pub, err := protocol.GenerateKey()
	if err != nil {
		return err
	}
	// The record is claimed, and the key goes to disk, before the miner
	// hears of it: a lease whose owning key was lost could never be
	// deallocated.
	rec := allocations.Record{
		NetUID: f.netuid, UID: uint16(s.miner.UID), Hotkey: s.miner.Hotkey, Validator: s.signer.SS58(),
		Host: s.miner.Axon.IP, Username: "root", Image: image, CreatedAt: time.Now().UTC(), Pending: true, Password: password,
	}
	if err := allocations.Create(s.dir, rec); errors.Is(err, allocations.ErrExists) {
		// Another allocate of this miner started meanwhile.
		if old, lerr := allocations.Load(s.dir, f.netuid, s.miner.Hotkey); lerr == nil {
			return existing(old)
		}
		return fmt.Errorf("save allocation record: %w", err)
	} else if err != nil {
		return fmt.Errorf("save allocation record: %w", err)
	}
	if err := allocations.SaveKey(s.dir, f.netuid, s.miner.Hotkey, priv); err != nil {
		_ = allocations.Remove(s.dir, f.netuid, s.miner.Hotkey)
		return fmt.Errorf("save lease key: %w", err)
	}
	req := protocol.NewAllocate()
	req.Checking = false
	req.Timeline = timeline
	req.SetRequirement(r)
	req.PublicKey = pub
	req.DockerRequirement.SSHKey = sshKey
	req.DockerRequirement.BaseImage = image
	req.DockerRequirement.Password = password
	var resp protocol.Allocate
	if err := s.call(ctx, req, &resp, f.timeout); err != nil {
		if definiteRefusal(err) {
			// The miner refused: nothing was allocated.
			_ = allocations.Remove(s.dir, f.netuid, s.miner.Hotkey)
			return err
		}
		return fmt.Errorf("%w\nthe outcome is unknown: miner uid %d may or may not have allocated a lease for you. "+
			"The allocation is kept as pending, with its key; run `%s` to see whether the lease exists, or `%s` to release it",
			err, s.miner.UID, statusCmd, deallocCmd)
	}
	creds, err := protocol.DecryptCredentials(priv, resp.Output.Info)
	if err != nil {
		return fmt.Errorf("miner answered with unreadable credentials: %w; the allocation is kept as pending, with its key: run `%s` to release it",
			err, deallocCmd)
	}
	rec.Pending = false
	rec.Port, rec.Username, rec.LeaseID = creds.Port, creds.Username, resp.Output.LeaseID
	if resp.Output.ExpiresAt != nil {
		rec.ExpiresAt = *resp.Output.ExpiresAt
	}
	if err := allocations.Save(s.dir, rec); err != nil {
		return fmt.Errorf("save allocation record: %w", err)
	}
	if f.asJSON {
		out := map[string]any{"uid": rec.UID, "hotkey": rec.Hotkey, "host": rec.Host, "port": rec.Port, "username": rec.Username}
		if password {
			out["password"] = creds.Password
		}
		return a.printJSON(out)
	}
	fmt.Fprintf(a.Out, "allocated miner uid %d (%s), lease %s, expires %s\n", rec.UID, rec.Hotkey, rec.LeaseID, rec.ExpiresAt.Format(time.RFC3339))
	fmt.Fprintf(a.Out, "host %s port %d user %s\n", rec.Host, rec.Port, rec.Username)
	fmt.Fprintf(a.Out, "ssh -p %d %s@%s\n", rec.Port, rec.Username, rec.Host)
	if password {
		fmt.Fprintf(a.Out, "password %s (shown once, not stored)\n", creds.Password)
	}
	return nil
}

func newDeallocateCmd(a *app) *cobra.Command {
	var f allocFlags
	cmd := &cobra.Command{
		Use:   "deallocate",
		Short: "Deallocate your lease on a miner; the record is removed once the miner confirms",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			ctx := cmd.Context()
			s, rec, req, err := a.openOwnLease(ctx, &f)
			if err != nil {
				return err
			}
			defer s.close()
			req.Checking, req.Timeline = false, 0
			var resp protocol.Allocate
			err = s.call(ctx, req, &resp, f.timeout)
			gone := refusalStatus(err) == http.StatusNotFound
			if err != nil && !gone {
				return err
			}
			if err := allocations.Remove(s.dir, f.netuid, s.miner.Hotkey); err != nil {
				return fmt.Errorf("remove allocation record: %w", err)
			}
			if f.asJSON {
				return a.printJSON(map[string]any{"uid": rec.UID, "hotkey": rec.Hotkey, "lease_id": rec.LeaseID, "deallocated": true, "already_gone": gone})
			}
			if gone {
				fmt.Fprintf(a.Out, "lease %s on miner uid %d was already gone; record removed\n", rec.LeaseID, rec.UID)
				return nil
			}
			fmt.Fprintf(a.Out, "deallocated lease %s on miner uid %d\n", rec.LeaseID, rec.UID)
			return nil
		},
	}
	f.register(cmd, 30*time.Second, `{"uid", "hotkey", "lease_id", "deallocated", "already_gone"}`)
	return cmd
}

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
			s, rec, req, err := a.openOwnLease(ctx, &f)
			if err != nil {
				return err
			}
			defer s.close()
			req.Checking, req.Timeline = true, 0
			var resp protocol.Allocate
			if err := s.call(ctx, req, &resp, f.timeout); err != nil {
				if rec.Pending && refusalStatus(err) == http.StatusNotFound {
					_, deallocCmd := f.leaseCommands(s.miner.Hotkey)
					return fmt.Errorf("%w\nthe pending allocation has no lease on miner uid %d; run `%s` to remove its record", err, rec.UID, deallocCmd)
				}
				return err
			}
			o := resp.Output
			// A pending allocation whose lease turns out to be alive is
			// recorded as allocated, with what the miner reports.
			recorded := false
			if rec.Pending && o.Status && o.LeaseID != "" && o.Port > 0 && o.Port <= 65535 {
				rec.Pending, rec.LeaseID, rec.Port = false, o.LeaseID, o.Port
				if o.ExpiresAt != nil {
					rec.ExpiresAt = *o.ExpiresAt
				}
				if err := allocations.Save(s.dir, rec); err != nil {
					return fmt.Errorf("save allocation record: %w", err)
				}
				recorded = true
			}
			if f.asJSON {
				out := map[string]any{"uid": rec.UID, "hotkey": rec.Hotkey, "lease_id": o.LeaseID, "alive": o.Status, "state": o.State, "port": o.Port, "pending": rec.Pending}
				if o.ExpiresAt != nil {
					out["expires_at"] = o.ExpiresAt
				}
				if o.Error != "" {
					out["note"] = o.Error
				}
				return a.printJSON(out)
			}
			exp := ""
			if o.ExpiresAt != nil {
				exp = o.ExpiresAt.Format(time.RFC3339)
			}
			fmt.Fprintf(a.Out, "lease %s on miner uid %d: %s (alive %v), port %d, expires %s\n", o.LeaseID, rec.UID, o.State, o.Status, o.Port, exp)
			if o.Error != "" {
				fmt.Fprintf(a.Out, "note: %s\n", o.Error)
			}
			if recorded {
				fmt.Fprintf(a.Out, "the pending allocation is now recorded as allocated: ssh -p %d %s@%s\n", rec.Port, rec.Username, rec.Host)
			}
			return nil
		},
	}
	f.register(cmd, 30*time.Second, `{"uid", "hotkey", "lease_id", "alive", "state", "port", "expires_at", "pending"}`)
	return cmd
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
			action := map[string]string{
				"restart": protocol.ActionRestart, "pause": protocol.ActionPause, "unpause": protocol.ActionUnpause,
				"resume": protocol.ActionUnpause, "exchange-key": protocol.ActionExchangeKey, "exchange_key": protocol.ActionExchangeKey,
			}[args[0]]
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
			s, rec, req, err := a.openOwnLease(ctx, &f)
			if err != nil {
				return err
			}
			defer s.close()
			req.Checking, req.Timeline, req.DockerChange = false, 0, true
			req.DockerAction = protocol.DockerAction{Action: action, SSHKey: keyText}
			var resp protocol.Allocate
			if err := s.call(ctx, req, &resp, f.timeout); err != nil {
				return err
			}
			if f.asJSON {
				return a.printJSON(map[string]any{"uid": rec.UID, "hotkey": rec.Hotkey, "lease_id": resp.Output.LeaseID, "action": args[0], "ok": true})
			}
			fmt.Fprintf(a.Out, "%s done on lease %s (miner uid %d)\n", args[0], resp.Output.LeaseID, rec.UID)
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
				fmt.Fprintf(tw, "%d\t%d\t%s\t%s\tssh -p %d %s@%s\t%s\t%s\n", r.NetUID, r.UID, short(r.Hotkey), r.LeaseID,
					r.Port, r.Username, r.Host, r.ExpiresAt.Format(time.RFC3339), state)
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
