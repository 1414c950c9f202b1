package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/allocator"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/web"
)

// The rent commands on one's allocations: list, show, extend, stop, ssh.

func newRentListCmd(a *app) *cobra.Command {
	var f rentFlags
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List your allocations (never a secret)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return rentDo(a, &f, func(c *web.Client) (web.AllocationList, error) {
				list, err := c.Allocations(cmd.Context(), all)
				return web.AllocationList{Allocations: list}, err
			}, func(l web.AllocationList) error { return writeAllocations(a.Out, l.Allocations) })
		},
	}
	f.register(cmd, `{"allocations": [...]}`)
	cmd.Flags().BoolVar(&all, "all", false, "include ended allocations")
	return cmd
}

func newRentShowCmd(a *app) *cobra.Command {
	var f rentFlags
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one allocation",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return rentDo(a, &f, func(c *web.Client) (rental.Allocation, error) { return c.Allocation(cmd.Context(), args[0]) },
				func(al rental.Allocation) error { return writeAllocation(a.Out, al) })
		},
	}
	f.register(cmd, "the allocation")
	return cmd
}

func newRentExtendCmd(a *app) *cobra.Command {
	var f rentFlags
	var dur string
	cmd := &cobra.Command{
		Use:   "extend ID",
		Short: "Add time to an allocation",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := rentDuration(dur)
			if err != nil {
				return err
			}
			return rentDo(a, &f, func(c *web.Client) (rental.Allocation, error) { return c.Extend(cmd.Context(), args[0], d) },
				func(al rental.Allocation) error {
					_, err := fmt.Fprintf(a.Out, "allocation %s now ends %s\n", al.ID, al.ExpiresAt.Format(time.RFC3339))
					return err
				})
		},
	}
	f.register(cmd, "the allocation")
	cmd.Flags().StringVar(&dur, "duration", "1h", "time to add (\"90m\", \"2h\", \"7d\")")
	return cmd
}

func newRentStopCmd(a *app) *cobra.Command {
	var f rentFlags
	cmd := &cobra.Command{
		Use:   "stop ID",
		Short: "End an allocation (the miner is told; the API retries until it confirms)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return rentDo(a, &f, func(c *web.Client) (rental.Allocation, error) { return c.End(cmd.Context(), args[0]) },
				func(al rental.Allocation) error {
					if al.State == market.AllocEnded {
						_, err := fmt.Fprintf(a.Out, "allocation %s ended\n", al.ID)
						return err
					}
					_, err := fmt.Fprintf(a.Out, "allocation %s is ending: %s\n", al.ID, al.Note)
					return err
				})
		},
	}
	f.register(cmd, "the allocation")
	return cmd
}

func newRentSSHCmd(a *app) *cobra.Command {
	var f rentFlags
	var identity string
	var options []string
	cmd := &cobra.Command{
		Use:   "ssh ID [-- COMMAND...]",
		Short: "Log into an allocation with OpenSSH",
		Long: `Log into an allocation with the system's OpenSSH client (ssh -p PORT
USER@HOST), with -i KEY for --identity or, without it, for the key in
~/.ssh whose public half the allocation lists, and -o OPTION for each
--ssh-option; arguments after -- are the remote command. The lease's host
key is new to this machine: it is accepted the first time
(StrictHostKeyChecking=accept-new) and checked afterwards.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			al, err := c.Allocation(cmd.Context(), args[0])
			if err != nil {
				return apiErr(err)
			}
			if al.Port == 0 || al.Host == "" {
				return fmt.Errorf("allocation %s is %s and has no login", al.ID, al.State)
			}
			if !allocator.ValidUsername(al.Username) || net.ParseIP(al.Host) == nil {
				return fmt.Errorf("allocation %s names an invalid login %q at %q", al.ID, al.Username, al.Host)
			}
			if identity == "" {
				identity = findIdentity(al.SSHKeys)
			}
			argv := sshArgv(al, identity, options, args[1:])
			return a.execSSH(cmd.Context(), argv)
		},
	}
	f.register(cmd, "")
	cmd.Flags().StringVarP(&identity, "identity", "i", "", "private key file for ssh -i")
	cmd.Flags().StringArrayVarP(&options, "ssh-option", "o", nil, "an OpenSSH option for ssh -o (repeatable; these come first, so they win)")
	return cmd
}

// findIdentity returns the private key file in ~/.ssh whose public key
// file (NAME.pub beside NAME) holds one of keys, or "".
func findIdentity(keys []string) string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	want := map[string]bool{}
	for _, k := range keys {
		if f := strings.Fields(k); len(f) >= 2 {
			want[f[0]+" "+f[1]] = true
		}
	}
	pubs, _ := filepath.Glob(filepath.Join(home, ".ssh", "*.pub"))
	for _, pub := range pubs {
		b, err := os.ReadFile(pub)
		if err != nil || len(b) > 16<<10 {
			continue
		}
		if f := strings.Fields(string(b)); len(f) >= 2 && want[f[0]+" "+f[1]] {
			if priv := identityFile(pub); priv != "" {
				return priv
			}
		}
	}
	return ""
}

// sshArgv is the OpenSSH command line that logs into al. The user's
// options come first: OpenSSH keeps the first value of each option.
func sshArgv(al rental.Allocation, identity string, options, remote []string) []string {
	argv := []string{"ssh"}
	for _, o := range options {
		argv = append(argv, "-o", o)
	}
	argv = append(argv, "-p", strconv.Itoa(al.Port), "-o", "StrictHostKeyChecking=accept-new")
	if identity != "" {
		argv = append(argv, "-i", identity)
	}
	argv = append(argv, "--", al.Username+"@"+al.Host)
	return append(argv, remote...)
}

// execSSH runs OpenSSH with argv: it replaces this process when the
// command runs on the real terminal, and runs as a child wired to the
// command's streams otherwise (tests, embedding).
func (a *app) execSSH(ctx context.Context, argv []string) error {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("the OpenSSH client is not installed: %w", err)
	}
	if a.In == os.Stdin && a.Out == os.Stdout && a.Err == os.Stderr {
		return syscall.Exec(path, argv, os.Environ())
	}
	c := exec.CommandContext(ctx, path, argv[1:]...)
	c.Stdin, c.Stdout, c.Stderr = a.In, a.Out, a.Err
	if err := c.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return &exitError{code: ee.ExitCode(), err: fmt.Errorf("ssh exited with %d", ee.ExitCode())}
		}
		return err
	}
	return nil
}
