// Package rental is the allocation service a validator operator runs for
// renters: it offers the miners this validator verified with Proof-of-GPU,
// allocates leases on them for tenants with the validator's hotkey,
// watches those leases, ends them, and tells tenants through signed
// webhooks. internal/web serves it over HTTP.
//
// Tenants. Every request carries an API token (tokens.go): the token's
// tenant owns the allocations and webhooks it creates, and sees nothing
// else; an admin token sees and acts on every tenant's. Tokens are stored
// as SHA-256 hashes only.
//
// Allocating. A request names requirements (or, for an admin, a miner
// hotkey). Candidates are the miners whose newest Proof-of-GPU standing is
// a pass (market.VerifiedBasis over the validator's results) for a model
// and count that meet the requirements and whose last specs answer shows
// the resources free; they are tried best score first, at most
// MaxCandidates. The allocation is recorded — with the fresh RSA key that
// will own the lease and the miner about to be asked — before the miner
// hears of it, so no restart can lose a lease: an allocation found still
// allocating at start is released. A miner's definite refusal moves on to
// the next candidate; an unknown outcome moves on too, and the attempt is
// kept as a hidden orphan that the background releases. A password is
// answered once and never stored. An Idempotency-Key makes a retried
// request answer the allocation the first one made.
//
// Life. The health loop asks each live allocation's miner for its status
// with the lease's key and tries the SSH port: an allocation is online
// while both answer and offline otherwise; one offline longer than
// GoneAfter is ended (the miner is told), one whose miner proves the lease
// is gone is ended at once. Allocations end at their expiry (after an
// "expiring" notice); tenants may extend them (the miner's lease is
// extended when it would end first) and end them. Ending tells the miner;
// an allocation is ended only once the miner confirms or proves the lease
// absent, retried in the background with backoff.
//
// Webhooks (webhook.go). State changes — allocated, offline, online,
// expiring, ended — are events, written in the same transaction as the
// change, and queued per webhook in SQLite; deliveries are HMAC-SHA256
// signed over the timestamp and body, sent in order per webhook, retried
// with backoff, and survive restarts.
//
// Operations on one allocation hold its lock (ops), so a health check
// never overwrites an end or an extension.
//
// Operators. Config.Metrics receives the service's series (metrics.go:
// requests by action and result, health checks and flips, ends, webhook
// deliveries, allocations by state); Standings and OperatorAllocations
// feed the operators' dashboard, where an admin token signs in once for a
// session of its own (session.go).
package rental

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nicompute/nicompute/internal/allocator"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/subnet"
)

// Chain reads the metagraph; *local.Client and the subtensor client
// implement it.
type Chain interface {
	Metagraph(ctx context.Context, netuid subnet.NetUID) (*subnet.Metagraph, error)
}

// Verifier is the validator's record of what it verified;
// *sqlite.ValidatorStore implements it.
type Verifier interface {
	// Results returns the newest perHotkey Proof-of-GPU results of every
	// miner, newest first.
	Results(ctx context.Context, perHotkey int) (map[string][]market.PoGResult, error)
	// SpecsByHotkey returns the miners' last specs answers.
	SpecsByHotkey(ctx context.Context) (map[string]market.Specs, error)
}

// Miners reaches miners' axons as the validator's hotkey;
// *allocator.Client implements it.
type Miners interface {
	Allocate(ctx context.Context, m allocator.Miner, key *rsa.PrivateKey, r allocator.Request) (allocator.Grant, error)
	Status(ctx context.Context, m allocator.Miner, key *rsa.PrivateKey) (allocator.Status, error)
	Deallocate(ctx context.Context, m allocator.Miner, key *rsa.PrivateKey) (string, bool, error)
	Act(ctx context.Context, m allocator.Miner, key *rsa.PrivateKey, action, sshKeys string) (string, error)
	Extend(ctx context.Context, m allocator.Miner, key *rsa.PrivateKey, days int64) (time.Time, error)
}

