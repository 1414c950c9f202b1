package local

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testLogger sends the node's logs to t.
type testLogger struct {
	mu sync.Mutex
	tb testing.TB
	on bool
}

func (l *testLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.on {
		l.tb.Log(string(p))
	}
	return len(p), nil
}

// testNode opens a manually sealed node in a temporary directory, closed
// when the test ends. mod changes the genesis.
func testNode(tb testing.TB, mod func(*Genesis)) *Node {
	tb.Helper()
	return openNode(tb, tb.TempDir(), 0, mod)
}

func openNode(tb testing.TB, dir string, blockTime time.Duration, mod func(*Genesis)) *Node {
	tb.Helper()
	g := DefaultGenesis()
	if mod != nil {
		mod(&g)
	}
	lw := &testLogger{tb: tb, on: true}
	tb.Cleanup(func() { lw.mu.Lock(); lw.on = false; lw.mu.Unlock() })
	n, err := Open(context.Background(), Config{
		DataDir:   dir,
		BlockTime: blockTime,
		Genesis:   &g,
		Log:       slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		tb.Fatalf("open node: %v", err)
	}
	tb.Cleanup(func() { n.Close() })
	return n
}

func dialNode(tb testing.TB, n *Node, opts ...ClientOption) *Client {
	tb.Helper()
	c, err := Dial(context.Background(), n.Endpoint(), opts...)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func key(tb testing.TB, uri string) *keys.Keypair {
	tb.Helper()
	k, err := keys.FromURI(uri)
	if err != nil {
		tb.Fatalf("key %s: %v", uri, err)
	}
	return k
}

func wantCode(tb testing.TB, err error, code string) {
	tb.Helper()
	if got := subnet.ErrorCode(err); got != code {
		tb.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

func must[T any](tb testing.TB) func(T, error) T {
	return func(v T, err error) T {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		return v
	}
}

func advance(tb testing.TB, n *Node, count uint64) uint64 {
	tb.Helper()
	b, err := n.Advance(context.Background(), count)
	if err != nil {
		tb.Fatalf("advance %d: %v", count, err)
	}
	return b
}

// checkIssuance verifies that the total issuance equals the free balances
// plus all stakes.
func checkIssuance(tb testing.TB, n *Node) subnet.Balance {
	tb.Helper()
	var iss, free, staked int64
	err := n.read(context.Background(), func(q queryer) error {
		if err := q.QueryRowContext(context.Background(), `SELECT issuance FROM chain`).Scan(&iss); err != nil {
			return err
		}
		if err := q.QueryRowContext(context.Background(), `SELECT COALESCE(SUM(free), 0) FROM accounts`).Scan(&free); err != nil {
			return err
		}
		return q.QueryRowContext(context.Background(), `SELECT COALESCE(SUM(amount), 0) FROM stakes`).Scan(&staked)
	})
	if err != nil {
		tb.Fatal(err)
	}
	if iss != free+staked {
		tb.Fatalf("issuance %d != free %d + staked %d", iss, free, staked)
	}
	return subnet.Balance(iss)
}

// world is a subnet with a funded owner.
type world struct {
	n      *Node
	c      *Client
	owner  *keys.Keypair
	netuid subnet.NetUID
}

func newWorld(tb testing.TB, mod func(*Genesis)) *world {
	tb.Helper()
	ctx := context.Background()
	n := testNode(tb, mod)
	c := dialNode(tb, n)
	w := &world{n: n, c: c, owner: key(tb, "//Alice")}
	must[subnet.Balance](tb)(c.Faucet(ctx, w.owner.SS58(), subnet.TAO(1000)))
	w.netuid = must[subnet.NetUID](tb)(c.CreateSubnetWith(ctx, w.owner, SubnetOptions{PlainWeights: true}))
	return w
}

// register funds coldkey and registers hotkey, sealing a block first so the
// per-block registration limit never interferes.
func (w *world) register(tb testing.TB, coldkey, hotkey *keys.Keypair, fund float64) subnet.UID {
	tb.Helper()
	ctx := context.Background()
	if fund > 0 {
		must[subnet.Balance](tb)(w.c.Faucet(ctx, coldkey.SS58(), subnet.TAO(fund)))
	}
	advance(tb, w.n, 1)
	return must[subnet.UID](tb)(w.c.BurnedRegister(ctx, coldkey, w.netuid, hotkey.SS58()))
}

func TestOpenCloseNoLeak(t *testing.T) {
	defer goleak.VerifyNone(t)
	n, err := Open(context.Background(), Config{DataDir: t.TempDir(), BlockTime: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(context.Background(), n.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.WaitForBlock(ctx, 3); err != nil {
		t.Fatal(err)
	}
	// A long poll in flight when the node closes ends at once.
	errc := make(chan error, 1)
	go func() { _, err := c.WaitForBlock(ctx, 1<<40); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	select {
	case <-n.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if err := <-errc; subnet.ErrorCode(err) != subnet.EUNAVAILABLE {
		t.Fatalf("wait during close: %v, want EUNAVAILABLE", err)
	}
	c.Close()
}

func TestRestartKeepsState(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n := openNode(t, dir, 0, func(g *Genesis) { g.Tempo = 10 })
	c := dialNode(t, n)
	owner, cold, hot := key(t, "//Alice"), key(t, "//Bob"), key(t, "//Bob/hot")
	must[subnet.Balance](t)(c.Faucet(ctx, owner.SS58(), subnet.TAO(10)))
	must[subnet.Balance](t)(c.Faucet(ctx, cold.SS58(), subnet.TAO(10)))
	netuid := must[subnet.NetUID](t)(c.CreateSubnet(ctx, owner, 0))
	must[subnet.UID](t)(c.BurnedRegister(ctx, cold, netuid, hot.SS58()))
	if err := c.AddStake(ctx, cold, netuid, hot.SS58(), subnet.TAO(2)); err != nil {
		t.Fatal(err)
	}
	advance(t, n, 25) // two epochs
	before := must[*subnet.Metagraph](t)(c.Metagraph(ctx, netuid))
	balBefore := must[subnet.Balance](t)(c.Balance(ctx, cold.SS58()))
	nonceBefore := must[uint64](t)(c.Nonce(ctx, cold.SS58()))
	issBefore := checkIssuance(t, n)
	genesis := n.GenesisHash()
	c.Close()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	n2 := openNode(t, dir, 0, func(g *Genesis) { g.Tempo = 99 }) // ignored: the stored genesis rules
	c2 := dialNode(t, n2)
	if got := must[uint64](t)(c2.CurrentBlock(ctx)); got != 25 {
		t.Fatalf("block after restart = %d, want 25", got)
	}
	if string(n2.GenesisHash()) != string(genesis) {
		t.Fatal("genesis hash changed across restart")
	}
	after := must[*subnet.Metagraph](t)(c2.Metagraph(ctx, netuid))
	if len(after.Neurons) != 1 || after.Neurons[0] != before.Neurons[0] {
		t.Fatalf("neurons after restart = %+v, want %+v", after.Neurons, before.Neurons)
	}
	if after.Neurons[0].Stake <= subnet.TAO(2) {
		t.Fatalf("stake %s: epochs paid no emission", after.Neurons[0].Stake)
	}
	if got := must[subnet.Balance](t)(c2.Balance(ctx, cold.SS58())); got != balBefore {
		t.Fatalf("balance after restart = %s, want %s", got, balBefore)
	}
	if got := must[uint64](t)(c2.Nonce(ctx, cold.SS58())); got != nonceBefore || got != 2 {
		t.Fatalf("nonce after restart = %d, want %d (2)", got, nonceBefore)
	}
	if got := checkIssuance(t, n2); got != issBefore {
		t.Fatalf("issuance after restart = %s, want %s", got, issBefore)
	}
	if h := must[subnet.Hyperparameters](t)(c2.Hyperparameters(ctx, netuid)); h.Tempo != 10 {
		t.Fatalf("tempo after restart = %d, want 10", h.Tempo)
	}
	// Block production continues from the stored block.
	if got := advance(t, n2, 1); got != 26 {
		t.Fatalf("next block = %d, want 26", got)
	}
}

func TestBlockProduction(t *testing.T) {
	n := openNode(t, t.TempDir(), 5*time.Millisecond, nil)
	c := dialNode(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := c.WaitForBlock(ctx, 5)
	if err != nil || got < 5 {
		t.Fatalf("WaitForBlock(5) = %d, %v", got, err)
	}
	// Seal still works next to the ticker.
	b, err := n.Seal(ctx)
	if err != nil || b <= got {
		t.Fatalf("Seal = %d, %v (head was %d)", b, err, got)
	}
}

func TestWaitForBlockManual(t *testing.T) {
	n := testNode(t, nil)
	c := dialNode(t, n)
	ctx := context.Background()
	done := make(chan uint64, 1)
	go func() {
		b, err := c.WaitForBlock(ctx, 100)
		if err != nil {
			t.Error(err)
		}
		done <- b
	}()
	advance(t, n, 40)
	select {
	case b := <-done:
		t.Fatalf("WaitForBlock returned %d before block 100", b)
	case <-time.After(20 * time.Millisecond):
	}
	advance(t, n, 60)
	if b := <-done; b != 100 {
		t.Fatalf("WaitForBlock = %d, want 100", b)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.WaitForBlock(short, 1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForBlock past deadline: %v, want DeadlineExceeded", err)
	}
}

func TestUnavailable(t *testing.T) {
	ctx := context.Background()
	t.Run("stopped node", func(t *testing.T) {
		n := testNode(t, nil)
		c := dialNode(t, n, WithTimeout(2*time.Second))
		n.Close()
		start := time.Now()
		_, err := c.CurrentBlock(ctx)
		wantCode(t, err, subnet.EUNAVAILABLE)
		if _, err := c.BurnedRegister(ctx, key(t, "//Alice"), 1, key(t, "//Bob").SS58()); subnet.ErrorCode(err) != subnet.EUNAVAILABLE {
			t.Fatalf("register on stopped node: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %v", d)
		}
		if _, err := Dial(ctx, n.Endpoint()); subnet.ErrorCode(err) != subnet.EUNAVAILABLE {
			t.Fatalf("dial stopped node: %v", err)
		}
	})
	t.Run("hung node", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Add(1)
		go func() { // accept and never answer
			defer wg.Done()
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				conns = append(conns, c)
			}
		}()
		start := time.Now()
		_, err = Dial(ctx, "http://"+ln.Addr().String(), WithTimeout(200*time.Millisecond))
		wantCode(t, err, subnet.EUNAVAILABLE)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("dial of a hung node took %v", d)
		}
		dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err = Dial(dctx, "http://"+ln.Addr().String())
		wantCode(t, err, subnet.EUNAVAILABLE)
		ln.Close()
	})
	t.Run("bad endpoint", func(t *testing.T) {
		_, err := Dial(ctx, "ws://127.0.0.1:1")
		wantCode(t, err, subnet.EINVALID)
	})
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, Config{}); err == nil {
		t.Fatal("open without data dir succeeded")
	}
	g := DefaultGenesis()
	g.Tempo = 0
	if _, err := Open(ctx, Config{DataDir: t.TempDir(), Genesis: &g}); err == nil {
		t.Fatal("open with tempo 0 succeeded")
	}
	n := testNode(t, nil)
	if _, err := Open(ctx, Config{DataDir: filepath.Join(t.TempDir(), "x"), Listen: n.Addr()}); err == nil {
		t.Fatal("open on a busy port succeeded")
	}
}
