package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/doctor"
	"github.com/nicompute/nicompute/internal/miner"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/version"
)

// doctorFlags are `nicompute doctor`'s flags: the role's own names.
type doctorFlags struct {
	role       string
	asJSON     bool
	w          walletFlags
	sf         subtensorFlags
	netuid     uint16
	axonPort   int
	externalIP string
	sshPort    int
	metrics    string
	apiListen  string
	dataDir    string
	dockerHost string
	// The API's own flags (--role api).
	apiData, apiValidator, tlsCert, tlsKey, tokenFile string
}

func newDoctorCmd(a *app) *cobra.Command {
	var f doctorFlags
	cmd := &cobra.Command{
		Use:   "doctor --role miner|validator|api",
		Short: "Check this machine for a role: Docker, GPUs, isolation, ports, firewall, registration, version, clock, disk",
		Long: `Check that this machine is ready to run a role and say, for each finding,
pass, warn or fail, what it means and what to do. Pass the flags the role
runs with (wallet, chain, ports), so that doctor checks what the daemon
will use. The exit code is 1 when any check fails.

Some checks read the packet filter and ufw, which needs root; run as
another user they warn that they could not look.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runDoctor(cmd.Context(), f) },
	}
	fs := cmd.Flags()
	fs.StringVar(&f.role, "role", "", "role to check: miner, validator or api")
	fs.BoolVar(&f.asJSON, "json", false, "print the report as JSON")
	f.w.register(fs)
	f.sf.register(fs)
	fs.Uint16Var(&f.netuid, "netuid", 27, "subnet id")
	fs.IntVar(&f.axonPort, "axon.port", defaultAxonPort, "miner: axon port")
	fs.StringVar(&f.externalIP, "axon.external_ip", "", "miner: IP served on chain (default: the address of the default route)")
	fs.IntVar(&f.sshPort, "ssh.port", defaultSSHPort, "miner: first lease SSH port")
	fs.StringVar(&f.metrics, "metrics.listen", "", "the role's --metrics.listen, when it serves one")
	fs.StringVar(&f.apiListen, "api.listen", "", "api: the API's listen address (default "+defaultAPIListen+")")
	fs.StringVar(&f.apiData, "api.data", "", "api: the API's state directory (default ~/.nicompute/api/WALLET-HOTKEY-netuidN)")
	fs.StringVar(&f.apiValidator, "api.validator-data", "", "api: the validator's state directory (default ~/.nicompute/validator/WALLET-HOTKEY-netuidN)")
	fs.StringVar(&f.tlsCert, "api.tls-cert", "", "api: the TLS certificate the API serves (PEM)")
	fs.StringVar(&f.tlsKey, "api.tls-key", "", "api: its private key (PEM)")
	fs.StringVar(&f.tokenFile, "api.token-file", "", "api: a file holding an admin token, whose mode and validity are checked")
	fs.StringVar(&f.dataDir, "data", "", "directory whose free disk is checked (default: Docker's data root for a miner, the role's state directory otherwise)")
	fs.StringVar(&f.dockerHost, "miner.docker.host", "", "Docker engine address (default: DOCKER_HOST or the local socket)")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

func (a *app) runDoctor(ctx context.Context, f doctorFlags) error {
	cfg := doctor.Config{Role: f.role, NetUID: subnet.NetUID(f.netuid), AxonPort: f.axonPort, ExternalIP: f.externalIP,
		Ports: map[string]int{}, Version: version.Int(), MinStake: miner.DefaultMinStake}
	switch f.role {
	case "miner", "validator":
	case "api":
		if f.apiListen == "" {
			f.apiListen = defaultAPIListen
		}
		if (f.tlsCert == "") != (f.tlsKey == "") {
			return usageErr("--api.tls-cert and --api.tls-key go together")
		}
	default:
		return usageErr("--role must be miner, validator or api")
	}
	for name, addr := range map[string]string{"metrics": f.metrics, "api": f.apiListen} {
		if addr == "" {
			continue
		}
		_, p, err := net.SplitHostPort(addr)
		n, perr := strconv.Atoi(p)
		if err != nil || perr != nil || n < 1 || n > 65535 {
			return usageErr("--%s.listen %q is not HOST:PORT", name, addr)
		}
		cfg.Ports[name] = n
	}
	var files apiDoctorFiles
	if f.role == "api" {
		af := apiFlags{w: f.w, netuid: f.netuid, dataDir: f.apiData, validatorDir: f.apiValidator}
		data, vdir, err := af.dirs()
		if err != nil {
			return err
		}
		files = apiDoctorFiles{data: data, validator: vdir, cert: f.tlsCert, key: f.tlsKey, tokenFile: f.tokenFile}
		cfg.APIListen, cfg.TLS, cfg.APIStore, cfg.TokenFile = f.apiListen, f.tlsCert != "", filepath.Join(data, "api.db"), f.tokenFile
		if f.dataDir == "" {
			f.dataDir = data
		}
	}
	cfg.DataDir = f.dataDir
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join("~", ".nicompute")
		if f.role == "miner" {
			cfg.DataDir = "/var/lib/docker"
		}
	}
	var err error
	if cfg.DataDir, err = expandHome(cfg.DataDir); err != nil {
		return err
	}
	hotkey, err := a.loadHotkey(f.w)
	if err != nil {
		return err
	}
	cfg.Hotkey = hotkey.SS58()
	p := &doctorProbes{a: a, sf: f.sf, netuid: cfg.NetUID, dockerHost: f.dockerHost, api: files}
	defer p.close()
	r := doctor.Run(ctx, cfg, p)
	if f.asJSON {
		err = r.WriteJSON(a.Out)
	} else {
		err = r.WriteText(a.Out)
	}
	if err != nil {
		return err
	}
	if r.Failed() {
		return &exitError{code: 1, err: fmt.Errorf("%d check(s) failed", r.Counts()[doctor.Fail])}
	}
	return nil
}

// doctorTimeout bounds each probe.
const doctorTimeout = 15 * time.Second
