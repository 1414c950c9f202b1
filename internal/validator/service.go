// Package validator is the validator daemon: it follows the subnet's
// metagraph, proves each miner's GPUs with Proof-of-GPU, scores the miners
// and sets weights on the chain.
//
// Sync. A background loop reads the chain head every PollInterval and
// fetches the metagraph again when the head moved (so at most once per
// block); everything else works from the last snapshot, so a slow or
// unreachable chain delays nothing but itself.
//
// Queryable miners. A neuron is tested when it is not the validator, its
// axon is served (ip ≠ 0.0.0.0), its hotkey and coldkey are not
// blacklisted, it keeps its IP (one uid per IP: the uid registered first
// keeps the address, ties to the lower uid, so a newcomer cannot take over
// an address by registering beside an incumbent) and its axon version
// passes the version rule (once more than UpdatedThreshold percent of the
// served miners run MinMinerVersion or later, older ones are skipped).
//
// Sweeps. Every PoGInterval blocks, after a random delay of up to
// MaxRandomDelay, the validator queries Specs (in batches of
// SpecsBatchSize) and then tests every queryable miner, at most MaxWorkers
// at once: it allocates a short test lease with an ephemeral RSA key and an
// ephemeral ed25519 SSH key, logs in, puts its own worker there (from the
// miner's cache for this validator once its hash checks out, else over
// SFTP: worker.go), drives one `pog compute` session with pog.Check and
// deallocates the lease whatever happened. At most the GPU count the
// miner's Specs declared is tested and credited; at most Verifiers sessions
// verify their proofs at once. A test that could not be completed is
// retried up to RetryLimit times, RetryInterval apart, holding no test slot
// while it waits; once the worker has been sent the
// challenge, any failure to return valid proofs (a wrong proof, an error,
// garbage, end of stream, a timeout) is final for the sweep, since the
// worker holds the seeds and could otherwise check its proofs and retry
// until lucky. Miners this validator rented out (its allocation records)
// are not tested; miners whose Specs name no GPU of the table (unless
// WhitelistUnrecognized) are not tested and get a fail result, so an
// earlier pass stops counting.
//
// Scoring. Each finished test is a result: pass (a model and a count
// identified), fail (the miner was reached and logged into but did not
// prove a model) or unreachable (no lease, no login). A miner's score is
// market.Score of the model and count of its newest pass, found by walking
// its newest ScoreWindow results from the newest: unreachable results are
// skipped, a fail ends the walk with 0. So a proof failure zeroes a miner at
// once, while a miner that was merely unreachable keeps its score until
// ScoreWindow results in a row are unreachable (the original kept the newest
// successful of its last 4 results). A miner rented out keeps its score, as
// no new result is added while it is rented. Miners that are not queryable
// score 0; a hotkey that leaves the subnet loses its results.
//
// Weights. Every WeightsInterval blocks the scores are normalised, max
// upscaled to u16 and submitted with the subnet's weights version key
// (package weights): set where commit-reveal is off, committed timelocked
// where it is on (every Bittensor subnet by default). When fewer miners
// score than the subnet's min_allowed_weights, every uid gets at least the
// smallest u16 weight, so the chain accepts the row. Refusals (rate limit,
// too many unrevealed commits, …) are logged with the chain's error and
// retried after WeightsRetry blocks. Commits are kept in the Store until
// the validator sees the chain reveal them (its weights row on chain
// equals the committed one) or their reveal epoch pass; at most
// subnet.MaxUnrevealedCommits are pending at once, across restarts (a cap
// on commits only: with commit-reveal switched off, weights are set
// whatever is pending). Results, specs, the scores behind each submission
// and the sweep schedule live in the Store, so a restarted validator sets
// the same weights without testing again.
package validator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/weights"
)

// Chain is what the validator reads from and writes to the chain;
// *local.Client and the subtensor client implement it.
type Chain interface {
	CurrentBlock(ctx context.Context) (uint64, error)
	Metagraph(ctx context.Context, netuid subnet.NetUID) (*subnet.Metagraph, error)
	Hyperparameters(ctx context.Context, netuid subnet.NetUID) (subnet.Hyperparameters, error)
	SetWeights(ctx context.Context, hotkey subnet.Signer, netuid subnet.NetUID, uids []subnet.UID, weights []uint16, version uint64) error
	CommitReveal(ctx context.Context, netuid subnet.NetUID) (subnet.CommitReveal, error)
	CommitTimelockedWeights(ctx context.Context, hotkey subnet.Signer, netuid subnet.NetUID, commit []byte, revealRound uint64, version uint16) error
	Weights(ctx context.Context, netuid subnet.NetUID, uid subnet.UID) ([]subnet.UID, []uint16, error)
}

