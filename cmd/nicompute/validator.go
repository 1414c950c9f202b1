package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/allocations"
	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/pog"
	"github.com/nicompute/nicompute/internal/sqlite"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/validator"
	"github.com/nicompute/nicompute/internal/version"
)

// validatorOptions configure one validator; `nicompute validator` fills
// them from its flags and devnet builds one.
type validatorOptions struct {
	NetUID subnet.NetUID
	Hotkey *keys.Keypair
	Chain  validator.Chain
	// DataDir holds validator.db.
	DataDir string
	// RecordsDir holds the allocation records of this hotkey (nicompute
	// allocate) and APIDir the allocation API's api.db: the miners rented
	// out through either are not tested.
	RecordsDir string
	APIDir     string
	// Service is the validator's configuration; NetUID, Hotkey, Log and
	// Report are filled in here.
	Service validator.Config
	Log     *slog.Logger
	Report  io.Writer
}

// runningValidator is a validator with the adapters it owns.
type runningValidator struct {
	*validator.Service
	db *sqlite.DB
	d  *axon.Dendrite
}

// Close stops the validator, then closes its store and connections.
func (v *runningValidator) Close() error {
	return errors.Join(v.Service.Close(), v.d.Close(), v.db.Close())
}

// startValidator wires the adapters into a validator service: the SQLite
// store in DataDir, a dendrite signed by the hotkey, the allocation records
// and the given chain. The caller keeps ownership of the chain.
func startValidator(ctx context.Context, o validatorOptions) (*runningValidator, error) {
	if o.Hotkey == nil || o.Chain == nil {
		return nil, errors.New("start validator: hotkey and chain are required")
	}
	db, err := sqlite.Open(ctx, filepath.Join(o.DataDir, "validator.db"), sqlite.ValidatorSchema)
	if err != nil {
		return nil, fmt.Errorf("start validator: open store: %w", err)
	}
	d := axon.NewDendrite(o.Hotkey)
	cfg := o.Service
	cfg.NetUID, cfg.Hotkey, cfg.Log, cfg.Report = o.NetUID, o.Hotkey, o.Log, o.Report
	svc, err := validator.New(ctx, validator.Deps{
		Chain:   o.Chain,
		Store:   sqlite.NewValidatorStore(db),
		Axon:    d,
		Rentals: rentals(o.RecordsDir, o.APIDir, uint16(o.NetUID), o.Hotkey.SS58()),
	}, cfg)
	if err != nil {
		d.Close()
		db.Close()
		return nil, err
	}
	return &runningValidator{Service: svc, db: db, d: d}, nil
}

// rentals reads the allocation records of the validator's hotkey on netuid
// (pending ones included: the miner is being allocated) and the live
// allocations of the allocation API whose data directory is apiDir, when
// it has a store there.
func rentals(dir, apiDir string, netuid uint16, hotkey string) validator.Rentals {
	if dir == "" && apiDir == "" {
		return nil
	}
	return func(ctx context.Context) (map[string]bool, error) {
		out := map[string]bool{}
		if dir != "" {
			recs, err := allocations.List(dir)
			if err != nil {
				return nil, err
			}
			for _, r := range recs {
				if r.NetUID == netuid && (r.Validator == "" || r.Validator == hotkey) {
					out[r.Hotkey] = true
				}
			}
		}
		if apiDir == "" {
			return out, nil
		}
		if _, err := os.Stat(filepath.Join(apiDir, "api.db")); err != nil {
			return out, nil // no API runs with this data directory
		}
		db, err := openRentalDB(ctx, apiDir)
		if err != nil {
			return nil, err
		}
		defer db.Close()
		rented, err := sqlite.NewRentalStore(db).RentedHotkeys(ctx)
		for h := range rented {
			out[h] = true
		}
		return out, err
	}
}

var _ validator.Store = (*sqlite.ValidatorStore)(nil)

// validatorFlags are `nicompute validator`'s flags, named as SN27's.
type validatorFlags struct {
	w                walletFlags
	sf               subtensorFlags
	netuid           uint16
	unrecognized     bool
	hardwareQuery    bool
	specsBatch       int
	threshold        int
	minMiner         string
	blackHotkeys     []string
	blackColdkeys    []string
	dataDir          string
	apiDir           string
	pogInterval      uint64
	weightsInterval  uint64
	worker           string
	cudaWorker       string
	gpuTable         string
	maxWorkers       int
	verifiers        int
	retryLimit       int
	retryInterval    time.Duration
	maxRandomDelay   time.Duration
	attemptTimeout   time.Duration
	allocateTimeout  time.Duration
	leaseRAM         string
	leaseDisk        string
	poll             time.Duration
	challengeBatches int
	forcePrometheus  bool
	daemon           daemonFlags
}