// Store keeps the service's state; *sqlite.RentalStore implements it.
// Errors carry market codes (ENOTFOUND, ECONFLICT, EINVALID).
type Store interface {
	TokenStore
	InsertAllocation(ctx context.Context, a market.Allocation) error
	// UpdateAllocation replaces a (not ended) and records events with
	// their deliveries, in one transaction.
	UpdateAllocation(ctx context.Context, a market.Allocation, events ...market.Event) error
	DeleteAllocation(ctx context.Context, id string) error
	Allocation(ctx context.Context, id string) (market.Allocation, error)
	AllocationByIdempotencyKey(ctx context.Context, tenant, key string) (market.Allocation, error)
	// TenantAllocations returns tenant's ("" for all) allocations, newest
	// first, ended ones when asked; never orphans.
	TenantAllocations(ctx context.Context, tenant string, ended bool, limit int) ([]market.Allocation, error)
	// LiveAllocations returns every allocation not ended, orphans too.
	LiveAllocations(ctx context.Context) ([]market.Allocation, error)

	CreateWebhook(ctx context.Context, w market.Webhook) error
	Webhook(ctx context.Context, id string) (market.Webhook, error)
	Webhooks(ctx context.Context, tenant string) ([]market.Webhook, error)
	DeleteWebhook(ctx context.Context, id string, at time.Time) error
	Deliveries(ctx context.Context, webhookID string, limit int) ([]market.Delivery, error)
	DueDeliveries(ctx context.Context, now time.Time, limit int) ([]market.Delivery, error)
	RecordAttempt(ctx context.Context, d market.Delivery) error
}

// Defaults of Config fields left zero.
const (
	DefaultScoreWindow       = 4
	DefaultMaxCandidates     = 3
	DefaultMaxDuration       = 30 * 24 * time.Hour
	DefaultHealthInterval    = 30 * time.Second
	DefaultProbeTimeout      = 5 * time.Second
	DefaultGoneAfter         = 10 * time.Minute
	DefaultExpiringNotice    = 10 * time.Minute
	DefaultRetryMax          = 10 * time.Minute
	DefaultMetagraphTTL      = 12 * time.Second
	DefaultVerifiedTTL       = 5 * time.Second
	DefaultWebhookTimeout    = 10 * time.Second
	DefaultWebhookAttempts   = 12
	DefaultWebhookBackoffMax = time.Hour
	DefaultWebhookPoll       = time.Second
)

// Config configures a Service. NetUID and Hotkey are required.
type Config struct {
	NetUID subnet.NetUID
	// Hotkey is the validator's hotkey (SS58), which signs the calls; its
	// own neuron is never a candidate.
	Hotkey string
	// Table is the GPU reference table (default: the built-in one);
	// ScoreWindow the results a miner's standing looks at (default 4, as
	// the validator's).
	Table       *market.GPUTable
	ScoreWindow int
	// MaxCandidates bounds the miners one allocation tries (default 3);
	// MaxDuration an allocation's length, extensions included (default 30
	// days).
	MaxCandidates int
	MaxDuration   time.Duration
	// HealthInterval is how often live allocations are checked (default
	// 30 s); ProbeTimeout bounds each check; GoneAfter is how long an
	// allocation may stay offline before it is ended (default 10 min);
	// ExpiringNotice how long before its end the "expiring" event goes out
	// (default 10 min, at most a quarter of its length).
	HealthInterval time.Duration
	ProbeTimeout   time.Duration
	GoneAfter      time.Duration
	ExpiringNotice time.Duration
	// RetryBase and RetryMax space the background deallocations of ending
	// allocations (default ProbeTimeout doubling up to 10 min).
	RetryBase time.Duration
	RetryMax  time.Duration
	// MetagraphTTL is how long a metagraph read is reused (default 12 s);
	// VerifiedTTL how long a read of the validator's results and specs is
	// (default 5 s; negative: never). The validator writes them once a
	// sweep, minutes apart.
	MetagraphTTL time.Duration
	VerifiedTTL  time.Duration
	// Webhooks: each attempt's timeout (10 s), attempts before giving up
	// (12), the backoff's first step (2 s) and cap (1 h), how often the
	// queue is read (1 s), and whether loopback and private addresses may
	// be webhook targets (off: an API exposed to tenants must not let them
	// reach the operator's network).
	WebhookTimeout       time.Duration
	WebhookAttempts      int
	WebhookBackoff       time.Duration
	WebhookBackoffMax    time.Duration
	WebhookPoll          time.Duration
	AllowPrivateWebhooks bool
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log receives state transitions; nil discards.
	Log *slog.Logger
	// Metrics, when set, receives the service's series (metrics.go).
	Metrics prometheus.Registerer
}

