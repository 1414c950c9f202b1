package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/allocations"
	"github.com/nicompute/nicompute/internal/chain/local"
	"github.com/nicompute/nicompute/internal/devnet"
	"github.com/nicompute/nicompute/internal/docker"
	"github.com/nicompute/nicompute/internal/hostinfo"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/miner"
	"github.com/nicompute/nicompute/internal/pog"
	"github.com/nicompute/nicompute/internal/pog/pogcmd"
	"github.com/nicompute/nicompute/internal/scratch"
	"github.com/nicompute/nicompute/internal/validator"
)

// devnetOptions are the devnet command's flags.
type devnetOptions struct {
	dataDir      string
	listen       string
	blockTime    time.Duration
	tempo        uint16
	miners       int
	simGPUs      []string
	binary       string
	axonPort     int
	sshPort      int
	simTimeScale float64
	chainOnly    bool
	apiListen    string
	metricsPort  int
}

// Ports of devnet miners: every miner has its own loopback IP, so all
// serve their axon on the same port; each has sshPortsPerMiner SSH ports
// from --ssh.port on.
const (
	defaultDevnetSSHPort = 46000
	sshPortsPerMiner     = 4
)

func newDevnetCmd(a *app) *cobra.Command {
	var o devnetOptions
	cmd := &cobra.Command{
		Use:   "devnet",
		Short: "Run a whole development subnet on this machine",
		Long: `Run a whole development subnet on this machine: an embedded chain with fast
blocks, a subnet, wallets for its owner, a validator (staked for a validator
permit) and --miners miners, all registered; then the miners and the
validator themselves. State lives under --data; running devnet again on the
same directory reuses the chain, the wallets, the registrations and the
services' state. It runs until interrupted (Ctrl-C), then stops cleanly.

Miners. Miner i serves its axon on its own loopback address (127.0.0.2,
127.0.0.3, …) at --axon.port, and publishes lease SSH ports on that address
from --ssh.port + 4i. Leases run a busybox image devnet builds itself (FROM
scratch, no registry needed; it needs busybox-static at /bin/busybox) with
this binary mounted as their SSH server. Each miner simulates the GPUs of
its --sim-gpus entry ("MODEL" or "COUNTxMODEL", in order, repeated when
there are more miners): its specs report them, and its lease containers
tell the Proof-of-GPU worker to simulate them. Without a Docker engine no
miner is started (devnet says so).

Validator. It tests each miner every 5 tempos and submits weights every half
tempo; the devnet subnet has commit-reveal weights on, as Bittensor's do, so
the weights are committed to the chain's beacon and revealed by the chain one
epoch later. Only a validator started by devnet accepts simulated GPUs. Within a
few tempos the miners' incentives follow their models' scores:

  nicompute subnet metagraph --netuid 1 --subtensor.chain_endpoint URL --json

API. The allocation API runs with the validator's hotkey on --api.listen,
its dashboard at /dashboard/ (sign in with the admin token to see the
allocations); an admin token is kept in DATA/api/admin.token (mode 0600),
and DATA/endpoints.json names every URL devnet serves ({"chain": …,
"api": …, "api.dashboard": …, "api.metrics": …, "validator.metrics": …}).
Once the validator verified the miners:

  nicompute rent offers --api.url URL --api.token-file DATA/api/admin.token

The chain is a development chain: its faucet mints TAO for anyone who can
reach --chain.listen, so keep it on a loopback address.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runDevnet(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data", ".devnet", "directory holding the devnet's chain, wallets and service state")
	f.StringVar(&o.listen, "chain.listen", "127.0.0.1:9944", "address the embedded chain listens on")
	f.DurationVar(&o.blockTime, "block-time", time.Second, "time between blocks")
	f.Uint16Var(&o.tempo, "tempo", 20, "blocks between epochs of the devnet subnet (when it is created)")
	f.IntVar(&o.miners, "miners", 3, "number of miners")
	f.StringSliceVar(&o.simGPUs, "sim-gpus", devnet.DefaultSimGPUs, "simulated GPUs per miner, in order: MODEL or COUNTxMODEL from the GPU table, comma-separated")
	f.StringVar(&o.binary, "binary", "", "static nicompute binary mounted into lease containers and uploaded as the Proof-of-GPU worker (default: this executable)")
	f.IntVar(&o.axonPort, "axon.port", defaultAxonPort, "axon port of every miner (each on its own loopback IP)")
	f.IntVar(&o.sshPort, "ssh.port", defaultDevnetSSHPort, "first lease SSH port; miner i uses the 4 ports from here + 4i")
	f.Float64Var(&o.simTimeScale, "sim-time-scale", 0.2, "fraction of a simulated model's real compute time a simulated GPU takes")
	f.BoolVar(&o.chainOnly, "chain-only", false, "run the chain and registrations only: no miners, no validator, no API")
	f.StringVar(&o.apiListen, "api.listen", defaultAPIListen, "address the allocation API listens on")
	f.IntVar(&o.metricsPort, "metrics.port", 0, "first loopback port of the daemons' /metrics and dashboards (chain, validator, miner 0, …; 0: free ports)")
	return cmd
}

func (a *app) runDevnet(ctx context.Context, o devnetOptions) error {
	if o.miners < 0 || o.miners > 200 {
		return usageErr("--miners must be between 0 and 200")
	}
	if o.blockTime < 10*time.Millisecond {
		return usageErr("--block-time must be at least 10ms")
	}
	if o.tempo == 0 {
		return usageErr("--tempo must be at least 1")
	}
	if o.axonPort < 1 || o.axonPort > 65535 {
		return usageErr("--axon.port %d out of range", o.axonPort)
	}
	if o.sshPort < 1 || o.sshPort+sshPortsPerMiner*max(o.miners, 1)-1 > 65535 {
		return usageErr("--ssh.port %d leaves too few ports for %d miners", o.sshPort, o.miners)
	}
	if !(o.simTimeScale > 0 && o.simTimeScale <= 1) {
		return usageErr("--sim-time-scale must be in (0, 1]")
	}
	sims, err := devnet.ParseSimGPUs(market.DefaultGPUTable(), o.simGPUs, o.miners)
	if err != nil {
		return usageErr("--sim-gpus: %v", err)
	}
	bin := ""
	if !o.chainOnly {
		if bin, err = devnetBinary(o.binary); err != nil {
			return err
		}
	}
	dir, err := expandHome(o.dataDir)
	if err != nil {
		return err
	}
	paths := devnet.PathsOf(dir)
	log := a.logger()

	obs := newDevnetObservers(o.metricsPort, log)
	defer obs.close()
	chainObs, err := obs.observer("chain")
	if err != nil {
		return err
	}
	genesis := devnet.Genesis(o.tempo)
	node, err := local.Open(ctx, local.Config{
		DataDir: paths.Chain, Listen: o.listen, BlockTime: o.blockTime, Genesis: &genesis, Log: log.With("component", "chain"),
		Metrics: chainObs.reg,
	})
	if err != nil {
		return fmt.Errorf("start the embedded chain: %w", err)
	}
	defer node.Close()
	if err := obs.serve(chainObs, "chain", false); err != nil {
		return err
	}
	client, err := local.Dial(ctx, node.Endpoint())
	if err != nil {
		return fmt.Errorf("connect to the embedded chain: %w", err)
	}
	defer client.Close()

	opts := devnet.Options{WalletDir: paths.Wallets, Miners: o.miners, Tempo: o.tempo}
	p := a.newProgress(devnet.Steps(opts), "devnet")
	opts.Progress = p.step
	layout, err := devnet.Bootstrap(ctx, client, opts)
	p.finish()
	if err != nil {
		return err
	}

	svc := &devnetServices{obs: obs}
	defer svc.close()
	if !o.chainOnly {
		if err := a.startDevnetServices(ctx, o, bin, paths, layout, sims, node.Endpoint(), svc); err != nil {
			return err
		}
		if err := a.startDevnetAPI(ctx, o, paths, layout, node.Endpoint(), svc); err != nil {
			return err
		}
	}
	if err := obs.write(paths.Root, node.Endpoint()); err != nil {
		return err
	}

	m, err := client.Metagraph(ctx, layout.NetUID)
	if err != nil {
		return fmt.Errorf("metagraph: %w", err)
	}
	if err := printMetagraph(a.Out, m); err != nil {
		return err
	}
	a.printDevnetLayout(node, paths, layout, svc)
	obs.print(a.Out, paths.Root)

	stopped := svc.watch()
	select {
	case <-ctx.Done():
		fmt.Fprintln(a.Err, "devnet: stopping")
	case <-node.Done():
		if err := node.Err(); err != nil {
			return fmt.Errorf("embedded chain stopped: %w", err)
		}
	case err := <-stopped:
		return fmt.Errorf("devnet service stopped: %w", err)
	}
	return nil
}

// devnetPolicy is the production policy made lenient with time, so that
// a devnet on a loaded machine still credits its honest simulated GPUs:
// credit from 30% of a model's rate, 5 s more residency slack. Memory
// still decides between models, which keeps the incentives ordered.
func devnetPolicy() *pog.Policy {
	p := pog.DefaultPolicy()
	p.MinRateFraction = 0.3
	p.ResidencySlack += 5 * time.Second
	return &p
}

// devnetBinary resolves the static nicompute binary devnet mounts into
// lease containers and uploads as the worker (default: this executable).
func devnetBinary(p string) (string, error) {
	if p == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("find own binary: %w", err)
		}
		p = exe
	}
	p, err := filepath.Abs(p)
	if err == nil {
		p, err = filepath.EvalSymlinks(p)
	}
	if err != nil {
		return "", usageErr("--binary: %v", err)
	}
	if err := devnet.CheckStatic(p); err != nil {
		return "", usageError(err)
	}
	return p, nil
}

// devnetServices are the miners, the validator and the API a devnet runs.
type devnetServices struct {
	miners    []*runningMiner
	sims      []devnet.SimGPUs
	validator *runningValidator
	api       *runningAPI
	note      string // why no miner runs, when none does
	obs       *devnetObservers
}

// watch returns a channel that receives why the first service to stop on
// its own stopped.
func (s *devnetServices) watch() <-chan error {
	ch := make(chan error, 1)
	type service interface {
		Done() <-chan struct{}
		Err() error
	}
	var all []service
	for _, m := range s.miners {
		all = append(all, m)
	}
	if s.validator != nil {
		all = append(all, s.validator)
	}
	if s.api != nil {
		all = append(all, s.api)
	}
	for _, x := range all {
		go func() {
			<-x.Done()
			err := x.Err()
			if err == nil {
				err = errors.New("stopped")
			}
			select {
			case ch <- err:
			default:
			}
		}()
	}
	return ch
}

// close stops the API (its leases stay, for the next run), then the
// validator (its running tests deallocate their leases on the miners),
// then the miners.
func (s *devnetServices) close() {
	if s.api != nil {
		_ = s.api.Close()
	}
	if s.validator != nil {
		_ = s.validator.Close()
	}
	for _, m := range s.miners {
		_ = m.Close()
	}
}

// startDevnetServices starts the miners (when Docker is there) and the
// validator into svc.
func (a *app) startDevnetServices(ctx context.Context, o devnetOptions, bin string, paths devnet.Paths, l *devnet.Layout, sims []devnet.SimGPUs, endpoint string, svc *devnetServices) error {
	log := a.logger()
	if len(l.Miners) > 0 {
		var image string
		var err error
		if derr := dockerAvailable(ctx, ""); derr != nil {
			svc.note = fmt.Sprintf("Docker is not available (%v): no miner started", derr)
		} else if image, err = devnet.BuildBaseImage(ctx, ""); errors.Is(err, scratch.ErrNoBusybox) {
			svc.note = fmt.Sprintf("cannot build the lease image: %v (install busybox-static): no miner started", err)
		} else if err != nil {
			return fmt.Errorf("devnet lease image: %w", err)
		}
		if svc.note != "" {
			fmt.Fprintln(a.Err, "devnet: "+svc.note)
		}
		for i, id := range l.Miners {
			if svc.note != "" {
				break
			}
			ip := devnet.MinerIP(i)
			first := o.sshPort + i*sshPortsPerMiner
			mobs, client, err := svc.obs.daemon(ctx, "miner", endpoint)
			if err != nil {
				return err
			}
			m, err := startMiner(ctx, minerOptions{
				NetUID:        l.NetUID,
				Hotkey:        id.Hotkey,
				Chain:         client,
				Metrics:       mobs.reg,
				DataDir:       filepath.Join(paths.Miners, strconv.Itoa(i)),
				AxonListen:    net.JoinHostPort(ip, strconv.Itoa(o.axonPort)),
				ExternalIP:    ip,
				SSHPorts:      miner.PortRange{First: first, Last: first + sshPortsPerMiner - 1},
				SSHHostIP:     ip,
				Image:         image,
				BinaryPath:    bin,
				DockerNetwork: devnet.Network,
				GPUs:          hostinfo.Static{Devices: sims[i].Devices(i)},
				SimulatedGPUs: true,
				LeaseFiles:    []docker.File{{Path: pogcmd.SimulateFile, Mode: 0o644, Data: []byte(sims[i].Spec() + "\n")}},
				LeaseMemory:   256 << 20,
				PollInterval:  o.blockTime,
				// Devnet runs for a developer, often not as root: leases
				// are confined where the packet filter can be installed.
				UnsafeUnconfined: true,
				Log:              log.With("miner", i),
			})
			if err != nil {
				return fmt.Errorf("start devnet miner %d: %w", i, err)
			}
			svc.miners = append(svc.miners, m)
			svc.sims = append(svc.sims, sims[i])
			minerDashboard(mobs, m)
			if err := svc.obs.serve(mobs, devnet.MinerName(i), true); err != nil {
				return err
			}
		}
	}
	pogEvery, weightsEvery := devnet.Intervals(o.tempo)
	vobs, client, err := svc.obs.daemon(ctx, "validator", endpoint)
	if err != nil {
		return err
	}
	v, err := startValidator(ctx, validatorOptions{
		NetUID:     l.NetUID,
		Hotkey:     l.Validator.Hotkey,
		Chain:      client,
		DataDir:    paths.Validator,
		RecordsDir: allocations.Dir(paths.Wallets, devnet.ValidatorWallet, devnet.HotkeyName),
		APIDir:     paths.API,
		Service: validator.Config{
			PoGInterval:      pogEvery,
			WeightsInterval:  weightsEvery,
			WeightsRetry:     1,
			PollInterval:     max(o.blockTime/2, 10*time.Millisecond),
			HardwareQuery:    true,
			UpdatedThreshold: validator.DefaultUpdatedThreshold,
			PoG: validator.PoGConfig{
				Worker:         bin,
				AllowSimulated: true,
				Policy:         devnetPolicy(),
				SimTimeScale:   o.simTimeScale,
				RetryLimit:     3,
				RetryInterval:  max(2*o.blockTime, time.Second),
				MaxRandomDelay: -1,
				Lease:          market.Requirement{CPUs: 1, MemoryBytes: 256 << 20, DiskBytes: 1 << 30},
			},
			Metrics: vobs.reg,
		},
		Log:    log,
		Report: a.Out,
	})
	if err != nil {
		return fmt.Errorf("start devnet validator: %w", err)
	}
	svc.validator = v
	validatorDashboard(vobs, v, client, l.NetUID)
	return svc.obs.serve(vobs, "validator", true)
}

func (a *app) printDevnetLayout(node *local.Node, paths devnet.Paths, l *devnet.Layout, svc *devnetServices) {
	fmt.Fprintf(a.Out, "\ndevnet is running (Ctrl-C stops it)\n")
	tw := tabwriter.NewWriter(a.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  chain\t%s (data %s)\n", node.Endpoint(), paths.Chain)
	if svc.api != nil {
		fmt.Fprintf(tw, "  api\t%s (data %s)\n", svc.api.URL, paths.API)
	}
	fmt.Fprintf(tw, "  subnet\tnetuid %d\n", l.NetUID)
	fmt.Fprintf(tw, "  wallets\t%s (no passwords; hotkey %q)\n", paths.Wallets, devnet.HotkeyName)
	fmt.Fprintf(tw, "  owner\t%s coldkey %s\n", l.Owner.Wallet, l.Owner.Coldkey.SS58())
	fmt.Fprintf(tw, "  validator\t%s uid %d hotkey %s\n", l.Validator.Wallet, l.Validator.UID, l.Validator.Hotkey.SS58())
	for i, mi := range l.Miners {
		extra := ""
		if i < len(svc.miners) {
			extra = fmt.Sprintf(" axon %s simulating %s", svc.miners[i].AxonAddr(), svc.sims[i])
		}
		fmt.Fprintf(tw, "  miner\t%s uid %d hotkey %s%s\n", mi.Wallet, mi.UID, mi.Hotkey.SS58(), extra)
	}
	tw.Flush()
	if svc.note != "" {
		fmt.Fprintf(a.Out, "\nno miner runs: %s\n", svc.note)
	}
	if svc.validator != nil {
		fmt.Fprintf(a.Out, "\nthe validator (state %s) tests the miners and sets weights; its miner table follows each sweep and each weights submission\n", paths.Validator)
	}
	if svc.api != nil {
		fmt.Fprintf(a.Out, "\nthe allocation API serves on %s (admin token in %s; every URL in %s)\n", svc.api.URL, paths.AdminToken, paths.Endpoints)
		fmt.Fprintf(a.Out, "its dashboard: %s (sign in with the admin token to see the allocations)\n", svc.api.DashboardURL)
	}
	fmt.Fprintf(a.Out, "\ntry:\n  nicompute subnet metagraph --netuid %d --subtensor.chain_endpoint %s\n", l.NetUID, node.Endpoint())
	fmt.Fprintf(a.Out, "  nicompute wallet show --wallet.path %s --wallet.name %s --json\n", paths.Wallets, l.Validator.Wallet)
	if svc.api != nil {
		fmt.Fprintf(a.Out, "  nicompute rent offers --api.url %s --api.token-file %s\n", svc.api.URL, paths.AdminToken)
	}
}
