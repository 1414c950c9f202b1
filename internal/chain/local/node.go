package local

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/nicompute/nicompute/internal/sqlite"
	"github.com/nicompute/nicompute/internal/subnet"
)

// Node is a running embedded chain: the SQLite state, the block producer
// and the HTTP endpoint.
type Node struct {
	cfg     Config
	log     *slog.Logger
	db      *sql.DB
	store   *sqlite.DB
	genesis []byte // genesis hash, fixed for the chain's life
	beacon  *beacon
	now     func() time.Time
	ln      net.Listener
	srv     *http.Server
	metrics *nodeMetrics

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	sealc  chan sealRequest
	wg     sync.WaitGroup
	done   chan struct{}
	once   sync.Once
	err    error // why the endpoint failed; read after done is closed

	// headMu protects the following.
	headMu sync.Mutex
	head   uint64
	headc  chan struct{} // closed and replaced when head changes
}

type sealRequest struct {
	n     uint64
	reply chan sealReply
}

type sealReply struct {
	head uint64
	err  error
}

// Open opens (creating when needed) the chain in cfg.DataDir, starts
// the block producer and serves the HTTP endpoint on cfg.Listen.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("open chain: no data directory")
	}
	if cfg.BlockTime < 0 {
		return nil, errors.New("open chain: negative block time")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := DefaultGenesis()
	if cfg.Genesis != nil {
		g = *cfg.Genesis
	}
	if err := g.validate(); err != nil {
		return nil, fmt.Errorf("open chain: genesis: %w", err)
	}
	path := filepath.Join(cfg.DataDir, "chain.db")
	store, err := sqlite.Open(ctx, path, schema)
	if err != nil {
		return nil, fmt.Errorf("open chain: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BeaconPeriod < 0 {
		store.Close()
		return nil, errors.New("open chain: negative beacon period")
	}
	n := &Node{cfg: cfg, log: log, store: store, db: store.SQL(), now: cfg.Now, sealc: make(chan sealRequest), done: make(chan struct{}), headc: make(chan struct{})}
	c, created, err := n.initChain(ctx, g)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open chain %s: %w", path, err)
	}
	n.genesis, n.head = c.genesisHash, c.block
	if n.metrics, err = newNodeMetrics(cfg.Metrics, n); err != nil {
		store.Close()
		return nil, fmt.Errorf("open chain: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open chain: listen: %w", err)
	}
	n.ln = ln
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.srv = &http.Server{
		Handler:           n.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return n.ctx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	n.wg.Add(2)
	go n.produce()
	go n.serve()
	go func() {
		<-n.ctx.Done()
		n.wg.Wait()
		close(n.done)
	}()
	log.Info("chain open", "path", path, "created", created, "block", c.block, "listen", n.Addr(), "block_time", cfg.BlockTime)
	return n, nil
}

// initChain writes the genesis row of a new chain or reads an existing one.
func (n *Node) initChain(ctx context.Context, g Genesis) (*chainState, bool, error) {
	var c *chainState
	created := false
	err := n.store.Tx(ctx, func(tx *sql.Tx) error {
		var count int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM chain`).Scan(&count); err != nil {
			return err
		}
		if count == 0 {
			hash := make([]byte, 32)
			if _, err := rand.Read(hash); err != nil {
				return err
			}
			gj, err := json.Marshal(g)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO chain (id, genesis_hash, genesis, block, issuance, next_netuid) VALUES (1, ?, ?, 0, 0, 1)`, hash, string(gj)); err != nil {
				return err
			}
			created = true
		}
		var err error
		if c, err = loadChain(ctx, tx); err != nil {
			return err
		}
		period := n.cfg.BeaconPeriod
		if period == 0 {
			period = n.cfg.BlockTime
		}
		if period <= 0 {
			period = DefaultBeaconPeriod
		}
		n.beacon, err = loadBeacon(ctx, tx, n.now(), period)
		return err
	})
	return c, created, err
}

// Addr returns the HTTP endpoint's address (host:port).
func (n *Node) Addr() string { return n.ln.Addr().String() }

// Endpoint returns the URL clients dial.
func (n *Node) Endpoint() string { return "http://" + n.Addr() }

// GenesisHash returns the chain's identity, signed into every extrinsic.
func (n *Node) GenesisHash() []byte { return append([]byte(nil), n.genesis...) }

// Done is closed when the node has stopped: after Close, or when its
// endpoint failed (see Err; Close must still be called).
func (n *Node) Done() <-chan struct{} { return n.done }

// Err returns why the node stopped by itself, once Done is closed (nil
// after Close).
func (n *Node) Err() error {
	select {
	case <-n.done:
		return n.err
	default:
		return nil
	}
}