func (c *Config) setDefaults() error {
	if c.Hotkey == "" {
		return errors.New("rental: no hotkey")
	}
	if c.Table == nil {
		c.Table = market.DefaultGPUTable()
	}
	defInt(&c.ScoreWindow, DefaultScoreWindow)
	defInt(&c.MaxCandidates, DefaultMaxCandidates)
	defInt(&c.WebhookAttempts, DefaultWebhookAttempts)
	defDur(&c.MaxDuration, DefaultMaxDuration)
	defDur(&c.HealthInterval, DefaultHealthInterval)
	defDur(&c.ProbeTimeout, DefaultProbeTimeout)
	defDur(&c.GoneAfter, DefaultGoneAfter)
	defDur(&c.ExpiringNotice, DefaultExpiringNotice)
	defDur(&c.RetryBase, c.ProbeTimeout)
	defDur(&c.RetryMax, DefaultRetryMax)
	defDur(&c.MetagraphTTL, DefaultMetagraphTTL)
	if c.VerifiedTTL == 0 {
		c.VerifiedTTL = DefaultVerifiedTTL
	}
	defDur(&c.WebhookTimeout, DefaultWebhookTimeout)
	defDur(&c.WebhookBackoff, 2*time.Second)
	defDur(&c.WebhookBackoffMax, DefaultWebhookBackoffMax)
	defDur(&c.WebhookPoll, DefaultWebhookPoll)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

func defInt(v *int, d int) {
	if *v <= 0 {
		*v = d
	}
}

func defDur(v *time.Duration, d time.Duration) {
	if *v <= 0 {
		*v = d
	}
}

// Deps are what a Service runs on. Probe, when nil, dials the SSH port and
// reads the server's banner; HTTP, when nil, is a client that refuses
// private webhook targets unless Config.AllowPrivateWebhooks.
type Deps struct {
	Chain    Chain
	Verifier Verifier
	Miners   Miners
	Store    Store
	Probe    func(ctx context.Context, addr string) error
	HTTP     *http.Client
}

// Service is the running allocation service.
type Service struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	tokens *Tokens
	mg     *metagraphCache
	vc     verifiedCache
	m      *metrics

	// wake nudges the background loops after a change.
	wakeEnd  chan struct{}
	wakeHook chan struct{}

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	done      chan struct{}
	closeOnce sync.Once

	// mu protects ops: the lock of each allocation being worked on.
	mu  sync.Mutex
	ops map[string]*op
}

type op struct {
	mu   sync.Mutex
	refs int // guarded by Service.mu
}

// New starts the service: allocations caught mid-allocation by a restart
// are released, and the health, deallocation and webhook loops start.
// ctx bounds startup only.
func New(ctx context.Context, deps Deps, cfg Config) (*Service, error) {
	if deps.Chain == nil || deps.Verifier == nil || deps.Miners == nil || deps.Store == nil {
		return nil, errors.New("rental: chain, verifier, miners and store are required")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if deps.Probe == nil {
		deps.Probe = probeSSH
	}
	if deps.HTTP == nil {
		deps.HTTP = webhookClient(cfg.WebhookTimeout, cfg.AllowPrivateWebhooks)
	}
	s := &Service{
		cfg: cfg, deps: deps, log: cfg.Log.With("component", "rental"),
		tokens:   NewTokens(deps.Store, cfg.Now),
		mg:       &metagraphCache{chain: deps.Chain, netuid: cfg.NetUID, ttl: cfg.MetagraphTTL, now: cfg.Now},
		wakeEnd:  make(chan struct{}, 1),
		wakeHook: make(chan struct{}, 1),
		done:     make(chan struct{}),
		ops:      map[string]*op{},
	}
	var err error
	if s.m, err = newMetrics(cfg.Metrics, s); err != nil {
		return nil, fmt.Errorf("rental: %w", err)
	}
	if err := s.recover(ctx); err != nil {
		return nil, err
	}
	run, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for _, loop := range []func(context.Context){s.healthLoop, s.endLoop, s.webhookLoop} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			loop(run)
		}()
	}
	go func() {
		s.wg.Wait()
		close(s.done)
	}()
	return s, nil
}

// Tokens returns the service's token keeper.
func (s *Service) Tokens() *Tokens { return s.tokens }

// Done is closed once the service has stopped.
func (s *Service) Done() <-chan struct{} { return s.done }

