// Package subtensor implements the subnet role interfaces against Bittensor
// networks (finney, test, or any subtensor node): Substrate JSON-RPC over a
// WebSocket that reconnects on its own, SCALE decoding driven by the
// runtime's metadata (V15, with runtime-API types; V14 as a fallback for
// storage and extrinsics), reads through storage and the runtime APIs the
// Bittensor SDK uses, and sr25519-signed extrinsics carrying the transaction
// extensions the runtime declares. On subnets with commit-reveal weights,
// set_weights is refused with subnet.ECOMMITREVEAL and weights are
// committed timelocked instead (CommitTimelockedWeights, commit-reveal v4).
package subtensor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
)

// Config tunes a Client. Zero fields take the defaults in brackets.
type Config struct {
	// CallTimeout bounds every RPC whose context has no earlier deadline
	// [30s].
	CallTimeout time.Duration
	// InclusionTimeout bounds how long a write waits for its extrinsic to
	// be included in a block [90s].
	InclusionTimeout time.Duration
	// DialTimeout bounds each connection attempt [10s].
	DialTimeout time.Duration
	// MaxBackoff caps the wait between reconnection attempts [30s].
	MaxBackoff time.Duration
	// PingInterval is how often the connection is probed; one without
	// traffic for two intervals is dropped and redialled [20s].
	PingInterval time.Duration
	// ReadLimit is the largest accepted message in bytes [32 MiB].
	ReadLimit int64
	// EraPeriod is the mortality of extrinsics in blocks, a power of two
	// from 4 to 4096 [64].
	EraPeriod uint64
	// MetadataTTL is how long the runtime version is trusted before it is
	// checked again for an upgrade [1m].
	MetadataTTL time.Duration
	// Logger receives connection state changes [slog.Default()].
	Logger *slog.Logger
	// Observe, when set, is called after every RPC with its method, its
	// duration and its error (nil on success); metrics use it.
	Observe func(method string, d time.Duration, err error)
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.CallTimeout, 30*time.Second)
	def(&c.InclusionTimeout, 90*time.Second)
	def(&c.DialTimeout, 10*time.Second)
	def(&c.MaxBackoff, 30*time.Second)
	def(&c.PingInterval, 20*time.Second)
	def(&c.MetadataTTL, time.Minute)
	if c.ReadLimit <= 0 {
		c.ReadLimit = 32 << 20
	}
	if c.EraPeriod == 0 {
		c.EraPeriod = 64
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Client is a subnet.Chain on a subtensor node. It is safe for concurrent
// use.
type Client struct {
	rpc *rpcClient
	cfg Config

	metaMu sync.Mutex // serialises metadata refreshes

	mu        sync.Mutex // protects the following
	meta      *Metadata
	spec      runtimeVersion
	checkedAt time.Time
	genesis   string
	graphs    map[subnet.NetUID]*cachedGraph
	accounts  map[string]*sync.Mutex // per-signer submission locks
}

var _ subnet.Chain = (*Client)(nil)

type runtimeVersion struct {
	SpecName           string `json:"specName"`
	SpecVersion        uint32 `json:"specVersion"`
	TransactionVersion uint32 `json:"transactionVersion"`
}

// Dial connects to the subtensor node at endpoint (ws:// or wss://) and
// loads the runtime metadata.
func Dial(ctx context.Context, endpoint string, cfg Config) (*Client, error) {
	cfg.setDefaults()
	if _, err := mortalEra(cfg.EraPeriod, 0); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(endpoint, "ws://") && !strings.HasPrefix(endpoint, "wss://") {
		return nil, fmt.Errorf("subtensor endpoint %q: want ws:// or wss://", redactURL(endpoint))
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout+cfg.CallTimeout)
	defer cancel()
	rpc, err := dialRPC(ctx, endpoint, rpcConfig{
		readLimit:    cfg.ReadLimit,
		pingInterval: cfg.PingInterval,
		dialTimeout:  cfg.DialTimeout,
		maxBackoff:   cfg.MaxBackoff,
		observe:      cfg.Observe,
	}, cfg.Logger)
	if err != nil {
		return nil, subnet.Errorf(subnet.EUNAVAILABLE, "%v", err)
	}
	c := &Client{rpc: rpc, cfg: cfg, graphs: map[subnet.NetUID]*cachedGraph{}, accounts: map[string]*sync.Mutex{}}
	if _, err := c.metadata(ctx); err != nil {
		rpc.close()
		return nil, err
	}
	return c, nil
}

// Close closes the connection. It is idempotent.
func (c *Client) Close() error {
	c.rpc.close()
	return nil
}

// withTimeout applies the call timeout unless ctx ends sooner.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.CallTimeout)
}

