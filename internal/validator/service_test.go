package validator

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/chain/local"
	"github.com/nicompute/nicompute/internal/devnet"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/subnet"
)

// memStore is an in-memory Store (the SQLite store is tested in
// internal/sqlite); it outlives the services of a test to model restarts.
type memStore struct {
	mu      sync.Mutex
	results map[string][]Result
	specs   map[string]market.Specs
	scores  map[uint64][]ScoreEntry
	state   map[string]int64
	commits []WeightCommit
}

func newMemStore() *memStore {
	return &memStore{results: map[string][]Result{}, specs: map[string]market.Specs{}, scores: map[uint64][]ScoreEntry{}, state: map[string]int64{}}
}

func (m *memStore) AddResult(_ context.Context, r Result, keep int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := append([]Result{r}, m.results[r.Hotkey]...)
	m.results[r.Hotkey] = h[:min(len(h), keep)]
	return nil
}

func (m *memStore) Results(_ context.Context, per int) (map[string][]Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]Result{}
	for h, rs := range m.results {
		out[h] = append([]Result(nil), rs[:min(len(rs), per)]...)
	}
	return out, nil
}

func (m *memStore) ForgetMiners(_ context.Context, hotkeys []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, h := range hotkeys {
		delete(m.results, h)
		delete(m.specs, h)
	}
	return nil
}

func (m *memStore) SaveSpecs(_ context.Context, specs map[string]market.Specs, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for h, s := range specs {
		m.specs[h] = s
	}
	return nil
}

func (m *memStore) AddScores(_ context.Context, block uint64, _ time.Time, s []ScoreEntry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.scores[block] = s
	return nil
}

func (m *memStore) SetState(_ context.Context, k string, v int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state[k] = v
	return nil
}

func (m *memStore) State(_ context.Context, k string) (int64, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.state[k]
	return v, ok, nil
}

func (m *memStore) AddCommit(_ context.Context, c WeightCommit) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c.ID, c.Status = int64(len(m.commits)+1), market.CommitPending
	m.commits = append(m.commits, c)
	return nil
}

func (m *memStore) Commits(_ context.Context, status string) ([]WeightCommit, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []WeightCommit
	for _, c := range m.commits {
		if c.Status == status {
			out = append(out, c)
		}
	}
	return out, nil
}

func (m *memStore) SetCommitStatus(_ context.Context, id int64, status string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.commits[id-1].Status = status
	return nil
}

func (m *memStore) submissions() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.scores)
}

// testSubnet is an embedded chain with a devnet subnet: a staked validator
// and n registered miners.
func testSubnet(t testing.TB, miners int) (*local.Client, *devnet.Layout) {
	t.Helper()
	c, l, _ := testSubnetAt(t, miners)
	return c, l
}

// testSubnetAt is testSubnet that also returns the chain's endpoint.
func testSubnetAt(t testing.TB, miners int) (*local.Client, *devnet.Layout, string) {
	t.Helper()
	dir := t.TempDir()
	g := devnet.Genesis(10)
	g.MaxAllowedUIDs = uint16(max(256, miners+1))
	node, err := local.Open(context.Background(), local.Config{DataDir: filepath.Join(dir, "chain"), BlockTime: 50 * time.Millisecond, Genesis: &g})
	if err != nil {
		t.Fatal(err)
	}
	c, err := local.Dial(context.Background(), node.Endpoint())
	if err != nil {
		node.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); node.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l, err := devnet.Bootstrap(ctx, c, devnet.Options{WalletDir: filepath.Join(dir, "wallets"), Miners: miners, Tempo: 10})
	if err != nil {
		t.Fatal(err)
	}
	return c, l, node.Endpoint()
}

// serve publishes a fake miner's axon for identity id.
func serve(t testing.TB, c *local.Client, netuid subnet.NetUID, id devnet.Identity, m *fakeMiner) {
	t.Helper()
	if err := c.ServeAxon(context.Background(), id.Hotkey, netuid, m.axonInfo()); err != nil {
		t.Fatal(err)
	}
}

// startFakeMinerAs is startFakeMiner with the miner's devnet hotkey.
func startFakeMinerAs(t *testing.T, ip string, id devnet.Identity, b minerBehavior) *fakeMiner {
	t.Helper()
	return startFakeMiner(t, ip, id.Hotkey, b)
}

