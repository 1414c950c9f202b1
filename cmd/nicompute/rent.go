package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/allocator"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/web"
)

// apiTokenEnv holds the renter's API token when no token file is given.
const apiTokenEnv = "NICOMPUTE_API_TOKEN"

// rentFlags are the flags every rent command shares.
type rentFlags struct {
	url        string
	tokenFile  string
	ca         string
	clientCert string
	clientKey  string
	asJSON     bool
}

// register adds the connection flags and, unless jsonHelp is empty,
// --json.
func (f *rentFlags) register(cmd *cobra.Command, jsonHelp string) {
	fs := cmd.Flags()
	fs.StringVar(&f.url, "api.url", "http://"+defaultAPIListen, "the allocation API")
	fs.StringVar(&f.tokenFile, "api.token-file", "", "file holding the API token (default: $"+apiTokenEnv+")")
	fs.StringVar(&f.ca, "api.ca", "", "CA certificates (PEM) to trust for an https API")
	fs.StringVar(&f.clientCert, "api.client-cert", "", "client certificate (PEM) for an API that requires one")
	fs.StringVar(&f.clientKey, "api.client-key", "", "client certificate's key (PEM)")
	if jsonHelp != "" {
		fs.BoolVar(&f.asJSON, "json", false, "print JSON: "+jsonHelp)
	}
}

// client builds the API client: the token from the file, else the
// environment.
func (f *rentFlags) client() (*web.Client, error) {
	token := os.Getenv(apiTokenEnv)
	if f.tokenFile != "" {
		path, err := expandHome(f.tokenFile)
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, usageErr("--api.token-file: %v", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return nil, usageErr("no API token: pass --api.token-file FILE or set %s (an operator creates one with nicompute api token create)", apiTokenEnv)
	}
	var tlsCfg *tls.Config
	if f.ca != "" || f.clientCert != "" || f.clientKey != "" {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		if f.ca != "" {
			pool, err := certPool(f.ca)
			if err != nil {
				return nil, usageErr("--api.ca: %v", err)
			}
			tlsCfg.RootCAs = pool
		}
		if f.clientCert != "" || f.clientKey != "" {
			pair, err := tls.LoadX509KeyPair(f.clientCert, f.clientKey)
			if err != nil {
				return nil, usageErr("--api.client-cert/--api.client-key: %v", err)
			}
			tlsCfg.Certificates = []tls.Certificate{pair}
		}
	}
	c, err := web.NewClient(f.url, token, tlsCfg)
	if err != nil {
		return nil, usageErr("--api.url: %v", err)
	}
	return c, nil
}

// apiErr words an API failure for the terminal.
func apiErr(err error) error {
	var p *web.Problem
	if errors.As(err, &p) {
		return fmt.Errorf("the API refused (%d %s): %s", p.Status, p.Code, p.Detail)
	}
	return fmt.Errorf("the API could not be reached: %w", err)
}

func newRentCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rent",
		Short: "Rent GPU machines through a validator's allocation API",
		Long: `Rent GPU machines through a validator's allocation API (nicompute api):
list what its Proof-of-GPU verified (offers), allocate one (create), see
and log into yours (list, show, ssh), extend and stop them.

The token comes from --api.token-file or $` + apiTokenEnv + `.`,
	}
	cmd.AddCommand(newRentOffersCmd(a), newRentCreateCmd(a), newRentListCmd(a), newRentShowCmd(a),
		newRentSSHCmd(a), newRentExtendCmd(a), newRentStopCmd(a))
	return cmd
}

func newRentOffersCmd(a *app) *cobra.Command {
	var f rentFlags
	var model, vram, ram, disk string
	var gpus, cpus int
	cmd := &cobra.Command{
		Use:   "offers",
		Short: "List what can be rented now: verified GPUs by model and count",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"gpu_model": model, "min_vram": vram, "ram": ram, "disk": disk} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if gpus > 0 {
				q.Set("min_gpu_count", strconv.Itoa(gpus))
			}
			if cpus > 0 {
				q.Set("cpu_count", strconv.Itoa(cpus))
			}
			offers, err := c.Offers(cmd.Context(), q)
			if err != nil {
				return apiErr(err)
			}
			if f.asJSON {
				return a.printJSON(web.OfferList{Offers: offers})
			}
			return writeOffers(a.Out, offers)
		},
	}
	f.register(cmd, `{"offers": [...]}`)
	fs := cmd.Flags()
	fs.StringVar(&model, "gpu-model", "", "GPU model (a case-insensitive part of its name)")
	fs.IntVar(&gpus, "gpus", 0, "at least this many GPUs")
	fs.StringVar(&vram, "min-vram", "", "at least this much memory per GPU (e.g. 80GiB)")
	fs.IntVar(&cpus, "cpus", 0, "at least this many free CPUs")
	fs.StringVar(&ram, "ram", "", "at least this much free memory")
	fs.StringVar(&disk, "disk", "", "at least this much free disk")
	return cmd
}

