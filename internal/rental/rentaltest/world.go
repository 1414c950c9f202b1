// Package rentaltest is a test helper: a whole allocation service on real
// SQLite files (its own store and a validator's results), real signed axon
// calls and in-memory miners (allocatortest), with a chain whose
// metagraph the test sets and a clock it can move. The tests of rental and
// web share it. It is imported only by _test.go files.
package rentaltest

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/allocator"
	"github.com/nicompute/nicompute/internal/allocator/allocatortest"
	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/sqlite"
	"github.com/nicompute/nicompute/internal/subnet"
)

// Chain serves a metagraph the test sets.
type Chain struct {
	mu sync.Mutex
	mg *subnet.Metagraph
}

// Metagraph returns the current metagraph.
func (c *Chain) Metagraph(context.Context, subnet.NetUID) (*subnet.Metagraph, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mg, nil
}

// Set replaces the metagraph's neurons.
func (c *Chain) Set(neurons ...subnet.Neuron) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mg = &subnet.Metagraph{NetUID: 1, Neurons: neurons}
}

// Clock is time.Now moved by an offset the test advances.
type Clock struct{ off atomic.Int64 }

// Now is the clock's time.
func (c *Clock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// World is a running allocation service with its miners.
type World struct {
	Svc       *rental.Service
	Store     *sqlite.RentalStore
	Validator *sqlite.ValidatorStore
	Chain     *Chain
	Miners    []*allocatortest.Miner
	Hotkey    *keys.Keypair
	Clock     *Clock
	// ProbeErr, when set, is what the SSH probe of every lease answers.
	ProbeErr atomic.Pointer[error]

	cfg      rental.Config
	dir      string
	db, vdb  *sqlite.DB
	dendrite *axon.Dendrite
}

// Options shape a World.
type Options struct {
	// Miners is the number of fake miners (uids 1…n; the validator is 0).
	Miners int
	// Config is the service's configuration; NetUID, Hotkey, Now and Log
	// are filled in, and fast test defaults for the loops.
	Config rental.Config
	// Timeout bounds each miner call (default 2 s).
	Timeout time.Duration
	// StrictWebhooks refuses private webhook targets, as production does
	// (tests' receivers listen on loopback, so the default allows them).
	StrictWebhooks bool
}

// New starts a World for tb; everything stops when tb ends.
func New(tb testing.TB, o Options) *World {
	tb.Helper()
	hk, err := keys.FromURI("//RentalValidator")
	if err != nil {
		tb.Fatal(err)
	}
	w := &World{Chain: &Chain{}, Hotkey: hk, Clock: &Clock{}, dir: tb.TempDir()}
	neurons := []subnet.Neuron{{UID: 0, Hotkey: hk.SS58()}}
	for i := range o.Miners {
		m := allocatortest.NewMiner(tb)
		w.Miners = append(w.Miners, m)
		neurons = append(neurons, m.Neuron(subnet.UID(i+1)))
	}
	w.Chain.Set(neurons...)
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	w.dendrite = axon.NewDendrite(hk)
	tb.Cleanup(func() { w.dendrite.Close() })
	c := o.Config
	c.NetUID, c.Hotkey, c.Now = 1, hk.SS58(), w.Clock.Now
	if _, ok := tb.(*testing.B); !ok && c.Log == nil {
		c.Log = nictest.Logger(tb)
	}
	if c.HealthInterval == 0 {
		c.HealthInterval = time.Hour // tests call CheckHealth
	}
	if c.RetryBase == 0 {
		c.RetryBase = 50 * time.Millisecond
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = time.Second
	}
	if c.WebhookBackoff == 0 {
		c.WebhookBackoff = 50 * time.Millisecond
	}
	if c.WebhookPoll == 0 {
		c.WebhookPoll = 20 * time.Millisecond
	}
	c.AllowPrivateWebhooks = !o.StrictWebhooks
	if c.VerifiedTTL == 0 {
		c.VerifiedTTL = -1 // tests record results and read them at once
	}
	w.cfg = c
	w.open(tb, o.Timeout)
	return w
}

// DBPath is the service's SQLite file.
func (w *World) DBPath() string { return filepath.Join(w.dir, "api.db") }

func (w *World) open(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	ctx := context.Background()
	var err error
	if w.db, err = sqlite.Open(ctx, w.DBPath(), sqlite.RentalSchema); err != nil {
		tb.Fatal(err)
	}
	if w.vdb, err = sqlite.Open(ctx, filepath.Join(w.dir, "validator.db"), sqlite.ValidatorSchema); err != nil {
		tb.Fatal(err)
	}
	w.Store, w.Validator = sqlite.NewRentalStore(w.db), sqlite.NewValidatorStore(w.vdb)
	svc, err := rental.New(ctx, rental.Deps{
		Chain: w.Chain, Verifier: w.Validator, Store: w.Store,
		Miners: allocator.New(w.dendrite, timeout),
		Probe: func(context.Context, string) error {
			if p := w.ProbeErr.Load(); p != nil {
				return *p
			}
			return nil
		},
	}, w.cfg)
	if err != nil {
		tb.Fatal(err)
	}
	w.Svc = svc
	tb.Cleanup(w.close)
}

func (w *World) close() {
	if w.Svc != nil {
		w.Svc.Close()
		w.Svc = nil
	}
	if w.db != nil {
		w.db.Close()
		w.vdb.Close()
		w.db = nil
	}
}

// Restart stops the service and opens it again on the same files, as a
// process restart would.
func (w *World) Restart(tb testing.TB) {
	tb.Helper()
	w.close()
	w.open(tb, 2*time.Second)
}

// Verify records a Proof-of-GPU pass of model × count for miner i.
func (w *World) Verify(tb testing.TB, i int, model string, count int) {
	tb.Helper()
	m := w.Miners[i]
	r := market.PoGResult{Hotkey: m.Hotkey.SS58(), UID: subnet.UID(i + 1), At: w.Clock.Now(), Outcome: market.PoGPass, Model: model, Count: count}
	if err := w.Validator.AddResult(context.Background(), r, 16); err != nil {
		tb.Fatal(err)
	}
}

// Fail records a Proof-of-GPU fail for miner i.
func (w *World) Fail(tb testing.TB, i int) {
	tb.Helper()
	r := market.PoGResult{Hotkey: w.Miners[i].Hotkey.SS58(), UID: subnet.UID(i + 1), At: w.Clock.Now(), Outcome: market.PoGFail, Reason: "test"}
	if err := w.Validator.AddResult(context.Background(), r, 16); err != nil {
		tb.Fatal(err)
	}
}

// Free records miner i's specs answer with free resources.
func (w *World) Free(tb testing.TB, i int, free market.Resources) {
	tb.Helper()
	sp := market.Specs{Free: &free}
	if err := w.Validator.SaveSpecs(context.Background(), map[string]market.Specs{w.Miners[i].Hotkey.SS58(): sp}, w.Clock.Now()); err != nil {
		tb.Fatal(err)
	}
}

// Token creates a token of tenant with scopes and returns it with its
// secret.
func (w *World) Token(tb testing.TB, tenant string, scopes ...market.Scope) (market.Token, string) {
	tb.Helper()
	t, err := w.Svc.Tokens().Create(context.Background(), rental.TokenRequest{Name: tenant + "-" + string(scopes[0]), Tenant: tenant, Scopes: scopes, RatePerMinute: 10_000})
	if err != nil {
		tb.Fatal(err)
	}
	return t.Token, t.Secret
}

// SSHKey is a valid OpenSSH public key line.
const SSHKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test"

// Eventually polls cond every 10 ms until it holds or within passes.
func Eventually(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
