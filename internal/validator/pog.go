package validator

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/pog"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/subnet"
)

// Defaults of PoGConfig fields left zero.
const (
	DefaultAllocateTimeout    = 90 * time.Second
	DefaultSSHTimeout         = 30 * time.Second
	DefaultUploadTimeout      = 2 * time.Minute
	DefaultProbeTimeout       = time.Minute
	DefaultHelloTimeout       = time.Minute
	DefaultAttemptTimeout     = 5 * time.Minute
	DefaultDeallocateTimeout  = 30 * time.Second
	DefaultDeallocateAttempts = 3
	DefaultDeallocateInterval = 5 * time.Second
	DefaultLeaseMemory        = 4 << 30
	DefaultLeaseDisk          = 2 << 30
)

// PoGConfig configures the tests.
type PoGConfig struct {
	// Worker is the static nicompute binary uploaded to run `nicompute pog
	// compute` (cpu backend, or sim where a devnet miner set one up);
	// default: this executable.
	Worker string
	// CUDAWorker, when set, is the nicompute-pog binary (CUDA backend,
	// dynamically linked). It is uploaded first and asked for `info`; when
	// that succeeds with at least one real (not simulated) GPU the session
	// runs it, otherwise the static Worker is uploaded and run instead (an
	// image without a C library, or a host without the CUDA driver).
	CUDAWorker string
	// UploadDir is the lease directory the worker is uploaded under, in a
	// fresh subdirectory, when the lease has no worker cache (default
	// /tmp).
	UploadDir string
	// CacheDir is where a nicompute miner's test lease has this
	// validator's worker cache, and HashCommand the command that hashes a
	// file there (defaults protocol.PoGCacheDir and protocol.HashCommand;
	// see worker.go). NoCache uploads the worker into every lease.
	CacheDir    string
	HashCommand string
	NoCache     bool
	// Verifiers is the sessions that decode and verify their proofs at
	// once, the validator's CPU-bound work (default half the CPUs, at
	// least 1).
	Verifiers int
	// Table is the GPU reference table (default: the built-in one).
	Table *market.GPUTable
	// AllowSimulated accepts simulated workers: devnet only.
	AllowSimulated bool
	// SimTimeScale is the speed factor sent to simulated workers (default
	// pog.DefaultSimTimeScale).
	SimTimeScale float64
	// Policy overrides pog.DefaultPolicy (AllowSimulated above wins).
	Policy *pog.Policy
	// Challenges is the elements checked per GPU (default
	// pog.DefaultChallenges).
	Challenges int

	// RetryLimit is the attempts per miner and sweep (default
	// pog.PoGRetryLimit), RetryInterval the wait between them (default
	// pog.PoGRetryInterval); MaxRandomDelay bounds the random delay before
	// a sweep (default pog.MaxRandomDelay; negative: none); MaxWorkers the
	// miners tested at once (default pog.MaxWorkers).
	RetryLimit     int
	RetryInterval  time.Duration
	MaxRandomDelay time.Duration
	MaxWorkers     int

	// Timeouts of each step: the Allocate call, reaching the lease's SSH
	// server, the upload, the CUDA worker's info probe, the worker's
	// complete hello line, the whole attempt, and each deallocation call
	// (DeallocateAttempts calls at most, DeallocateInterval apart).
	AllocateTimeout    time.Duration
	SSHTimeout         time.Duration
	UploadTimeout      time.Duration
	ProbeTimeout       time.Duration
	HelloTimeout       time.Duration
	AttemptTimeout     time.Duration
	DeallocateTimeout  time.Duration
	DeallocateAttempts int
	DeallocateInterval time.Duration
	// ProofTimeout bounds the wait for proofs (pog's default when zero).
	ProofTimeout time.Duration

	// Lease is the test lease's CPU, memory and disk (defaults 1 CPU,
	// 4 GiB, 2 GiB); its GPU count is the miner's (from Specs, at most
	// pog.MaxGPUs), or 1 when unknown.
	Lease market.Requirement
}