func testService(t *testing.T, c *local.Client, l *devnet.Layout, store Store, mod func(*Config)) (*Service, *lockedBuffer) {
	t.Helper()
	report := &lockedBuffer{}
	dd := axon.NewDendrite(l.Validator.Hotkey)
	t.Cleanup(func() { dd.Close() })
	pc := testPoGConfig(t, smallWorker(t))
	pc.AllowSimulated = true
	cfg := Config{
		NetUID: l.NetUID, Hotkey: l.Validator.Hotkey,
		PoGInterval: 10_000, WeightsInterval: 5, WeightsRetry: 1,
		PollInterval: 50 * time.Millisecond, ChainTimeout: 5 * time.Second,
		HardwareQuery: true, SpecsTimeout: 2 * time.Second,
		PoG: pc, Log: nictest.Logger(t), Report: report,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(context.Background(), Deps{Chain: c, Store: store, Axon: dd}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, report
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServiceScoresAndWeights runs a validator against simulated miners on
// the embedded chain: it must test every queryable miner, rank the
// incentives by the models' scores, and after a restart set weights again
// from the stored results without testing anyone.
func TestServiceScoresAndWeights(t *testing.T) {
	c, l := testSubnet(t, 5)
	h200, h100, a100 := model(t, "NVIDIA H200"), model(t, "NVIDIA H100 80GB HBM3"), model(t, "NVIDIA A100-SXM4-80GB")
	specsOf := func(m market.GPUModel) *market.Specs {
		return &market.Specs{GPU: market.GPUSpecs{Count: 1, Details: []market.GPUDevice{{Name: m.Name}}}}
	}
	miners := []*fakeMiner{
		startFakeMinerAs(t, "127.0.0.2", l.Miners[0], minerBehavior{script: simWorker(h200, 1), specs: specsOf(h200)}),
		startFakeMinerAs(t, "127.0.0.3", l.Miners[1], minerBehavior{script: simWorker(h100, 1), specs: specsOf(h100)}),
		startFakeMinerAs(t, "127.0.0.4", l.Miners[2], minerBehavior{script: simWorker(a100, 1)}),
		startFakeMinerAs(t, "127.0.0.5", l.Miners[3], minerBehavior{refuse: true}),
	}
	for i, m := range miners {
		serve(t, c, l.NetUID, l.Miners[i], m)
	}
	// Miner 4 serves no axon.
	store := newMemStore()
	s, report := testService(t, c, l, store, nil)
	waitFor(t, 30*time.Second, "the sweep", func() bool { return strings.Contains(report.String(), "sweep finished") })
	n := store.submissions()
	waitFor(t, 30*time.Second, "weights", func() bool { return store.submissions() > n })
	waitFor(t, 5*time.Second, "the table after the weights", func() bool {
		return strings.Contains(report.String(), "weights committed at block") && strings.Contains(report.String(), "committed for reveal in round")
	})
	// The subnet has commit-reveal on (as Bittensor's do): the chain reveals
	// the commit by itself and the validator sees it.
	waitFor(t, 30*time.Second, "the chain to reveal the weights", func() bool {
		revealed, _ := store.Commits(context.Background(), market.CommitRevealed)
		return len(revealed) > 0 && strings.Contains(s.WeightsSummary(), "revealed by the chain")
	})

	rows := s.Miners()
	byUID := map[subnet.UID]Miner{}
	for _, r := range rows {
		byUID[subnet.UID(r.UID)] = r
	}
	want := []struct {
		id     devnet.Identity
		result string
		score  float64
		reason string
	}{
		{l.Miners[0], "pass", market.Score(market.DefaultGPUTable(), h200.Name, 1), "confirmed"},
		{l.Miners[1], "pass", market.Score(market.DefaultGPUTable(), h100.Name, 1), "confirmed"},
		{l.Miners[2], "pass", market.Score(market.DefaultGPUTable(), a100.Name, 1), "confirmed"},
		{l.Miners[3], "unreachable", 0, "all GPUs are leased"},
		{l.Miners[4], "", 0, "axon not served"},
	}
	for _, w := range want {
		r := byUID[w.id.UID]
		if r.LastResult != w.result || r.Score != w.score || !strings.Contains(r.Reason, w.reason) {
			t.Errorf("uid %d: %+v; want %s, score %v, reason %q", w.id.UID, r, w.result, w.score, w.reason)
		}
	}
	if !strings.Contains(report.String(), "1 × NVIDIA H200") {
		t.Errorf("miner table lacks the verified GPUs:\n%s", report)
	}

	// Consensus turns the weights into incentives in the next epochs.
	ctx := context.Background()
	waitFor(t, 30*time.Second, "incentives", func() bool {
		mg, err := c.Metagraph(ctx, l.NetUID)
		if err != nil {
			return false
		}
		inc := func(id devnet.Identity) float64 { n, _ := mg.ByUID(id.UID); return n.Incentive }
		return inc(l.Miners[0]) > inc(l.Miners[1]) && inc(l.Miners[1]) > inc(l.Miners[2]) && inc(l.Miners[2]) > 0 &&
			inc(l.Miners[3]) == 0 && inc(l.Miners[4]) == 0
	})

	// Restart: the stored results give the same scores at once, without a
	// new test.
	allocs := make([]int, len(miners))
	for i, m := range miners {
		allocs[i], _, _, _ = m.counts()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := store.submissions()
	s2, _ := testService(t, c, l, store, nil)
	waitFor(t, 30*time.Second, "weights after the restart", func() bool { return store.submissions() > before })
	for _, r := range s2.Miners() {
		if old := byUID[subnet.UID(r.UID)]; r.Score != old.Score {
			t.Errorf("uid %d scores %v after the restart, %v before", r.UID, r.Score, old.Score)
		}
	}
	for i, m := range miners {
		if n, _, _, _ := m.counts(); n != allocs[i] {
			t.Errorf("miner %d tested again after the restart", i)
		}
	}
}

func TestServiceRefusesUnregisteredHotkey(t *testing.T) {
	c, l := testSubnet(t, 0)
	dd := axon.NewDendrite(l.Owner.Hotkey)
	defer dd.Close()
	_, err := New(context.Background(), Deps{Chain: c, Store: newMemStore(), Axon: dd}, Config{
		NetUID: l.NetUID, Hotkey: l.Owner.Hotkey, PoG: testPoGConfig(t, smallWorker(t)),
	})
	if !errors.Is(err, ErrNotRegistered) || !strings.Contains(err.Error(), "register") {
		t.Fatalf("New with an unregistered hotkey: %v", err)
	}
}

func TestServiceRentedUnrecognizedAndRetries(t *testing.T) {
	c, l := testSubnet(t, 3)
	h100 := model(t, "NVIDIA H100 80GB HBM3")
	miners := []*fakeMiner{
		startFakeMinerAs(t, "127.0.0.2", l.Miners[0], minerBehavior{script: simWorker(h100, 1)}),
		startFakeMinerAs(t, "127.0.0.3", l.Miners[1], minerBehavior{script: simWorker(h100, 1),
			specs: &market.Specs{GPU: market.GPUSpecs{Count: 1, Details: []market.GPUDevice{{Name: "NVIDIA Imaginary 1TB"}}}}}),
		startFakeMinerAs(t, "127.0.0.4", l.Miners[2], minerBehavior{script: simWorker(h100, 1), refuseFirst: 2}),
	}
	for i, m := range miners {
		serve(t, c, l.NetUID, l.Miners[i], m)
	}
	store := newMemStore()
	rented := l.Miners[0].Hotkey.SS58()
	_ = store.AddResult(context.Background(), Result{Hotkey: rented, UID: l.Miners[0].UID, Outcome: "pass", Model: h100.Name, Count: 1, Block: 1}, 16)
	// The unrecognized miner passed once before its specs changed: that
	// pass must stop counting now that it is no longer tested.
	unknown := l.Miners[1].Hotkey.SS58()
	_ = store.AddResult(context.Background(), Result{Hotkey: unknown, UID: l.Miners[1].UID, Outcome: "pass", Model: h100.Name, Count: 1, Block: 1}, 16)
	report := &lockedBuffer{}
	dd := axon.NewDendrite(l.Validator.Hotkey)
	defer dd.Close()
	pc := testPoGConfig(t, smallWorker(t))
	pc.AllowSimulated, pc.RetryLimit = true, 3
	s, err := New(context.Background(), Deps{Chain: c, Store: store, Axon: dd,
		Rentals: func(context.Context) (map[string]bool, error) { return map[string]bool{rented: true}, nil },
	}, Config{
		NetUID: l.NetUID, Hotkey: l.Validator.Hotkey, PoGInterval: 10_000, WeightsInterval: 5,
		PollInterval: 50 * time.Millisecond, HardwareQuery: true, SpecsTimeout: 2 * time.Second,
		PoG: pc, Log: nictest.Logger(t), Report: report,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitFor(t, 30*time.Second, "the sweep", func() bool { return strings.Contains(report.String(), "sweep finished") })
	rows := map[subnet.UID]Miner{}
	for _, r := range s.Miners() {
		rows[subnet.UID(r.UID)] = r
	}
	want := market.Score(market.DefaultGPUTable(), h100.Name, 1)
	if r := rows[l.Miners[0].UID]; !r.Rented || r.Score != want || !strings.Contains(r.Reason, "rented out") {
		t.Errorf("rented miner: %+v", r)
	}
	if n, _, _, _ := miners[0].counts(); n != 0 {
		t.Errorf("rented miner tested %d times", n)
	}
	if r := rows[l.Miners[1].UID]; r.Score != 0 || !strings.Contains(r.Reason, "no GPU of the GPU table") {
		t.Errorf("unrecognized miner: %+v", r)
	}
	if n, _, _, _ := miners[1].counts(); n != 0 {
		t.Errorf("unrecognized miner tested %d times", n)
	}
	// Also after a restart, from the stored results alone.
	if r, _ := store.Results(context.Background(), 1); len(r[unknown]) != 1 || r[unknown][0].Outcome != OutcomeFail {
		t.Errorf("unrecognized miner's stored result: %+v, want a fail", r[unknown])
	}
	if r := rows[l.Miners[2].UID]; r.Score != want || r.LastResult != "pass" {
		t.Errorf("flaky miner: %+v", r)
	}
	got, _ := store.Results(context.Background(), 1)
	if r := got[l.Miners[2].Hotkey.SS58()]; len(r) != 1 || r[0].Attempts != 3 {
		t.Errorf("flaky miner's result: %+v, want 3 attempts", r)
	}
}

// With fewer scored miners than the subnet's min_allowed_weights the chain
// refuses a row of only the scored ones; the validator pads the row with
// the smallest weight for every uid and the chain accepts it.
func TestServiceWeightsPadToMinAllowed(t *testing.T) {
	c, l := testSubnet(t, 3)
	ctx := context.Background()
	all := uint16(len(l.Miners) + 1) // the miners and the validator
	if err := c.SetHyperparameters(ctx, l.Owner.Coldkey, l.NetUID, local.HyperparameterUpdate{MinAllowedWeights: &all}); err != nil {
		t.Fatal(err)
	}
	h100 := model(t, "NVIDIA H100 80GB HBM3")
	miners := []*fakeMiner{
		startFakeMinerAs(t, "127.0.0.2", l.Miners[0], minerBehavior{script: simWorker(h100, 1)}),
		startFakeMinerAs(t, "127.0.0.3", l.Miners[1], minerBehavior{refuse: true}),
	}
	for i, m := range miners {
		serve(t, c, l.NetUID, l.Miners[i], m)
	}
	store := newMemStore()
	_, report := testService(t, c, l, store, nil)
	waitFor(t, 30*time.Second, "the sweep", func() bool { return strings.Contains(report.String(), "sweep finished") })
	waitFor(t, 30*time.Second, "weights accepted by the chain", func() bool { return store.submissions() > 0 })
	store.mu.Lock()
	defer store.mu.Unlock()
	for _, entries := range store.scores {
		for _, e := range entries {
			switch {
			case e.UID == l.Miners[0].UID && e.Weight != 65535:
				t.Errorf("scored miner weight %d, want 65535", e.Weight)
			case e.UID != l.Miners[0].UID && e.Weight != 1:
				t.Errorf("uid %d weight %d, want the base weight 1", e.UID, e.Weight)
			}
		}
	}
}

// withPendingCommits starts a validator on a one-miner subnet whose store
// holds, from an earlier run, a passed test of the miner (swept just now)
// and subnet.MaxUnrevealedCommits pending commits; commitReveal sets the
// subnet's commit-reveal switch first.
func withPendingCommits(t *testing.T, commitReveal bool) (*Service, *memStore, *lockedBuffer) {
	t.Helper()
	c, l := testSubnet(t, 1)
	ctx := context.Background()
	if err := c.SetHyperparameters(ctx, l.Owner.Coldkey, l.NetUID, local.HyperparameterUpdate{CommitRevealWeightsEnabled: &commitReveal}); err != nil {
		t.Fatal(err)
	}
	store := newMemStore()
	miner := l.Miners[0]
	if err := store.AddResult(ctx, Result{Hotkey: miner.Hotkey.SS58(), UID: miner.UID, Block: 1, At: time.Now(), Outcome: OutcomePass,
		Model: "NVIDIA H200", Count: 1}, 4); err != nil {
		t.Fatal(err)
	}
	// The miner serves an axon (so it is queryable) and was swept just now.
	serve(t, c, l.NetUID, miner, startFakeMinerAs(t, "127.0.0.2", miner, minerBehavior{refuse: true}))
	head, err := c.CurrentBlock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	store.SetState(ctx, StateLastSweep, int64(head))
	for range subnet.MaxUnrevealedCommits {
		if err := store.AddCommit(ctx, WeightCommit{NetUID: l.NetUID, RevealEpoch: 1 << 40, UIDs: []subnet.UID{miner.UID}, Weights: []uint16{65535}}); err != nil {
			t.Fatal(err)
		}
	}
	log := &lockedBuffer{}
	s, _ := testService(t, c, l, store, func(cfg *Config) {
		cfg.Log = slog.New(slog.NewTextHandler(log, nil))
		cfg.WeightsInterval, cfg.WeightsRetry = 1, 1
		cfg.Metrics = prometheus.NewRegistry()
	})
	return s, store, log
}

// TestPendingCommitsCapAcrossRestart: a validator whose store holds
// subnet.MaxUnrevealedCommits pending commits from an earlier run commits
// nothing more until they settle; nicompute_validator_pending_commits
// counts them from the start, then the new commit alone.
func TestPendingCommitsCapAcrossRestart(t *testing.T) {
	ctx := context.Background()
	s, store, log := withPendingCommits(t, true)
	if got := testutil.ToFloat64(s.metrics.pending); got != subnet.MaxUnrevealedCommits {
		t.Fatalf("pending commits gauge %v at start, want %d", got, subnet.MaxUnrevealedCommits)
	}
	waitFor(t, 10*time.Second, "the cap to hold a round back", func() bool {
		return strings.Contains(log.String(), "the chain has not revealed the last commits yet")
	})
	if pending, _ := store.Commits(ctx, market.CommitPending); len(pending) != subnet.MaxUnrevealedCommits || store.submissions() != 0 {
		t.Fatalf("%d pending, %d submissions", len(pending), store.submissions())
	}
	for i := range subnet.MaxUnrevealedCommits {
		store.SetCommitStatus(ctx, int64(i+1), market.CommitMissed)
	}
	waitFor(t, 10*time.Second, "a commit once the old ones settled", func() bool { return store.submissions() > 0 })
	if !strings.Contains(s.WeightsSummary(), "committed for reveal in round") {
		t.Fatalf("status %q", s.WeightsSummary())
	}
	waitFor(t, 10*time.Second, "the gauge to count the new commit only", func() bool {
		pending, _ := store.Commits(ctx, market.CommitPending)
		return len(pending) >= 1 && testutil.ToFloat64(s.metrics.pending) == float64(len(pending))
	})
}

// TestPendingCommitsDoNotHoldBackSetWeights: the cap on pending commits
// concerns commits only. On a subnet whose owner turned commit-reveal off,
// a validator with subnet.MaxUnrevealedCommits commits still pending from
// before sets its weights.
func TestPendingCommitsDoNotHoldBackSetWeights(t *testing.T) {
	s, store, log := withPendingCommits(t, false)
	waitFor(t, 10*time.Second, "weights set with commits pending", func() bool { return store.submissions() > 0 })
	if st := s.WeightsSummary(); !strings.Contains(st, "weights set at block") {
		t.Fatalf("status %q", st)
	}
	if strings.Contains(log.String(), "the chain has not revealed the last commits yet") {
		t.Fatalf("the commit cap held back set_weights:\n%s", log)
	}
}

// A miner waiting to be retried holds no test slot: with one slot, two
// miners that always refuse are each tried twice in about one retry
// interval, not two (the second would wait for the first's retries).
func TestSweepRetryWaitsHoldNoSlot(t *testing.T) {
	c, l := testSubnet(t, 2)
	for i, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		serve(t, c, l.NetUID, l.Miners[i], startFakeMinerAs(t, ip, l.Miners[i], minerBehavior{refuse: true}))
	}
	const interval = 3 * time.Second
	store := newMemStore()
	start := time.Now()
	_, report := testService(t, c, l, store, func(cfg *Config) {
		cfg.PoG.MaxWorkers, cfg.PoG.RetryLimit, cfg.PoG.RetryInterval = 1, 2, interval
	})
	waitFor(t, 30*time.Second, "the sweep", func() bool { return strings.Contains(report.String(), "sweep finished") })
	took := time.Since(start)
	got, _ := store.Results(context.Background(), 1)
	for _, m := range l.Miners {
		if r := got[m.Hotkey.SS58()]; len(r) != 1 || r[0].Attempts != 2 {
			t.Fatalf("miner %d: %+v, want one result after 2 attempts", m.UID, r)
		}
	}
	if took < interval || took > interval+interval*2/3 {
		t.Errorf("sweep took %s; with retry waits outside the slot it takes one %s interval", took, interval)
	}
}
