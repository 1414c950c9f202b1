package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

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

// rentDo runs a rent command's API call and prints the answer: as JSON
// with --json, else with human.
func rentDo[T any](a *app, f *rentFlags, call func(*web.Client) (T, error), human func(T) error) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	v, err := call(c)
	if err != nil {
		return apiErr(err)
	}
	if f.asJSON {
		return a.printJSON(v)
	}
	return human(v)
}

// rentDuration parses a --duration: Go's syntax or whole days ("7d"), at
// least rental.MinDuration.
func rentDuration(s string) (time.Duration, error) {
	d, err := rental.ParseDuration(s)
	if err != nil {
		return 0, usageErr("--duration: %v", err)
	}
	if d < rental.MinDuration {
		return 0, usageErr("--duration must be at least %s", rental.MinDuration)
	}
	return d, nil
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
			return rentDo(a, &f, func(c *web.Client) (web.OfferList, error) {
				offers, err := c.Offers(cmd.Context(), q)
				return web.OfferList{Offers: offers}, err
			}, func(l web.OfferList) error { return writeOffers(a.Out, l.Offers) })
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
	var duration string
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
			d, err := rentDuration(duration)
			if err != nil {
				return err
			}
			req.Requirements.GPUModel, req.Duration = model, rental.Duration(d)
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
	fs.StringVar(&duration, "duration", "1h", "how long to rent it (\"90m\", \"4h\", \"7d\")")
	fs.StringVar(&r.Image, "image", "", "image to run (default: the miner's)")
	fs.BoolVar(&r.Password, "password", false, "also enable password login and print the password once")
	fs.IntSliceVar(&r.Ports, "ports", nil, "extra container TCP ports to publish (e.g. 8888,6006)")
	fs.StringVar(&r.MinerHotkey, "hotkey", "", "rent this miner (admin tokens only)")
	fs.StringVar(&idem, "idempotency-key", "", "Idempotency-Key of the request (default: random); reuse it to retry a request safely")
	return cmd
}