func (c *PoGConfig) setDefaults() error {
	if c.Worker == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("pog worker: %w", err)
		}
		if c.Worker, err = filepath.EvalSymlinks(exe); err != nil {
			return fmt.Errorf("pog worker: %w", err)
		}
	}
	if _, err := os.Stat(c.Worker); err != nil {
		return fmt.Errorf("pog worker: %w", err)
	}
	if c.CUDAWorker != "" {
		if _, err := os.Stat(c.CUDAWorker); err != nil {
			return fmt.Errorf("pog cuda worker: %w", err)
		}
	}
	if c.UploadDir == "" {
		c.UploadDir = "/tmp"
	}
	if c.CacheDir == "" {
		c.CacheDir = protocol.PoGCacheDir
	}
	if c.HashCommand == "" {
		c.HashCommand = protocol.HashCommand
	}
	if c.NoCache {
		c.CacheDir = ""
	}
	for _, p := range []string{c.UploadDir, c.CacheDir} {
		if p != "" && !safeLeasePath(p) {
			return fmt.Errorf("pog lease directory %q: want an absolute, clean path of letters, digits, '.', '_', '-' and '/'", p)
		}
	}
	if c.Verifiers <= 0 {
		c.Verifiers = max(1, runtime.NumCPU()/2)
	}
	if c.Table == nil {
		c.Table = market.DefaultGPUTable()
	}
	defI(&c.RetryLimit, pog.PoGRetryLimit)
	defD(&c.RetryInterval, pog.PoGRetryInterval)
	if c.MaxRandomDelay == 0 {
		c.MaxRandomDelay = pog.MaxRandomDelay
	}
	defI(&c.MaxWorkers, pog.MaxWorkers)
	defD(&c.AllocateTimeout, DefaultAllocateTimeout)
	defD(&c.SSHTimeout, DefaultSSHTimeout)
	defD(&c.UploadTimeout, DefaultUploadTimeout)
	defD(&c.ProbeTimeout, DefaultProbeTimeout)
	defD(&c.HelloTimeout, DefaultHelloTimeout)
	defD(&c.AttemptTimeout, DefaultAttemptTimeout)
	defD(&c.DeallocateTimeout, DefaultDeallocateTimeout)
	defI(&c.DeallocateAttempts, DefaultDeallocateAttempts)
	defD(&c.DeallocateInterval, DefaultDeallocateInterval)
	if c.Lease.CPUs <= 0 {
		c.Lease.CPUs = 1
	}
	if c.Lease.MemoryBytes <= 0 {
		c.Lease.MemoryBytes = DefaultLeaseMemory
	}
	if c.Lease.DiskBytes <= 0 {
		c.Lease.DiskBytes = DefaultLeaseDisk
	}
	return nil
}

// driver runs one Proof-of-GPU test of one miner.
type driver struct {
	cfg       PoGConfig
	hotkey    subnet.Signer
	axon      Caller
	log       *slog.Logger
	policy    pog.Policy
	verifiers *pog.Verifiers
	// static and cuda (nil when not configured) are the workers.
	static workerFile
	cuda   *workerFile
	// uploaded counts the worker bytes sent to leases.
	uploaded atomic.Int64
}

func newDriver(cfg PoGConfig, hotkey subnet.Signer, c Caller, log *slog.Logger) (*driver, error) {
	p := pog.DefaultPolicy()
	if cfg.Policy != nil {
		p = *cfg.Policy
	}
	p.AllowSimulated = cfg.AllowSimulated
	d := &driver{cfg: cfg, hotkey: hotkey, axon: c, log: log, policy: p, verifiers: pog.NewVerifiers(cfg.Verifiers)}
	var err error
	if d.static, err = loadWorker(cfg.Worker, "nicompute"); err != nil {
		return nil, fmt.Errorf("pog worker: %w", err)
	}
	if cfg.CUDAWorker != "" {
		w, err := loadWorker(cfg.CUDAWorker, "nicompute-pog")
		if err != nil {
			return nil, fmt.Errorf("pog cuda worker: %w", err)
		}
		d.cuda = &w
	}
	return d, nil
}

// target is a miner to test.
type target struct {
	UID    subnet.UID
	Hotkey string
	Axon   subnet.AxonInfo
	// GPUs is the GPU count the test lease asks for.
	GPUs int
	// SpecsGPUs is the GPU count the miner's Specs declared (at most
	// pog.MaxGPUs), 0 when it did not answer: at most that many are tested
	// and credited.
	SpecsGPUs int
}

// attempt is the outcome of one test.
type attempt struct {
	outcome Outcome
	// final: retrying cannot change the outcome (a proof failed).
	final        bool
	res          *pog.Result
	code         market.PoGCode
	reason       string
	hostKey      string
	deallocError string
}

func unreachable(format string, args ...any) attempt {
	return attempt{outcome: OutcomeUnreachable, code: market.PoGCodeUnreachable, reason: fmt.Sprintf(format, args...)}
}

func failed(code market.PoGCode, format string, args ...any) attempt {
	return attempt{outcome: OutcomeFail, code: code, reason: fmt.Sprintf(format, args...)}
}