// Close stops the endpoint and the producer and closes the chain file. It
// is idempotent.
func (n *Node) Close() error {
	var errs []error
	n.once.Do(func() {
		n.cancel()
		sctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		if err := n.srv.Shutdown(sctx); err != nil {
			errs = append(errs, n.srv.Close())
		}
		stop()
		<-n.done
		errs = append(errs, n.store.Close())
		n.log.Info("chain closed", "block", n.Head())
	})
	return errors.Join(errs...)
}

func (n *Node) serve() {
	defer n.wg.Done()
	if err := n.srv.Serve(n.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		n.log.Error("chain endpoint stopped", "err", err)
		n.err = err
		n.cancel()
	}
}

// produce owns block production: it seals one block every BlockTime and
// the blocks Seal and Advance ask for.
func (n *Node) produce() {
	defer n.wg.Done()
	var tick <-chan time.Time
	if n.cfg.BlockTime > 0 {
		t := time.NewTicker(n.cfg.BlockTime)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick:
			if _, err := n.advance(n.ctx, 1); err != nil && n.ctx.Err() == nil {
				n.log.Error("seal block", "err", err)
			}
		case r := <-n.sealc:
			head, err := n.advance(n.ctx, r.n)
			r.reply <- sealReply{head, err}
		}
	}
}

// Seal produces one block now and returns its number.
func (n *Node) Seal(ctx context.Context) (uint64, error) { return n.Advance(ctx, 1) }

// Advance produces count blocks now, running the epochs that fall due, and
// returns the new best block. Blocks without an epoch are sealed together,
// so advancing by thousands of blocks is cheap.
func (n *Node) Advance(ctx context.Context, count uint64) (uint64, error) {
	r := sealRequest{n: count, reply: make(chan sealReply, 1)}
	select {
	case n.sealc <- r:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.ctx.Done():
		return 0, errors.New("chain is closed")
	}
	select {
	case rep := <-r.reply:
		return rep.head, rep.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// advance seals count blocks; only produce calls it. Each step jumps to the
// next block at which an epoch is due (or the target) in one transaction.
func (n *Node) advance(ctx context.Context, count uint64) (uint64, error) {
	head := n.Head()
	target := head + count
	for head < target {
		err := n.store.Tx(ctx, func(tx *sql.Tx) error {
			block, err := headBlock(ctx, tx)
			if err != nil {
				return err
			}
			subnets, err := loadSubnets(ctx, tx)
			if err != nil {
				return err
			}
			next := target
			for _, s := range subnets {
				next = min(next, max(s.nextEpoch(), block+1))
			}
			if _, err := tx.ExecContext(ctx, `UPDATE chain SET block = ? WHERE id = 1`, next); err != nil {
				return fmt.Errorf("seal block %d: %w", next, err)
			}
			now := n.now()
			for _, s := range subnets {
				if err := revealCommits(ctx, tx, n.log, s, next, n.beacon, now); err != nil {
					return fmt.Errorf("reveal commits of subnet %d at block %d: %w", s.NetUID, next, err)
				}
				if s.epochDue(next) {
					if err := runEpoch(ctx, tx, n.log, s, next); err != nil {
						return fmt.Errorf("epoch of subnet %d at block %d: %w", s.NetUID, next, err)
					}
				}
			}
			head = next
			return nil
		})
		if err != nil {
			return n.Head(), err
		}
		n.setHead(head)
	}
	return head, nil
}

func (n *Node) setHead(b uint64) {
	n.headMu.Lock()
	defer n.headMu.Unlock()
	if b != n.head {
		n.head = b
		close(n.headc)
		n.headc = make(chan struct{})
	}
	n.log.Debug("block", "number", b)
}

// Head returns the best block.
func (n *Node) Head() uint64 {
	n.headMu.Lock()
	defer n.headMu.Unlock()
	return n.head
}

// WaitForBlock waits until the best block is at least b or ctx ends, and
// returns the best block.
func (n *Node) WaitForBlock(ctx context.Context, b uint64) (uint64, error) {
	for {
		n.headMu.Lock()
		head, ch := n.head, n.headc
		n.headMu.Unlock()
		if head >= b {
			return head, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return head, ctx.Err()
		case <-n.ctx.Done():
			return head, subnet.Errorf(subnet.EUNAVAILABLE, "chain is closed")
		}
	}
}

// read runs fn in a read-only transaction (a consistent snapshot).
func (n *Node) read(ctx context.Context, fn func(q queryer) error) error {
	tx, err := n.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer tx.Rollback()
	return fn(tx)
}

// write runs fn in a write transaction with the chain row loaded.
func (n *Node) write(ctx context.Context, fn func(q queryer, c *chainState) error) error {
	return n.store.Tx(ctx, func(tx *sql.Tx) error {
		c, err := loadChain(ctx, tx)
		if err != nil {
			return err
		}
		c.beacon, c.now, c.blockTime = n.beacon, n.now(), n.cfg.BlockTime
		return fn(tx, c)
	})
}