// Caller sends synapses to miners' axons; *axon.Dendrite implements it.
type Caller interface {
	Call(ctx context.Context, target axon.Target, name string, req, resp any, timeout time.Duration) (*axon.Result, error)
}

// Store keeps the validator's state (a wrapper of *sqlite.ValidatorStore in
// production).
type Store interface {
	// AddResult records r, keeping the newest keep results of its hotkey.
	AddResult(ctx context.Context, r Result, keep int) error
	// Results returns the newest perHotkey results of every hotkey, newest
	// first.
	Results(ctx context.Context, perHotkey int) (map[string][]Result, error)
	// ForgetMiners deletes what is kept about hotkeys.
	ForgetMiners(ctx context.Context, hotkeys []string) error
	// SaveSpecs records miners' specs answers.
	SaveSpecs(ctx context.Context, specs map[string]market.Specs, at time.Time) error
	// AddScores records the scores behind a weights submission.
	AddScores(ctx context.Context, block uint64, at time.Time, scores []ScoreEntry) error
	// SetState and State keep named integers (schedule markers).
	SetState(ctx context.Context, key string, value int64) error
	State(ctx context.Context, key string) (int64, bool, error)
	// AddCommit records a pending weights commit; Commits lists those with
	// a status, oldest first; SetCommitStatus settles one.
	AddCommit(ctx context.Context, c WeightCommit) error
	Commits(ctx context.Context, status string) ([]WeightCommit, error)
	SetCommitStatus(ctx context.Context, id int64, status string) error
}

// WeightCommit is a timelocked weights commit tracked until revealed.
type WeightCommit = market.WeightCommit

// Rentals lists the hotkeys of the miners this validator has rented out.
type Rentals func(ctx context.Context) (map[string]bool, error)

// Deps are the adapters a Service runs on. Rentals may be nil (nothing is
// rented out).
type Deps struct {
	Chain   Chain
	Store   Store
	Axon    Caller
	Rentals Rentals
}

// Outcome classifies a result.
type Outcome = market.PoGOutcome

// Outcomes of a test.
const (
	OutcomePass        = market.PoGPass
	OutcomeFail        = market.PoGFail
	OutcomeUnreachable = market.PoGUnreachable
)

// Result is one finished Proof-of-GPU test of a miner.
type Result = market.PoGResult

// ScoreEntry is one miner's score and u16 weight in a submission.
type ScoreEntry = market.ScoreEntry

// Defaults of Config fields left zero.
const (
	DefaultPoGInterval      = 360
	DefaultWeightsInterval  = 100
	DefaultWeightsRetry     = 10
	DefaultPollInterval     = 6 * time.Second
	DefaultChainTimeout     = 30 * time.Second
	DefaultSpecsBatchSize   = 64
	DefaultSpecsTimeout     = 60 * time.Second
	DefaultUpdatedThreshold = 60
	DefaultScoreWindow      = 4
	DefaultKeepResults      = 16
)