// test allocates a test lease on m, runs the worker there and deallocates.
// It never panics on the miner's input and returns within AttemptTimeout
// plus the deallocation's bounded retries.
func (d *driver) test(ctx context.Context, m target) attempt {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.AttemptTimeout)
	defer cancel()
	rsaKey, pubPEM, err := protocol.GenerateKey()
	if err != nil {
		return unreachable("generate rsa key: %v", err)
	}
	signer, authLine, err := newSSHKey()
	if err != nil {
		return unreachable("generate ssh key: %v", err)
	}
	ax := axon.Target{Addr: m.Axon.Addr(), Hotkey: m.Hotkey}

	req := protocol.NewAllocate()
	req.Checking = false
	req.Timeline = 1
	r := d.cfg.Lease
	r.GPUs = max(m.GPUs, 1)
	req.SetRequirement(r)
	req.DeviceRequirement.Testing = true
	req.PublicKey = pubPEM
	req.DockerRequirement.SSHKey = authLine
	var resp protocol.Allocate
	_, callErr := protocol.CallAllocate(ctx, d.axon, ax, req, &resp, d.cfg.AllocateTimeout)
	if callErr != nil || !resp.Output.Status {
		a := unreachable("allocation refused: %s", allocReason(callErr, resp.Output))
		if mayHoldLease(callErr) {
			a.deallocError = d.deallocate(ctx, ax, pubPEM)
		}
		return a
	}
	a := d.session(ctx, m, rsaKey, resp.Output, signer)
	a.deallocError = d.deallocate(ctx, ax, pubPEM)
	return a
}

// allocReason explains a refused allocation from the miner's answer.
func allocReason(err error, out protocol.Output) string {
	msg := ""
	switch {
	case out.Error != "":
		msg = clean(out.Error, 300)
	case err != nil:
		msg = clean(err.Error(), 300)
	default:
		msg = "status false"
	}
	if code := axon.StatusCode(err); code != 0 {
		msg += " (status " + strconv.Itoa(code) + ")"
	}
	return msg
}

// mayHoldLease reports whether a failed Allocate call may still have left a
// lease behind: anything but a refusal the miner stated (4xx, or 200 with
// status false) may have.
func mayHoldLease(err error) bool {
	if err == nil {
		return false
	}
	code := axon.StatusCode(err)
	return code < 400 || code >= 500 || code == http.StatusRequestTimeout
}

// session logs in to the test lease, places the worker and drives it.
func (d *driver) session(ctx context.Context, m target, key *rsa.PrivateKey, out protocol.Output, signer ssh.Signer) attempt {
	creds, err := protocol.DecryptCredentials(key, out.Info)
	if err != nil {
		return unreachable("lease credentials unreadable: %s", clean(err.Error(), 200))
	}
	port := creds.Port
	if port == 0 {
		port = out.Port
	}
	if port <= 0 || port > 65535 {
		return unreachable("lease credentials name no valid ssh port (%d)", port)
	}
	user := creds.Username
	if user == "" {
		user = "root"
	}
	if len(user) > 32 || clean(user, 32) != user {
		return unreachable("lease credentials name an invalid user")
	}
	addr := net.JoinHostPort(m.Axon.IP, strconv.Itoa(port))
	client, hostKey, err := dialSSH(ctx, addr, user, signer, d.cfg.SSHTimeout)
	if err != nil {
		return unreachable("%s", clean(err.Error(), 300))
	}
	defer client.Close()
	// Whatever is blocked on the connection when the attempt ends (a
	// hanging worker, a stalled upload) is released by closing it.
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()

	command, err := d.prepare(ctx, client)
	if err != nil {
		a := unreachable("upload worker: %s", clean(err.Error(), 300))
		a.hostKey = hostKey
		return a
	}
	x, err := startExec(client, command)
	if err != nil {
		a := failed(market.PoGWorkerError, "start worker: %s", clean(err.Error(), 300))
		a.hostKey = hostKey
		return a
	}
	defer x.close()
	policy := d.policy
	res, err := pog.Check(ctx, x.stdout, x.stdin, pog.CheckConfig{
		Table:        d.cfg.Table,
		Policy:       &policy,
		Challenges:   d.cfg.Challenges,
		SimTimeScale: d.cfg.SimTimeScale,
		ProofTimeout: d.cfg.ProofTimeout,
		// A worker that does not complete its hello gives up its slot
		// after HelloTimeout, not the whole attempt.
		HelloTimeout: d.cfg.HelloTimeout,
		GPUs:         m.SpecsGPUs,
		Verifiers:    d.verifiers,
	})
	if err != nil && ctx.Err() == nil {
		x.stdin.Close()
		x.settle(time.Second)
	}
	a := classify(ctx, res, err, x.stderr)
	if errors.Is(err, pog.ErrNoHello) {
		a = failed(market.PoGWorkerError, "no complete hello from the worker within %s%s", d.cfg.HelloTimeout, x.stderr.suffix())
	}
	a.hostKey = hostKey
	return a
}

