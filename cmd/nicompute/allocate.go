package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/allocations"
	"github.com/nicompute/nicompute/internal/allocator"
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

// allocSession is an open connection to one miner for one command.
type allocSession struct {
	client  *allocator.Client
	miner   allocator.Miner
	records allocator.Records
	close   func()
}

// openAlloc loads the hotkey, reads the metagraph and finds the miner.
func (a *app) openAlloc(ctx context.Context, f *allocFlags) (*allocSession, error) {
	dir, err := f.w.dir()
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
	defer ch.Close()
	mg, err := ch.Metagraph(ctx, subnet.NetUID(f.netuid))
	if err != nil {
		return nil, chainErr("read metagraph of subnet %d: %w", f.netuid, err)
	}
	m, err := allocator.FindMiner(mg, f.hotkey, subnet.UID(max(f.uid, 0)))
	if err != nil {
		return nil, errors.New(market.ErrorMessage(err))
	}
	d := axon.NewDendrite(signer, axon.WithVersion(int64(version.Int())))
	return &allocSession{
		client:  allocator.New(d, f.timeout),
		miner:   m,
		records: allocator.Records{Dir: allocations.Dir(dir, f.w.name, f.w.hotkey), NetUID: f.netuid, Validator: signer.SS58()},
		close:   func() { d.Close() },
	}, nil
}

// leaseCommands names the commands that check or release this wallet's
// allocation on the miner with hotkey, for messages: with the flags that
// select the same wallet, chain and subnet.
func (f *allocFlags) leaseCommands(hotkey string) (status, deallocate string) {
	return commandLine("allocation status", f.netuid, f.w, f.sf, "--hotkey", hotkey),
		commandLine("deallocate", f.netuid, f.w, f.sf, "--hotkey", hotkey)
}

// noRecord rewords a missing record for the user.
func (s *allocSession) noRecord(err error) error {
	if errors.Is(err, allocator.ErrNoRecord) {
		return fmt.Errorf("no allocation of yours on miner uid %d (%s) in %s", s.miner.UID, s.miner.Hotkey, s.records.Dir)
	}
	return err
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
			r := allocator.Request{Requirement: market.Requirement{GPUs: gpus, CPUs: cpus}, SSHKeys: keyText, Image: image, Timeline: timeline, Password: password}
			if r.Requirement.MemoryBytes, err = parseBytes("--ram", ram); err != nil {
				return err
			}
			if r.Requirement.DiskBytes, err = parseBytes("--disk", disk); err != nil {
				return err
			}
			if err := r.Requirement.Validate(); err != nil {
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
			return a.runAllocate(cmd.Context(), &f, r, identityFile(sshKey))
		},
	}
	f.register(cmd, time.Minute, `{"uid", "hotkey", "host", "port", "username", "ssh_command"} (+ "password" with --password)`)
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

// identityFile is the private key beside public key file pub (pub without
// ".pub"), or "" when there is none.
func identityFile(pub string) string {
	priv, ok := strings.CutSuffix(pub, ".pub")
	if !ok || priv == "" {
		return ""
	}
	if st, err := os.Stat(priv); err != nil || !st.Mode().IsRegular() {
		return ""
	}
	return priv
}

// sshCommand is the OpenSSH command line that logs in, with -i when an
// identity file is known.
func sshCommand(identity, user, host string, port int) string {
	var b strings.Builder
	b.WriteString("ssh")
	if identity != "" {
		b.WriteString(" -i " + identity)
	}
	fmt.Fprintf(&b, " -p %d %s@%s", port, user, host)
	return b.String()
}

func (a *app) runAllocate(ctx context.Context, f *allocFlags, r allocator.Request, identity string) error {
	s, err := a.openAlloc(ctx, f)
	if err != nil {
		return err
	}
	defer s.close()
	statusCmd, deallocCmd := f.leaseCommands(s.miner.Hotkey)
	stop := a.waiting(fmt.Sprintf("asking miner uid %d (%s) to allocate", s.miner.UID, s.miner.Addr), f.timeout)
	rec, g, err := s.client.AllocateRecorded(ctx, s.records, s.miner, r)
	stop()
	var held *allocator.HeldError
	var unknown *allocator.UnknownOutcomeError
	switch {
	case errors.As(err, &held) && held.Record.Pending:
		return fmt.Errorf("%w; run `%s` to see whether it does, or `%s` to release it, before allocating again", err, statusCmd, deallocCmd)
	case errors.As(err, &held):
		return fmt.Errorf("%w; run `%s` to check it or `%s` to release it first", err, statusCmd, deallocCmd)
	case errors.As(err, &unknown) && errors.Is(err, allocator.ErrUnreadable):
		return fmt.Errorf("miner answered with %w; the allocation is kept as pending, with its key: run `%s` to release it", err, deallocCmd)
	case errors.As(err, &unknown):
		return fmt.Errorf("%w\nthe outcome is unknown: miner uid %d may or may not have allocated a lease for you. "+
			"The allocation is kept as pending, with its key; run `%s` to see whether the lease exists, or `%s` to release it",
			err, s.miner.UID, statusCmd, deallocCmd)
	case err != nil:
		return err
	}
	login := sshCommand(identity, rec.Username, rec.Host, rec.Port)
	if f.asJSON {
		out := map[string]any{"uid": rec.UID, "hotkey": rec.Hotkey, "host": rec.Host, "port": rec.Port, "username": rec.Username, "ssh_command": login}
		if r.Password {
			out["password"] = g.Password
		}
		return a.printJSON(out)
	}
	fmt.Fprintf(a.Out, "allocated miner uid %d (%s), lease %s, expires %s\n", rec.UID, rec.Hotkey, rec.LeaseID, rec.ExpiresAt.Format(time.RFC3339))
	fmt.Fprintf(a.Out, "host %s port %d user %s\n", rec.Host, rec.Port, rec.Username)
	fmt.Fprintln(a.Out, login)
	if r.Password {
		fmt.Fprintf(a.Out, "password %s (shown once, not stored)\n", g.Password)
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
			s, err := a.openAlloc(ctx, &f)
			if err != nil {
				return err
			}
			defer s.close()
			rec, gone, err := s.client.DeallocateRecorded(ctx, s.records, s.miner)
			if err != nil {
				return s.noRecord(err)
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