func newValidatorCmd(a *app) *cobra.Command {
	var f validatorFlags
	cmd := &cobra.Command{
		Use:   "validator",
		Short: "Prove miners' GPUs with Proof-of-GPU, score them and set weights",
		Long: `Run a validator: follow the subnet's metagraph, test every queryable miner
with Proof-of-GPU every --validator.pog.interval blocks (a short test lease,
an SSH login with an ephemeral key, this validator's own worker uploaded over
SFTP — once per worker version into a nicompute miner's cache for this
validator, hashed in the lease before every run —, the wall-clock measured
here, the lease deallocated whatever happens),
score the miners by their proven GPUs and set weights every
--validator.weights.interval blocks. Miners rented out with nicompute allocate
or through the allocation API (nicompute api, --validator.api-data) keep
their score and are not tested while rented.

The hotkey must be registered on --netuid (the command exits otherwise);
without a validator permit its weights do not count, which is logged.
Results live in --validator.data/validator.db, so a restarted validator sets
the same weights without testing again. Miners this hotkey rented out with
nicompute allocate keep their score and are not tested while rented.

Workers: --validator.pog.worker (default: this binary) runs the cpu
backend; --validator.pog.cuda-worker (default: nicompute-pog next to this
binary, when present) is tried first and used when it finds real GPUs in the
lease, so images without a C library or hosts without the CUDA driver fall
back to the static worker.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runValidator(cmd.Context(), f) },
	}
	fs := cmd.Flags()
	f.w.register(fs)
	f.sf.register(fs)
	fs.Uint16Var(&f.netuid, "netuid", 27, "subnet id")
	fs.BoolVar(&f.unrecognized, "validator.whitelist.unrecognized", false, "also test miners whose specs name no GPU of the GPU table")
	fs.BoolVar(&f.hardwareQuery, "validator.perform.hardware.query", true, "query miners' Specs before each sweep (--validator.perform.hardware.query=false disables it)")
	fs.IntVar(&f.specsBatch, "validator.specs.batch.size", validator.DefaultSpecsBatchSize, "miners whose Specs are queried at once")
	fs.IntVar(&f.challengeBatches, "validator.challenge.batch.size", 0, "accepted for SN27 compatibility; see --validator.pog.max-workers")
	fs.IntVar(&f.threshold, "validator.whitelist.updated.threshold", validator.DefaultUpdatedThreshold, "skip miners below --validator.miner.min_version only once more than this percentage of miners runs it")
	fs.StringVar(&f.minMiner, "validator.miner.min_version", "0", "lowest miner axon version tested, MAJOR.MINOR.PATCH (\"0\": no check; SN27's Python miners serve 183 under their own scheme, so a nicompute version would exclude them)")
	fs.StringSliceVar(&f.blackHotkeys, "blacklist.hotkeys", nil, "miner hotkeys never tested (score 0)")
	fs.StringSliceVar(&f.blackColdkeys, "blacklist.coldkeys", nil, "coldkeys whose miners are never tested (score 0)")
	fs.StringVar(&f.dataDir, "validator.data", "", "state directory for validator.db (default ~/.nicompute/validator/WALLET-HOTKEY-netuidN)")
	fs.StringVar(&f.apiDir, "validator.api-data", "", "the allocation API's state directory: miners rented through it are not tested (default ~/.nicompute/api/WALLET-HOTKEY-netuidN)")
	fs.Uint64Var(&f.pogInterval, "validator.pog.interval", validator.DefaultPoGInterval, "blocks between Proof-of-GPU sweeps")
	fs.Uint64Var(&f.weightsInterval, "validator.weights.interval", validator.DefaultWeightsInterval, "blocks between weights submissions")
	fs.StringVar(&f.worker, "validator.pog.worker", "", "static nicompute binary uploaded as the worker (default: this executable)")
	fs.StringVar(&f.cudaWorker, "validator.pog.cuda-worker", "", "nicompute-pog binary (CUDA worker) tried first (default: nicompute-pog next to this executable, if present; \"-\" disables it)")
	fs.StringVar(&f.gpuTable, "validator.gpu-table", "", "GPU reference table YAML overriding the built-in one")
	fs.IntVar(&f.maxWorkers, "validator.pog.max-workers", pog.MaxWorkers, "miners tested at once")
	fs.IntVar(&f.verifiers, "validator.pog.verifiers", 0, "tests verifying their proofs at once, the validator's CPU-bound work (default: half the CPUs)")
	fs.IntVar(&f.retryLimit, "validator.pog.retry-limit", pog.PoGRetryLimit, "attempts per miner and sweep")
	fs.DurationVar(&f.retryInterval, "validator.pog.retry-interval", pog.PoGRetryInterval, "wait between attempts")
	fs.DurationVar(&f.maxRandomDelay, "validator.pog.max-random-delay", pog.MaxRandomDelay, "longest random delay before a sweep starts")
	fs.DurationVar(&f.attemptTimeout, "validator.pog.attempt-timeout", validator.DefaultAttemptTimeout, "time limit of one test: allocation, login, upload and the session")
	fs.DurationVar(&f.allocateTimeout, "validator.pog.allocate-timeout", validator.DefaultAllocateTimeout, "time limit of the test lease's Allocate call")
	fs.StringVar(&f.leaseRAM, "validator.pog.lease.ram", "4GiB", "memory of a test lease")
	fs.StringVar(&f.leaseDisk, "validator.pog.lease.disk", "2GiB", "disk of a test lease")
	fs.BoolVar(&f.forcePrometheus, "validator.force.update.prometheus", false, "publish the --metrics.listen endpoint on chain (serve_prometheus, as Bittensor validators do) at start")
	f.daemon.register(fs, true)
	fs.DurationVar(&f.poll, "validator.chain-poll", 0, "how often the chain head is read (default 6s)")
	_ = fs.MarkHidden("validator.chain-poll")
	_ = fs.MarkHidden("validator.challenge.batch.size")
	return cmd
}

// config validates the flags into the service configuration.
func (f validatorFlags) config() (validator.Config, error) {
	c := validator.Config{
		BlacklistHotkeys:      f.blackHotkeys,
		BlacklistColdkeys:     f.blackColdkeys,
		UpdatedThreshold:      f.threshold,
		HardwareQuery:         f.hardwareQuery,
		SpecsBatchSize:        f.specsBatch,
		WhitelistUnrecognized: f.unrecognized,
		PoGInterval:           f.pogInterval,
		WeightsInterval:       f.weightsInterval,
		PollInterval:          f.poll,
		PoG: validator.PoGConfig{
			Worker:          f.worker,
			MaxWorkers:      f.maxWorkers,
			Verifiers:       f.verifiers,
			RetryLimit:      f.retryLimit,
			RetryInterval:   f.retryInterval,
			MaxRandomDelay:  f.maxRandomDelay,
			AttemptTimeout:  f.attemptTimeout,
			AllocateTimeout: f.allocateTimeout,
		},
	}
	switch {
	case f.specsBatch < 1:
		return c, usageErr("--validator.specs.batch.size must be at least 1")
	case f.threshold < 0 || f.threshold > 100:
		return c, usageErr("--validator.whitelist.updated.threshold %d out of [0, 100]", f.threshold)
	case f.pogInterval < 1 || f.weightsInterval < 1:
		return c, usageErr("--validator.pog.interval and --validator.weights.interval must be at least 1 block")
	case f.maxWorkers < 1 || f.retryLimit < 1:
		return c, usageErr("--validator.pog.max-workers and --validator.pog.retry-limit must be at least 1")
	case f.verifiers < 0:
		return c, usageErr("--validator.pog.verifiers must not be negative")
	case f.retryInterval < 0 || f.attemptTimeout < 0 || f.allocateTimeout < 0:
		return c, usageErr("durations must not be negative")
	}
	if f.maxRandomDelay <= 0 {
		c.PoG.MaxRandomDelay = -1
	}
	switch v := f.minMiner; v {
	case "", "0":
	default:
		n, err := parseVersionInt(v)
		if err != nil {
			return c, usageErr("--validator.miner.min_version: %v", err)
		}
		c.MinMinerVersion = n
	}
	var err error
	if c.PoG.Lease.MemoryBytes, err = parseBytes("--validator.pog.lease.ram", f.leaseRAM); err != nil {
		return c, err
	}
	if c.PoG.Lease.DiskBytes, err = parseBytes("--validator.pog.lease.disk", f.leaseDisk); err != nil {
		return c, err
	}
	if f.gpuTable != "" {
		if c.PoG.Table, err = market.LoadGPUTable(f.gpuTable); err != nil {
			return c, usageErr("--validator.gpu-table: %v", err)
		}
	}
	switch f.cudaWorker {
	case "-":
	case "":
		if exe, err := os.Executable(); err == nil {
			p := filepath.Join(filepath.Dir(exe), "nicompute-pog")
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				c.PoG.CUDAWorker = p
			}
		}
	default:
		c.PoG.CUDAWorker = f.cudaWorker
	}
	return c, nil
}

func (a *app) runValidator(ctx context.Context, f validatorFlags) error {
	cfg, err := f.config()
	if err != nil {
		return err
	}
	dataDir := f.dataDir
	if dataDir == "" {
		dataDir = filepath.Join("~", ".nicompute", "validator", fmt.Sprintf("%s-%s-netuid%d", f.w.name, f.w.hotkey, f.netuid))
	}
	if dataDir, err = expandHome(dataDir); err != nil {
		return err
	}
	apiDir := f.apiDir
	if apiDir == "" {
		apiDir = filepath.Join("~", ".nicompute", "api", fmt.Sprintf("%s-%s-netuid%d", f.w.name, f.w.hotkey, f.netuid))
	}
	if apiDir, err = expandHome(apiDir); err != nil {
		return err
	}
	walletDir, err := f.w.dir()
	if err != nil {
		return err
	}
	hotkey, err := a.loadHotkey(f.w)
	if err != nil {
		return err
	}
	if f.forcePrometheus && f.daemon.obs.listen == "" {
		return usageErr("--validator.force.update.prometheus publishes the metrics endpoint: set --metrics.listen")
	}
	up, obs, err := a.startOps("validator", f.daemon)
	if err != nil {
		return err
	}
	defer obs.Close()
	cfg.Metrics = obs.registerer()
	ch, err := a.dialChain(ctx, f.sf)
	if err != nil {
		return err
	}
	defer ch.Close()
	log := a.logger()
	if cfg.PoG.CUDAWorker != "" {
		log.Info("cuda worker found; it is tried first in each test lease", "path", cfg.PoG.CUDAWorker)
	}
	v, err := startValidator(ctx, validatorOptions{
		NetUID:     subnet.NetUID(f.netuid),
		Hotkey:     hotkey,
		Chain:      ch,
		DataDir:    dataDir,
		RecordsDir: allocations.Dir(walletDir, f.w.name, f.w.hotkey),
		APIDir:     apiDir,
		Service:    cfg,
		Log:        log,
		Report:     a.Out,
	})
	if err != nil {
		if errors.Is(err, validator.ErrNotRegistered) {
			return chainErr("%w; register it first: %s", err, commandLine("subnet register", f.netuid, f.w, f.sf))
		}
		return a.restartIf(up, up.failed(a, err))
	}
	if obs != nil && f.daemon.obs.dashboard {
		validatorDashboard(obs, v, ch, subnet.NetUID(f.netuid))
	}
	if f.forcePrometheus {
		if err := a.publish(obs, f.daemon.obs); err != nil {
			return errors.Join(err, v.Close())
		}
		a.servePrometheus(ctx, ch, hotkey, subnet.NetUID(f.netuid), obs.srv.Addr())
	}
	return a.serveDaemon(ctx, "validator (running tests deallocate their leases first)", v, obs, up, f.daemon, nil)
}

// servePrometheus publishes the validator's metrics endpoint on chain. A
// refusal (rate limit, address) is logged: the validator runs without it.
func (a *app) servePrometheus(ctx context.Context, ch subnet.PrometheusServer, hotkey subnet.Signer, netuid subnet.NetUID, listen string) {
	log := a.logger()
	ip, port, err := prometheusEndpoint(listen, outboundIP)
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err = ch.ServePrometheus(cctx, hotkey, netuid, subnet.PrometheusInfo{IP: ip, Port: port, Version: version.Int()})
		cancel()
	}
	if err != nil {
		log.Error("metrics endpoint not published on chain (serve_prometheus)", "err", err)
		return
	}
	log.Info("metrics endpoint published on chain (serve_prometheus)", "ip", ip, "port", port, "version", version.Int())
}