func newRentCreateCmd(a *app) *cobra.Command {
	var f rentFlags
	var r rental.AllocateRequest
	var sshKeys []string
	var model, vram, ram, disk, idem string
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Allocate a machine and print how to log in",
		Long: `Allocate a machine that meets the requirements: the API tries the verified
miners that fit, best first, and answers once one granted it. The request
carries an Idempotency-Key (random unless --idempotency-key is given) and is
retried with it when the connection fails, so it never rents twice.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := r
			req.Requirements.GPUModel, req.Duration = model, rental.Duration(duration)
			for _, s := range []struct {
				flag, v string
				dst     *rental.Size
			}{{"--min-vram", vram, &req.Requirements.MinVRAM}, {"--ram", ram, &req.Requirements.RAM}, {"--disk", disk, &req.Requirements.Disk}} {
				if s.v == "" {
					continue
				}
				n, err := rental.ParseSize(s.v)
				if err != nil {
					return usageErr("%s: %v", s.flag, err)
				}
				*s.dst = rental.Size(n)
			}
			if len(sshKeys) == 0 {
				return usageErr("--ssh-key is required (an OpenSSH public key file)")
			}
			for _, k := range sshKeys {
				text, err := readSSHKey(k)
				if err != nil {
					return err
				}
				for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
					if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
						req.SSHKeys = append(req.SSHKeys, line)
					}
				}
			}
			if idem == "" {
				var b [16]byte
				_, _ = rand.Read(b[:])
				idem = hex.EncodeToString(b[:])
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			stop := a.waiting("allocating: the API asks the verified miners that fit, best first", 0)
			al, replayed, err := c.CreateAllocation(cmd.Context(), req, idem)
			stop()
			if err != nil {
				return apiErr(err)
			}
			if f.asJSON {
				return a.printJSON(al)
			}
			return writeCreated(a.Out, al, identityFile(sshKeys[0]), replayed)
		},
	}
	f.register(cmd, `the allocation: {"id", "host", "port", "username", "ssh_command", "expires_at", …} (+ "password" with --password)`)
	fs := cmd.Flags()
	fs.IntVar(&r.Requirements.GPUCount, "gpus", 1, "number of GPUs")
	fs.StringVar(&model, "gpu-model", "", "GPU model (a case-insensitive part of its name)")
	fs.StringVar(&vram, "min-vram", "", "memory per GPU, at least (e.g. 80GiB)")
	fs.IntVar(&r.Requirements.CPUCount, "cpus", 0, "CPUs")
	fs.StringVar(&ram, "ram", "", "memory (e.g. 16GiB)")
	fs.StringVar(&disk, "disk", "", "disk (e.g. 100GiB)")
	fs.StringSliceVar(&sshKeys, "ssh-key", nil, "OpenSSH public key file that may log in (repeatable; required)")
	fs.DurationVar(&duration, "duration", time.Hour, "how long to rent it")
	fs.StringVar(&r.Image, "image", "", "image to run (default: the miner's)")
	fs.BoolVar(&r.Password, "password", false, "also enable password login and print the password once")
	fs.IntSliceVar(&r.Ports, "ports", nil, "extra container TCP ports to publish (e.g. 8888,6006)")
	fs.StringVar(&r.MinerHotkey, "hotkey", "", "rent this miner (admin tokens only)")
	fs.StringVar(&idem, "idempotency-key", "", "Idempotency-Key of the request (default: random); reuse it to retry a request safely")
	return cmd
}

func newRentListCmd(a *app) *cobra.Command {
	var f rentFlags
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List your allocations (never a secret)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			list, err := c.Allocations(cmd.Context(), all)
			if err != nil {
				return apiErr(err)
			}
			if f.asJSON {
				return a.printJSON(web.AllocationList{Allocations: list})
			}
			return writeAllocations(a.Out, list)
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
			c, err := f.client()
			if err != nil {
				return err
			}
			al, err := c.Allocation(cmd.Context(), args[0])
			if err != nil {
				return apiErr(err)
			}
			if f.asJSON {
				return a.printJSON(al)
			}
			return writeAllocation(a.Out, al)
		},
	}
	f.register(cmd, "the allocation")
	return cmd
}

func newRentExtendCmd(a *app) *cobra.Command {
	var f rentFlags
	var d time.Duration
	cmd := &cobra.Command{
		Use:   "extend ID",
		Short: "Add time to an allocation",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if d < rental.MinDuration {
				return usageErr("--duration must be at least %s", rental.MinDuration)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			al, err := c.Extend(cmd.Context(), args[0], d)
			if err != nil {
				return apiErr(err)
			}
			if f.asJSON {
				return a.printJSON(al)
			}
			fmt.Fprintf(a.Out, "allocation %s now ends %s\n", al.ID, al.ExpiresAt.Format(time.RFC3339))
			return nil
		},
	}
	f.register(cmd, "the allocation")
	cmd.Flags().DurationVar(&d, "duration", time.Hour, "time to add")
	return cmd
}

func newRentStopCmd(a *app) *cobra.Command {
	var f rentFlags
	cmd := &cobra.Command{
		Use:   "stop ID",
		Short: "End an allocation (the miner is told; the API retries until it confirms)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			al, err := c.End(cmd.Context(), args[0])
			if err != nil {
				return apiErr(err)
			}
			if f.asJSON {
				return a.printJSON(al)
			}
			if al.State == "ended" {
				fmt.Fprintf(a.Out, "allocation %s ended\n", al.ID)
			} else {
				fmt.Fprintf(a.Out, "allocation %s is ending: %s\n", al.ID, al.Note)
			}
			return nil
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
USER@HOST), with -i KEY when --identity is given and -o OPTION for each
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
			argv := sshArgv(al, identity, options, args[1:])
			return a.execSSH(cmd.Context(), argv)
		},
	}
	f.register(cmd, "")
	cmd.Flags().StringVarP(&identity, "identity", "i", "", "private key file for ssh -i")
	cmd.Flags().StringArrayVarP(&options, "ssh-option", "o", nil, "an OpenSSH option for ssh -o (repeatable; these come first, so they win)")
	return cmd
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