// Err is nil: the service stops only when closed.
func (s *Service) Err() error { return nil }

// Close stops the background loops and waits for them. Allocations and
// queued deliveries stay in the store for the next start.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.done
	})
	return nil
}

// recover releases allocations a restart caught while allocating: the
// miner being asked may hold a lease for them, which is released like an
// ending allocation's.
func (s *Service) recover(ctx context.Context) error {
	live, err := s.deps.Store.LiveAllocations(ctx)
	if err != nil {
		return fmt.Errorf("rental: read allocations: %w", err)
	}
	for _, a := range live {
		if a.State != market.AllocAllocating {
			continue
		}
		if a.MinerHotkey == "" {
			// No miner was asked yet.
			if err := s.deps.Store.DeleteAllocation(ctx, a.ID); err != nil {
				return fmt.Errorf("rental: drop interrupted allocation %s: %w", a.ID, err)
			}
			continue
		}
		a.State, a.EndReason, a.NextTry = market.AllocEnding, market.EndReasonUnknown, s.cfg.Now()
		a.Note = "the allocation was interrupted by a restart; whatever the miner holds for it is released"
		if err := s.deps.Store.UpdateAllocation(ctx, a); err != nil {
			return fmt.Errorf("rental: release interrupted allocation %s: %w", a.ID, err)
		}
		s.log.Warn("allocation interrupted by a restart; releasing it", "allocation", a.ID, "miner", a.MinerHotkey)
	}
	return nil
}

// lock takes allocation id's lock; the returned func releases it.
func (s *Service) lock(id string) func() {
	s.mu.Lock()
	o := s.ops[id]
	if o == nil {
		o = &op{}
		s.ops[id] = o
	}
	o.refs++
	s.mu.Unlock()
	o.mu.Lock()
	return func() {
		o.mu.Unlock()
		s.mu.Lock()
		if o.refs--; o.refs == 0 {
			delete(s.ops, id)
		}
		s.mu.Unlock()
	}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// metagraphCache reuses one metagraph read for ttl.
type metagraphCache struct {
	chain  Chain
	netuid subnet.NetUID
	ttl    time.Duration
	now    func() time.Time

	// mu protects the following.
	mu sync.Mutex
	mg *subnet.Metagraph
	at time.Time
	// failed: the last read failed (mg, if any, is older).
	failed bool
}

// get returns the metagraph, read again when older than ttl. A failed
// read falls back on the last good one.
func (c *metagraphCache) get(ctx context.Context) (*subnet.Metagraph, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mg != nil && c.now().Sub(c.at) < c.ttl {
		return c.mg, nil
	}
	mg, err := c.chain.Metagraph(ctx, c.netuid)
	c.failed = err != nil
	if err != nil {
		if c.mg != nil {
			return c.mg, nil
		}
		return nil, apiErr(market.EUNAVAILABLE, "chain_unavailable", "the chain cannot be read now; try again later")
	}
	c.mg, c.at = mg, c.now()
	return mg, nil
}

// block is the head of the last metagraph read (0 before the first).
func (c *metagraphCache) block() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mg == nil {
		return 0
	}
	return c.mg.Block
}

// Metagraph returns the subnet's metagraph, read at most every
// MetagraphTTL (shared: callers must not modify it); when the chain cannot
// be read it is the last one read. Errors: EUNAVAILABLE when there is
// none.
func (s *Service) Metagraph(ctx context.Context) (*subnet.Metagraph, error) { return s.mg.get(ctx) }

// ChainReachable reports whether the last metagraph read succeeded.
func (s *Service) ChainReachable() bool {
	s.mg.mu.Lock()
	defer s.mg.mu.Unlock()
	return s.mg.mg != nil && !s.mg.failed
}

// miner returns the allocation's miner as the metagraph now serves it
// (its axon may have moved), or as recorded when the chain cannot say.
func (s *Service) miner(ctx context.Context, a market.Allocation) allocator.Miner {
	m := allocator.Miner{UID: subnet.UID(a.MinerUID), Hotkey: a.MinerHotkey, Addr: a.MinerAddr, IP: a.Host}
	if mg, err := s.mg.get(ctx); err == nil {
		if n, ok := mg.ByHotkey(a.MinerHotkey); ok && n.Axon.Served() {
			m.UID, m.Addr = n.UID, n.Axon.Addr()
		}
	}
	return m
}