// Config configures a Service. NetUID and Hotkey are required.
type Config struct {
	NetUID subnet.NetUID
	// Hotkey must be registered on NetUID; it signs requests and weights.
	Hotkey subnet.Signer

	// BlacklistHotkeys and BlacklistColdkeys are never tested and score 0.
	BlacklistHotkeys  []string
	BlacklistColdkeys []string
	// MinMinerVersion is the lowest miner axon version tested once more
	// than UpdatedThreshold percent (0 to 100; the command's default is
	// DefaultUpdatedThreshold) of served miners run it or later; 0
	// disables the rule.
	MinMinerVersion  uint32
	UpdatedThreshold int

	// HardwareQuery queries Specs before each sweep
	// (--validator.perform.hardware.query); SpecsBatchSize miners at once
	// (default 64), each within SpecsTimeout (default 60 s).
	HardwareQuery  bool
	SpecsBatchSize int
	SpecsTimeout   time.Duration
	// WhitelistUnrecognized tests miners whose specs answer names no GPU of
	// the GPU table (skipped otherwise; miners that do not answer Specs are
	// always tested).
	WhitelistUnrecognized bool

	// PoGInterval and WeightsInterval are in blocks (defaults 360 and 100);
	// WeightsRetry is the wait after a refused submission (default 10).
	PoGInterval     uint64
	WeightsInterval uint64
	WeightsRetry    uint64
	// PollInterval is how often the chain head is read (default 6 s);
	// ChainTimeout bounds each chain call (default 30 s).
	PollInterval time.Duration
	ChainTimeout time.Duration

	// PoG configures the tests.
	PoG PoGConfig

	// ScoreWindow is the number of newest results a score looks at
	// (default 4); KeepResults the number stored per miner (default 16).
	ScoreWindow int
	KeepResults int

	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log receives state transitions; nil discards.
	Log *slog.Logger
	// Report, when set, receives the miner table after each sweep and each
	// weights submission.
	Report io.Writer
	// Metrics, when set, receives the nicompute_validator_* series.
	Metrics prometheus.Registerer
}