// realGPUs reports whether a worker's `info` output (untrusted) describes
// at least one real GPU, and why not.
func realGPUs(b []byte) (bool, string) {
	if len(b) > pog.MaxHelloLine {
		return false, "cuda worker info too long"
	}
	var info pog.Info
	if err := json.Unmarshal(b, &info); err != nil {
		return false, "cuda worker info is not JSON"
	}
	if err := info.Validate(); err != nil {
		return false, "cuda worker info invalid: " + clean(err.Error(), 200)
	}
	if info.Simulated || len(info.GPUs) == 0 {
		return false, "cuda worker found no GPU"
	}
	return true, ""
}

// classify turns pog.Check's answer into an attempt. Once the worker was
// sent a challenge, any failure to prove it is final: the worker holds the
// seeds, so it can check its proofs before sending them and answer
// anything else (an error, garbage, end of stream, silence) when they
// would fail; were that retried, a worker that computed part of C would
// get RetryLimit draws per sweep. Failures before the challenge (no hello,
// too slow, an error instead of the commitment) may be transient and are
// retried.
func classify(ctx context.Context, res *pog.Result, err error, stderr *tailBuffer) attempt {
	challenged := res != nil && res.Challenged
	if err != nil {
		var we *pog.WorkerError
		var a attempt
		switch {
		case ctx.Err() != nil:
			a = failed(market.PoGProtocol, "no complete answer from the worker before the attempt timed out")
		case errors.As(err, &we):
			a = failed(market.PoGWorkerError, "worker error: %s", clean(we.Message, 300))
		case errors.Is(err, pog.ErrProtocol):
			a = failed(market.PoGProtocol, "%s%s", clean(err.Error(), 300), stderr.suffix())
		default:
			a = failed(market.PoGProtocol, "session: %s%s", clean(err.Error(), 300), stderr.suffix())
		}
		if challenged {
			a.res, a.final = res, true // res: what was claimed and measured, for the record
			a.code = market.PoGBadProof
			a.reason = "no valid proofs after the challenge: " + a.reason
		}
		return a
	}
	a := attempt{res: res, code: res.Code, reason: res.Reason}
	if res.Model != "" && res.Count > 0 {
		a.outcome = OutcomePass
		return a
	}
	a.outcome = OutcomeFail
	if res.Code == market.PoGSimulated {
		a.final = true
	}
	for _, g := range res.GPUs {
		// A challenged GPU that did not prove its cells (a proof that did
		// not verify or an error in its place) and a commitment at the
		// wrong size are final; an error the worker reported for a GPU
		// before the challenge may be transient.
		if g.Err != "" && (g.Challenged || !strings.HasPrefix(g.Err, "worker: ")) {
			a.final = true
		}
	}
	return a
}

// deallocate ends the test lease, retrying; it returns "" when the miner
// confirmed, else why not. It runs on its own deadline so that a canceled
// sweep still frees the lease.
func (d *driver) deallocate(ctx context.Context, ax axon.Target, pubPEM string) string {
	req := protocol.NewAllocate()
	req.Checking = false
	req.Timeline = 0
	req.PublicKey = pubPEM
	base := context.WithoutCancel(ctx)
	var last string
	for i := 0; i < d.cfg.DeallocateAttempts; i++ {
		if i > 0 {
			select {
			case <-time.After(d.cfg.DeallocateInterval):
			case <-ctx.Done():
				// Shutting down: one more try, then give up.
				if i > 1 {
					return last
				}
			}
		}
		var resp protocol.Allocate
		cctx, cancel := context.WithTimeout(base, d.cfg.DeallocateTimeout)
		_, err := protocol.CallAllocate(cctx, d.axon, ax, req, &resp, d.cfg.DeallocateTimeout)
		cancel()
		if err == nil && resp.Output.Status {
			return ""
		}
		if axon.StatusCode(err) == http.StatusNotFound {
			// The miner has no lease of ours (never created, or expired).
			return ""
		}
		last = "deallocation refused: " + allocReason(err, resp.Output)
	}
	d.log.Warn("miner did not deallocate the test lease", "miner", ax.Hotkey, "reason", last)
	return last
}