// metadata returns the metadata of the current runtime, checking for a
// runtime upgrade at most once per MetadataTTL.
func (c *Client) metadata(ctx context.Context) (*Metadata, error) {
	c.mu.Lock()
	m, fresh := c.meta, time.Since(c.checkedAt) < c.cfg.MetadataTTL
	c.mu.Unlock()
	if m != nil && fresh {
		return m, nil
	}
	m, _, err := c.refreshMetadata(ctx, false)
	return m, err
}

// refreshMetadata reads the runtime version (unless it was checked within
// MetadataTTL and recheck is false) and reloads the metadata when the
// runtime changed.
func (c *Client) refreshMetadata(ctx context.Context, recheck bool) (*Metadata, runtimeVersion, error) {
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	c.mu.Lock()
	m, spec, fresh := c.meta, c.spec, time.Since(c.checkedAt) < c.cfg.MetadataTTL
	c.mu.Unlock()
	if m != nil && fresh && !recheck {
		return m, spec, nil // refreshed by a concurrent caller
	}
	rv, err := c.runtimeVersion(ctx, "")
	if err != nil {
		return nil, rv, err
	}
	if m == nil || rv.SpecVersion != spec.SpecVersion || rv.SpecName != spec.SpecName {
		if m, err = c.fetchMetadata(ctx); err != nil {
			return nil, rv, err
		}
		if m.txVersion != extrinsicVersion {
			return nil, rv, subnet.Errorf(subnet.EINTERNAL, "runtime %s %d uses extrinsic version %d; this client signs version %d", rv.SpecName, rv.SpecVersion, m.txVersion, extrinsicVersion)
		}
		c.mu.Lock()
		clear(c.graphs) // cached metagraphs were decoded with the old runtime's types
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.meta, c.spec, c.checkedAt = m, rv, time.Now()
	c.mu.Unlock()
	return m, rv, nil
}

func (c *Client) runtimeVersion(ctx context.Context, at string) (runtimeVersion, error) {
	var rv runtimeVersion
	raw, err := c.rpc.call(ctx, "state_getRuntimeVersion", atParams(at)...)
	if err != nil {
		return rv, err
	}
	if err := json.Unmarshal(raw, &rv); err != nil || rv.SpecVersion == 0 {
		return rv, fmt.Errorf("state_getRuntimeVersion: invalid result")
	}
	return rv, nil
}

// metadataV15Arg is the argument of Metadata_metadata_at_version: u32 15.
const metadataV15Arg = "0x0f000000"

// fetchMetadata loads metadata V15 through the Metadata runtime API, or V14
// through state_getMetadata when the runtime does not offer V15.
func (c *Client) fetchMetadata(ctx context.Context) (*Metadata, error) {
	raw, err := c.rpc.call(ctx, "state_call", "Metadata_metadata_at_version", metadataV15Arg)
	var re *rpcError
	switch {
	case errors.As(err, &re):
		c.cfg.Logger.Info("runtime offers no metadata V15; using V14", "err", err)
	case err != nil:
		return nil, err
	default:
		b, ok, err := hexResult(raw)
		if err != nil || !ok {
			return nil, fmt.Errorf("state_call Metadata_metadata_at_version: invalid result")
		}
		r := newReader(b)
		some := r.option()
		var blob []byte
		if some {
			blob = r.bytes()
		}
		if err := r.done(); err != nil {
			return nil, fmt.Errorf("state_call Metadata_metadata_at_version: %w", err)
		}
		if some {
			return decodeMetadata(blob)
		}
	}
	raw, err = c.rpc.call(ctx, "state_getMetadata")
	if err != nil {
		return nil, err
	}
	b, ok, err := hexResult(raw)
	if err != nil || !ok {
		return nil, fmt.Errorf("state_getMetadata: invalid result")
	}
	return decodeMetadata(b)
}

// header is the part of a block header this package reads.
type header struct {
	Number     string `json:"number"`
	ParentHash string `json:"parentHash"`
}

func (h header) number() (uint64, error) {
	return strconv.ParseUint(strings.TrimPrefix(h.Number, "0x"), 16, 64)
}

// head returns the hash and number of the best block.
func (c *Client) head(ctx context.Context) (string, uint64, error) {
	raw, err := c.rpc.call(ctx, "chain_getHead")
	if err != nil {
		return "", 0, err
	}
	var hash string
	if err := json.Unmarshal(raw, &hash); err != nil || !isHash(hash) {
		return "", 0, errors.New("chain_getHead: invalid result")
	}
	n, err := c.blockNumber(ctx, hash)
	return hash, n, err
}

// blockNumber reads the number of block hash ("" for the best block).
func (c *Client) blockNumber(ctx context.Context, hash string) (uint64, error) {
	raw, err := c.rpc.call(ctx, "chain_getHeader", atParams(hash)...)
	if err != nil {
		return 0, err
	}
	var h *header
	if err := json.Unmarshal(raw, &h); err != nil || h == nil {
		return 0, errors.New("chain_getHeader: invalid result")
	}
	n, err := h.number()
	if err != nil {
		return 0, fmt.Errorf("chain_getHeader: invalid block number %q", h.Number)
	}
	return n, nil
}

func isHash(s string) bool {
	b, err := parseHex(s)
	return err == nil && len(b) == 32
}

// CurrentBlock returns the number of the best block.
func (c *Client) CurrentBlock(ctx context.Context) (uint64, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	return c.blockNumber(ctx, "")
}

// BlockHash returns the hash of block number n.
func (c *Client) BlockHash(ctx context.Context, n uint64) (string, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	raw, err := c.rpc.call(ctx, "chain_getBlockHash", n)
	if err != nil {
		return "", err
	}
	var hash *string
	if err := json.Unmarshal(raw, &hash); err != nil {
		return "", errors.New("chain_getBlockHash: invalid result")
	}
	if hash == nil {
		return "", subnet.Errorf(subnet.EINVALID, "block %d does not exist yet", n)
	}
	if !isHash(*hash) {
		return "", errors.New("chain_getBlockHash: invalid result")
	}
	return *hash, nil
}

// stateCall runs a runtime API method at block at with SCALE-encoded
// arguments and decodes the answer with the method's output type.
func (c *Client) stateCall(ctx context.Context, m *Metadata, at, method string, args ...any) (any, error) {
	api, ok := m.apis[method]
	if !ok {
		return nil, subnet.Errorf(subnet.EINTERNAL, "runtime API %s is not in the runtime metadata (v%d)", method, m.Version)
	}
	if len(args) != len(api.inputs) {
		return nil, fmt.Errorf("runtime API %s takes %d arguments, got %d", method, len(api.inputs), len(args))
	}
	var in []byte
	for i, a := range args {
		var err error
		if in, err = m.encodeValue(in, api.inputs[i], a); err != nil {
			return nil, fmt.Errorf("runtime API %s argument %d: %w", method, i, err)
		}
	}
	raw, err := c.rpc.call(ctx, "state_call", atParams(at, method, hexBytes(in))...)
	if err != nil {
		return nil, err
	}
	b, ok, err := hexResult(raw)
	if err != nil || !ok {
		return nil, fmt.Errorf("state_call %s: invalid result", method)
	}
	v, err := m.decodeAll(b, api.output)
	if err != nil {
		return nil, subnet.Errorf(subnet.EINTERNAL, "state_call %s: answer does not match the runtime metadata: %v", method, err)
	}
	return v, nil
}