func (c *Config) setDefaults() error {
	var errs []error
	if c.Hotkey == nil {
		errs = append(errs, errors.New("no hotkey"))
	}
	defU(&c.PoGInterval, DefaultPoGInterval)
	defU(&c.WeightsInterval, DefaultWeightsInterval)
	defU(&c.WeightsRetry, DefaultWeightsRetry)
	defD(&c.PollInterval, DefaultPollInterval)
	defD(&c.ChainTimeout, DefaultChainTimeout)
	defD(&c.SpecsTimeout, DefaultSpecsTimeout)
	defI(&c.SpecsBatchSize, DefaultSpecsBatchSize)
	defI(&c.ScoreWindow, DefaultScoreWindow)
	defI(&c.KeepResults, DefaultKeepResults)
	c.KeepResults = max(c.KeepResults, c.ScoreWindow)
	if c.UpdatedThreshold < 0 || c.UpdatedThreshold > 100 {
		errs = append(errs, fmt.Errorf("updated threshold %d%% out of [0, 100]", c.UpdatedThreshold))
	}
	if err := c.PoG.setDefaults(); err != nil {
		errs = append(errs, err)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return errors.Join(errs...)
}

func defU(v *uint64, d uint64) {
	if *v == 0 {
		*v = d
	}
}

func defI(v *int, d int) {
	if *v <= 0 {
		*v = d
	}
}

func defD(v *time.Duration, d time.Duration) {
	if *v <= 0 {
		*v = d
	}
}

// ErrNotRegistered is returned by New when the hotkey has no uid.
var ErrNotRegistered = errors.New("validator hotkey is not registered")

// Service is a running validator.
type Service struct {
	cfg       Config
	deps      Deps
	log       *slog.Logger
	driver    *driver
	submitter *weights.Submitter

	metrics *metrics

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	done      chan struct{}
	closeOnce sync.Once

	// mu protects the following.
	mu       sync.Mutex
	mg       *subnet.Metagraph
	head     uint64
	uid      subnet.UID
	permit   bool
	chainOK  bool
	history  map[string][]Result // newest first, ≤ KeepResults
	status   map[string]string   // hotkey → why it was not tested last sweep
	rented   map[string]bool
	lastSwp  uint64
	sweepOn  bool
	nextWts  uint64
	weightOn bool
	noScores bool          // the last weights round found no score
	weights  WeightsStatus // the last submission; Summary says what became of it
	// commitsOut: commits may be pending; checked at most once a block
	// (checkedAt), in the weights goroutine's slot.
	commitsOut bool
	checkedAt  uint64
	err        error
}

// New checks the hotkey is registered on NetUID (ErrNotRegistered
// otherwise), loads the stored results, and starts the sync, sweep and
// weights loops. The service runs until Close or until its hotkey is
// deregistered; ctx only bounds startup.
func New(ctx context.Context, deps Deps, cfg Config) (*Service, error) {
	if deps.Chain == nil || deps.Store == nil || deps.Axon == nil {
		return nil, errors.New("validator: chain, store and axon caller are required")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("validator config: %w", err)
	}
	s := &Service{
		cfg:     cfg,
		deps:    deps,
		done:    make(chan struct{}),
		history: map[string][]Result{},
		status:  map[string]string{},
	}
	s.log = cfg.Log.With("component", "validator", "hotkey", cfg.Hotkey.SS58())
	s.submitter = &weights.Submitter{Chain: deps.Chain, Now: cfg.Now, CanCommit: s.canCommit}
	d, err := newDriver(cfg.PoG, cfg.Hotkey, deps.Axon, s.log)
	if err != nil {
		return nil, fmt.Errorf("validator: %w", err)
	}
	s.driver = d
	if s.metrics, err = newMetrics(cfg.Metrics, s); err != nil {
		return nil, fmt.Errorf("validator: %w", err)
	}

	cctx, cancel := context.WithTimeout(ctx, cfg.ChainTimeout)
	mg, err := deps.Chain.Metagraph(cctx, cfg.NetUID)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("validator: read the metagraph of subnet %d: %w", cfg.NetUID, err)
	}
	me, ok := mg.ByHotkey(cfg.Hotkey.SS58())
	if !ok {
		return nil, fmt.Errorf("%w: hotkey %s has no uid on subnet %d", ErrNotRegistered, cfg.Hotkey.SS58(), cfg.NetUID)
	}
	s.mg, s.head, s.uid, s.permit, s.chainOK = mg, mg.Block, me.UID, me.ValidatorPermit, true
	s.logPermit(me.ValidatorPermit)

	results, err := deps.Store.Results(ctx, cfg.KeepResults)
	if err != nil {
		return nil, fmt.Errorf("validator: load results: %w", err)
	}
	s.history = results
	if v, ok, err := deps.Store.State(ctx, StateLastSweep); err != nil {
		return nil, fmt.Errorf("validator: load state: %w", err)
	} else if ok && v >= 0 {
		s.lastSwp = uint64(v)
	}
	// Weights are due WeightsInterval blocks after this hotkey last set
	// them, as the chain records it.
	s.nextWts = me.LastUpdate + cfg.WeightsInterval
	if me.LastUpdate == 0 {
		s.nextWts = 0
	}
	if n, err := s.pendingCommits(ctx); err != nil {
		return nil, fmt.Errorf("validator: load weights commits: %w", err)
	} else if n > 0 {
		s.commitsOut = true
		s.log.Info("weights commits pending from before the restart", "pending", n)
	}
	s.forgetDeparted(ctx, mg)
	lastSweep := s.lastSwp // read before the loops may write it

	runCtx, stop := context.WithCancel(context.Background())
	s.cancel = stop
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.run(runCtx)
	}()
	go func() {
		s.wg.Wait()
		close(s.done)
	}()
	s.log.Info("validator started", "netuid", cfg.NetUID, "uid", me.UID, "block", mg.Block,
		"results_loaded", len(results), "last_sweep_block", lastSweep,
		"pog_interval", cfg.PoGInterval, "weights_interval", cfg.WeightsInterval, "simulated_gpus_allowed", cfg.PoG.AllowSimulated)
	if len(results) > 0 {
		s.report("scores reloaded from the store")
	}
	return s, nil
}

// StateLastSweep is the key of the validator's state (Store.State) holding
// the block of its last finished Proof-of-GPU sweep; the allocation API's
// dashboard reads it too.
const StateLastSweep = "last_sweep_block"

func (s *Service) logPermit(permit bool) {
	if permit {
		s.log.Info("validator permit held")
		return
	}
	s.log.Warn("this hotkey has no validator permit on the subnet: weights it sets are ignored by consensus until it holds one (stake more)", "netuid", s.cfg.NetUID)
}

// UID is the validator's uid.
func (s *Service) UID() subnet.UID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uid
}

// Done is closed once the service has stopped.
func (s *Service) Done() <-chan struct{} { return s.done }

// Err returns why the service stopped on its own, or nil.
func (s *Service) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Service) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
		s.log.Error("validator stopping", "err", err)
	}
	s.mu.Unlock()
	s.cancel()
}

// Close stops the loops, lets running tests deallocate their leases, and
// waits for them. It is idempotent.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.done
		s.log.Info("validator stopped")
	})
	return s.Err()
}
