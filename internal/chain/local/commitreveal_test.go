package local

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/tlock"
	"github.com/nicompute/nicompute/internal/weights"
)

// clock is a manual wall clock for the beacon.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// logBuffer collects the node's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// crWorld is a manually sealed chain with a commit-reveal subnet (tempo
// 10, reveal period 1), a validator with a permit (Bob) and two miners, a
// beacon of one round a second and a clock that moves one second a block.
type crWorld struct {
	*world
	clock     *clock
	logs      *logBuffer
	val       *keys.Keypair
	valUID    subnet.UID
	submitter *weights.Submitter
}

func newCRWorld(t *testing.T, rateLimit uint64) *crWorld {
	t.Helper()
	ctx := context.Background()
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	logs := &logBuffer{}
	g := DefaultGenesis()
	g.Tempo, g.WeightsRateLimit = 10, rateLimit
	n, err := Open(ctx, Config{DataDir: t.TempDir(), Genesis: &g, Now: clk.Now, BeaconPeriod: time.Second,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	c := dialNode(t, n)
	w := &crWorld{world: &world{n: n, c: c, owner: key(t, "//Alice")}, clock: clk, logs: logs, val: key(t, "//Bob/hot")}
	must[subnet.Balance](t)(c.Faucet(ctx, w.owner.SS58(), subnet.TAO(100)))
	w.netuid = must[subnet.NetUID](t)(c.CreateSubnet(ctx, w.owner, 0))
	w.valUID = w.register(t, key(t, "//Bob"), w.val, 100)
	if err := c.AddStake(ctx, key(t, "//Bob"), w.netuid, w.val.SS58(), subnet.TAO(50)); err != nil {
		t.Fatal(err)
	}
	w.register(t, key(t, "//Charlie"), key(t, "//Charlie/hot"), 10)
	w.register(t, key(t, "//Dave"), key(t, "//Dave/hot"), 10)
	w.grantPermits(t)
	w.submitter = &weights.Submitter{Chain: c, Now: clk.Now}
	return w
}

// step seals one block a second.
func (w *crWorld) step(t *testing.T) uint64 {
	t.Helper()
	w.clock.add(time.Second)
	return advance(t, w.n, 1)
}

func (w *crWorld) row(t *testing.T, uid subnet.UID) ([]subnet.UID, []uint16) {
	t.Helper()
	u, v, err := w.c.Weights(context.Background(), w.netuid, uid)
	if err != nil {
		t.Fatal(err)
	}
	return u, v
}

func (w *crWorld) commits(t *testing.T) int {
	t.Helper()
	var n int
	err := w.n.read(context.Background(), func(q queryer) error {
		return q.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM weight_commits`).Scan(&n)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCommitRevealOnEmbeddedChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newCRWorld(t, 2)
	h := must[subnet.Hyperparameters](t)(w.c.Hyperparameters(ctx, w.netuid))
	if !h.CommitRevealEnabled || h.RevealPeriodEpochs != 1 {
		t.Fatalf("new subnet: commit-reveal %v, period %d; want on, 1", h.CommitRevealEnabled, h.RevealPeriodEpochs)
	}
	uids, vals := []subnet.UID{1, 2}, []uint16{65535, 20000}
	wantCode(t, w.c.SetWeights(ctx, w.val, w.netuid, uids, vals, 0), subnet.ECOMMITREVEAL)

	res, err := w.submitter.Submit(ctx, w.val, w.netuid, uids, vals, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != weights.ModeCommit || res.Plan.RevealEpoch != res.Plan.CommitEpoch+1 {
		t.Fatalf("result %+v", res)
	}
	if u, _ := w.row(t, w.valUID); len(u) != 0 || w.commits(t) != 1 {
		t.Fatalf("weights visible before the reveal: %v", u)
	}
	// The chain reveals the commit by itself in the reveal epoch, once its
	// beacon has published the round: the SDK's arithmetic aims 3 blocks
	// into the epoch.
	var revealed uint64
	for range 40 {
		b := w.step(t)
		if u, v := w.row(t, w.valUID); len(u) > 0 {
			if !slices.Equal(u, uids) || !slices.Equal(v, vals) {
				t.Fatalf("revealed %v %v, want %v %v", u, v, uids, vals)
			}
			revealed = b
			break
		}
	}
	if revealed < res.Plan.RevealBlock || revealed > res.Plan.RevealBlock+SecurityOffsetSlack {
		t.Fatalf("revealed at block %d, plan %+v\n%s", revealed, res.Plan, w.logs)
	}
	if w.commits(t) != 0 || !strings.Contains(w.logs.String(), "weights revealed") {
		t.Fatalf("commit not consumed:\n%s", w.logs)
	}

	// The beacon's parameters and signatures are public and verify.
	bi := must[BeaconInfo](t)(w.c.Beacon(ctx))
	pk, _ := hex.DecodeString(bi.PublicKey)
	b := tlock.Beacon{PublicKey: pk, Genesis: time.UnixMilli(bi.GenesisMS), Period: time.Duration(bi.PeriodMS) * time.Millisecond}
	sig := must[[]byte](t)(w.c.BeaconSignature(ctx, bi.LatestRound))
	if err := b.Verify(bi.LatestRound, sig); err != nil || bi.PeriodMS != 1000 {
		t.Fatalf("beacon %+v: %v", bi, err)
	}
	if _, err := w.c.BeaconSignature(ctx, bi.LatestRound+1); subnet.ErrorCode(err) != subnet.EINVALID {
		t.Fatalf("unpublished round: %v", err)
	}

	// The owner turns commit-reveal off: weights are set again, commits refused.
	off := false
	if err := w.c.SetHyperparameters(ctx, w.owner, w.netuid, HyperparameterUpdate{CommitRevealWeightsEnabled: &off}); err != nil {
		t.Fatal(err)
	}
	advance(t, w.n, 2)
	if res, err := w.submitter.Submit(ctx, w.val, w.netuid, uids, []uint16{1, 65535}, 0); err != nil || res.Mode != weights.ModeSet {
		t.Fatalf("commit-reveal off: %+v %v", res, err)
	}
	wantCode(t, w.c.CommitTimelockedWeights(ctx, w.val, w.netuid, make([]byte, 300), bi.LatestRound+5, 4), subnet.ECOMMITREVEALOFF)
}

// SecurityOffsetSlack is how many blocks after the reveal epoch's first
// block a reveal may come: the SDK's 3-block offset and the round's
// rounding down.
const SecurityOffsetSlack = weights.SecurityBlockOffset + 1

func TestCommitRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newCRWorld(t, 0)
	cr := must[subnet.CommitReveal](t)(w.c.CommitReveal(ctx, w.netuid))
	latest := tlock.Beacon{Genesis: cr.Beacon.Genesis, Period: cr.Beacon.Period}.RoundAt(w.clock.Now())
	good, _, err := w.submitter.Seal(cr, w.val.PublicKey(), []subnet.UID{1}, []uint16{65535}, 0)
	if err != nil {
		t.Fatal(err)
	}
	stranger := key(t, "//Eve")
	for _, tc := range []struct {
		name    string
		signer  *keys.Keypair
		commit  []byte
		round   uint64
		version uint16
		code    string
		msg     string
	}{
		{"wrong version", w.val, good, latest + 5, 3, subnet.EINVALID, "IncorrectCommitRevealVersion"},
		{"not registered", stranger, good, latest + 5, 4, subnet.ENOTREGISTERED, "HotKeyNotRegisteredInSubNet"},
		{"malformed", w.val, []byte("not a ciphertext"), latest + 5, 4, subnet.EINVALID, "malformed timelock ciphertext"},
		{"oversized", w.val, make([]byte, tlock.MaxCiphertextSize+1), latest + 5, 4, subnet.EINVALID, "exceeds the chain's limit"},
		{"round published", w.val, good, latest, 4, subnet.EINVALID, "already published"},
		{"round far ahead", w.val, good, latest + 100_000, 4, subnet.EINVALID, "too far ahead"},
	} {
		err := w.c.CommitTimelockedWeights(ctx, tc.signer, w.netuid, tc.commit, tc.round, tc.version)
		if subnet.ErrorCode(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %s with %q", tc.name, err, tc.code, tc.msg)
		}
	}
	if n := w.commits(t); n != 0 {
		t.Fatalf("%d commits stored by refused calls", n)
	}
	wantCode(t, w.c.CommitTimelockedWeights(ctx, w.val, 99, good, latest+5, 4), subnet.ENOSUBNET)

	// At most 10 unrevealed commits per hotkey and epoch.
	for i := range subnet.MaxUnrevealedCommits {
		if err := w.c.CommitTimelockedWeights(ctx, w.val, w.netuid, good, latest+5, 4); err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	err = w.c.CommitTimelockedWeights(ctx, w.val, w.netuid, good, latest+5, 4)
	if subnet.ErrorCode(err) != subnet.ERATELIMITED || !strings.Contains(err.Error(), "TooManyUnrevealedCommits") {
		t.Fatalf("11th commit: %v", err)
	}
}

func TestCommitRateLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newCRWorld(t, 5)
	uids, vals := []subnet.UID{1}, []uint16{65535}
	if _, err := w.submitter.Submit(ctx, w.val, w.netuid, uids, vals, 0); err != nil {
		t.Fatal(err)
	}
	_, err := w.submitter.Submit(ctx, w.val, w.netuid, uids, vals, 0)
	if subnet.ErrorCode(err) != subnet.ERATELIMITED || !strings.Contains(err.Error(), "CommittingWeightsTooFast") {
		t.Fatalf("second commit: %v", err)
	}
	for range 5 {
		w.step(t)
	}
	if _, err := w.submitter.Submit(ctx, w.val, w.netuid, uids, vals, 0); err != nil {
		t.Fatalf("after the rate limit: %v", err)
	}
}

// TestRevealDropsBadCommits commits what decrypts to garbage, a payload for
// another hotkey, weights no set_weights would take, and a ciphertext for
// another beacon: each is dropped at reveal with a log line, the weights
// stay as they were, blocks keep coming, and a good commit still reveals.
func TestRevealDropsBadCommits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newCRWorld(t, 0)
	cr := must[subnet.CommitReveal](t)(w.c.CommitReveal(ctx, w.netuid))
	plan, err := weights.PlanReveal(cr, w.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	seal := func(plain []byte, pub []byte) []byte {
		ct, err := tlock.Encrypt(pub, plan.Round, plain, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	payload := func(hotkey []byte, uids []subnet.UID, vals []uint16) []byte {
		return subnet.WeightsPayload{Hotkey: hotkey, UIDs: uids, Values: vals}.Encode()
	}
	bad := map[string][]byte{
		"its payload is malformed":          seal([]byte{1, 2, 3}, cr.Beacon.PublicKey),
		"names another hotkey":              seal(payload(key(t, "//Eve").PublicKey(), []subnet.UID{1}, []uint16{1}), cr.Beacon.PublicKey),
		"break a rule":                      seal(payload(w.val.PublicKey(), []subnet.UID{1, 77}, []uint16{1, 1}), cr.Beacon.PublicKey),
		"does not decrypt with its round's": seal(payload(w.val.PublicKey(), []subnet.UID{1}, []uint16{1}), tlock.Quicknet().PublicKey),
	}
	for _, ct := range bad {
		if err := w.c.CommitTimelockedWeights(ctx, w.val, w.netuid, ct, plan.Round, 4); err != nil {
			t.Fatal(err)
		}
	}
	for range 30 {
		w.step(t)
	}
	if u, _ := w.row(t, w.valUID); len(u) != 0 {
		t.Fatalf("bad commits set weights %v", u)
	}
	logs := w.logs.String()
	for reason := range bad {
		if !strings.Contains(logs, "weight commit dropped: "+reason) && !strings.Contains(logs, reason) {
			t.Errorf("no log for %q:\n%s", reason, logs)
		}
	}
	if w.commits(t) != 0 {
		t.Fatalf("%d bad commits still stored", w.commits(t))
	}
	if _, err := w.submitter.Submit(ctx, w.val, w.netuid, []subnet.UID{2}, []uint16{65535}, 0); err != nil {
		t.Fatal(err)
	}
	for range 30 {
		w.step(t)
	}
	if u, _ := w.row(t, w.valUID); !slices.Equal(u, []subnet.UID{2}) {
		t.Fatalf("good commit after bad ones: row %v\n%s", u, w.logs)
	}
}

func TestBeaconKeySurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	n := openNode(t, dir, 0, nil)
	before := must[BeaconInfo](t)(dialNode(t, n).Beacon(context.Background()))
	n.Close()
	n = openNode(t, dir, 0, nil)
	after := must[BeaconInfo](t)(dialNode(t, n).Beacon(context.Background()))
	if before.PublicKey != after.PublicKey || before.GenesisMS != after.GenesisMS || len(before.PublicKey) != 2*tlock.PublicKeySize {
		t.Fatalf("beacon changed across a restart: %+v → %+v", before, after)
	}
}
