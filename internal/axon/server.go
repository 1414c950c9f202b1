package axon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/nicompute/nicompute/internal/keys"
)

// Signer signs on behalf of a hotkey with sr25519 (the "substrate" signing
// context). *keys.Keypair implements it, as does any subnet.Signer.
type Signer interface {
	// SS58 is the hotkey's address.
	SS58() string
	// Sign signs msg.
	Sign(msg []byte) ([]byte, error)
}

// Defaults of Config.
const (
	DefaultMaxBodyBytes  = 1 << 20
	DefaultMaxWorkers    = 10
	DefaultQueueSize     = 256
	DefaultMaxTimeout    = 120 * time.Second
	DefaultNonceCapacity = 1 << 16
	// DefaultNoncesPerHotkey is four times the uuids one nicompute
	// Dendrite uses at most, so that a validator's restarts, or a Python
	// validator making a new dendrite per query, stay well under it.
	DefaultNoncesPerHotkey = 256
	// DefaultShutdownTimeout bounds how long Serve waits for running
	// requests once its context ends.
	DefaultShutdownTimeout = 10 * time.Second
)

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	// Hotkey is the axon's own key: requests must be addressed and signed
	// to it, and it signs responses. Required.
	Hotkey Signer
	// MaxBodyBytes bounds request bodies (413 beyond).
	MaxBodyBytes int64
	// MaxWorkers is the number of handlers that may run at once.
	MaxWorkers int
	// QueueSize is how many requests may wait for a worker, served highest
	// priority first; beyond it requests get 503. Negative: none may wait.
	QueueSize int
	// MaxTimeout caps the timeout a request asks for, which is its
	// deadline here.
	MaxTimeout time.Duration
	// MaxNonceAge bounds how old a request's nonce may be (default
	// DefaultMaxNonceAge): at most 4 s + the request's timeout, as
	// Bittensor's axon allows, and never more than MaxNonceAge, whatever
	// the timeout. How far ahead it may be is MaxNonceSkew.
	MaxNonceAge time.Duration
	// NonceCapacity bounds the memory that replay protection uses: the
	// number of dendrite endpoints (hotkey, uuid) whose last nonce is
	// remembered, each hotkey counting at least one. Beyond it the hotkeys
	// holding the most endpoints forget their oldest; only that hotkey's
	// older nonces are refused then, never another's. A hotkey not yet
	// seen is refused with 503 only while 7/8 of NonceCapacity distinct
	// hotkeys passed the blacklist within the freshness window.
	NonceCapacity int
	// NoncesPerHotkey bounds the endpoints (uuids) remembered per dendrite
	// hotkey; beyond it the hotkey's oldest are forgotten and its nonces
	// up to the newest forgotten one refused.
	NoncesPerHotkey int
	// RequireBodySignature refuses requests without BodySignatureHeader,
	// that is, requests from Bittensor's Python dendrite, whose signature
	// does not cover the body of SN27's synapses. Requests from dendrites
	// that announce body signing in their uuid (nicompute's) must carry it
	// whatever this setting.
	RequireBodySignature bool
	// Version is the version_as_int the axon reports in its terminal info
	// (default BittensorVersion).
	Version int64
	// ExternalIP and ExternalPort are reported in the axon's terminal info;
	// when empty, the values the dendrite addressed are echoed.
	ExternalIP   string
	ExternalPort int
	// ShutdownTimeout bounds the graceful part of Serve's shutdown.
	ShutdownTimeout time.Duration
	// Now is the clock for nonce freshness (default time.Now).
	Now func() time.Time
	// Observe, when set, is called once per request with the synapse name
	// ("" when no synapse of that name is attached), the HTTP status and
	// the time spent; metrics hang here.
	Observe func(synapse string, status int, elapsed time.Duration)
}

func (c Config) withDefaults() Config {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxWorkers <= 0 {
		c.MaxWorkers = DefaultMaxWorkers
	}
	switch {
	case c.QueueSize == 0:
		c.QueueSize = DefaultQueueSize
	case c.QueueSize < 0:
		c.QueueSize = 0
	}
	if c.MaxTimeout <= 0 {
		c.MaxTimeout = DefaultMaxTimeout
	}
	if c.MaxNonceAge <= 0 {
		c.MaxNonceAge = DefaultMaxNonceAge
	}
	if c.NonceCapacity <= 0 {
		c.NonceCapacity = DefaultNonceCapacity
	}
	c.NonceCapacity = max(c.NonceCapacity, 4)
	if c.NoncesPerHotkey <= 0 {
		c.NoncesPerHotkey = DefaultNoncesPerHotkey
	}
	if c.Version == 0 {
		c.Version = BittensorVersion
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Caller is the authenticated sender of a request. Hotkey, UUID, Nonce and
// Version come from the verified headers; IP and Port from the connection.
type Caller struct {
	Hotkey  string
	IP      string
	Port    int
	Version int64
	UUID    string
	Nonce   int64
}

// Call is one request passed to a Handler.
type Call struct {
	Name   string
	Caller Caller
	// Body is the request's JSON object as received: the whole synapse.
	// Its "dendrite" and "axon" members are whatever the sender wrote and
	// are not authenticated; use Caller.
	Body []byte
	// Timeout is the time the request was given (capped by MaxTimeout),
	// Deadline when it runs out; the handler's ctx carries it too.
	Timeout  time.Duration
	Deadline time.Time
}

// Decode unmarshals the body into v.
func (c *Call) Decode(v any) error {
	if err := json.Unmarshal(c.Body, v); err != nil {
		return &Error{Status: http.StatusBadRequest, Message: "invalid " + c.Name + " body: " + err.Error()}
	}
	return nil
}

// Handler serves one synapse. The JSON object members of its result are
// laid over the request body to form the response synapse, as a Python
// forward function mutates the synapse it was given; a nil result returns
// the request unchanged. An *Error answers with its status and message;
// any other error answers 500 with a generic message (the detail is only
// logged).
type Handler func(ctx context.Context, call *Call) (any, error)

// Hooks are a synapse's optional request filters and wire settings.
type Hooks struct {
	// Blacklist refuses a verified caller with 403 and the reason. It runs
	// before the request's nonce is committed: it may see a request again
	// (a replay of a request it refused, or copies of one request sent at
	// once).
	Blacklist func(ctx context.Context, c Caller, name string) (reason string, blocked bool)
	// Priority ranks a verified, not blacklisted caller (higher first)
	// when requests wait for a worker. Default 0.
	Priority func(ctx context.Context, c Caller, name string) float64
	// HashFields are the synapse's required_hash_fields, in declaration
	// order (see BodyHash). SN27's synapses have none.
	HashFields []string
}

type route struct {
	name    string
	handler Handler
	hooks   Hooks
}

// Server is an axon: an http.Handler for attached synapses. Requests go
// through verification (headers, nonce freshness and order, body hash,
// signatures), then the blacklist, then the nonce is committed, then the
// priority queue, then the handler; a refused request never reaches its
// handler. Only requests that pass the blacklist have their nonce
// remembered, so callers it refuses cannot fill the nonce store; their
// replays are refused by the blacklist again.
type Server struct {
	cfg    Config
	log    *slog.Logger
	hotkey string
	uuid   string
	nonces *nonceStore
	sched  *scheduler
	base   context.Context // canceled by Close
	cancel context.CancelFunc

	// mu protects routes.
	mu     sync.RWMutex
	routes map[string]*route

	// srvMu protects servers and closed.
	srvMu   sync.Mutex
	servers []*http.Server
	closed  bool
}

// NewServer returns an axon with no synapse attached.
func NewServer(cfg Config, log *slog.Logger) (*Server, error) {
	if cfg.Hotkey == nil {
		return nil, errors.New("axon: no hotkey")
	}
	if !keys.ValidSS58(cfg.Hotkey.SS58()) {
		return nil, fmt.Errorf("axon: hotkey %q is not an SS58 address", cfg.Hotkey.SS58())
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	base, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:    cfg,
		log:    log,
		hotkey: cfg.Hotkey.SS58(),
		uuid:   newUUID(4),
		nonces: newNonceStore(cfg.MaxNonceAge+time.Second, cfg.NonceCapacity, cfg.NoncesPerHotkey),
		sched:  newScheduler(cfg.MaxWorkers, cfg.QueueSize),
		base:   base,
		cancel: cancel,
		routes: make(map[string]*route),
	}, nil
}

var synapseName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Attach serves synapse name at POST /{name} (case-sensitive, as the SDK
// routes by class name). It panics on an invalid or already attached name
// or a nil handler, as http.ServeMux does for bad patterns.
func (s *Server) Attach(name string, h Handler, hooks Hooks) {
	if !synapseName.MatchString(name) {
		panic(fmt.Sprintf("axon: invalid synapse name %q", name))
	}
	if h == nil {
		panic("axon: nil handler for " + name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.routes[name]; dup {
		panic("axon: synapse " + name + " attached twice")
	}
	hooks.HashFields = slices.Clone(hooks.HashFields)
	s.routes[name] = &route{name: name, handler: h, hooks: hooks}
}

// Hotkey returns the axon's hotkey address.
func (s *Server) Hotkey() string { return s.hotkey }

// Handler returns the axon as an http.Handler.
func (s *Server) Handler() http.Handler { return s }

// Serve accepts connections on ln until ctx ends or Close is called, then
// stops accepting, waits up to ShutdownTimeout for running requests and
// closes the rest. It returns nil after a shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      s.cfg.MaxTimeout + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.srvMu.Lock()
	if s.closed {
		s.srvMu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.servers = append(s.servers, hs)
	s.srvMu.Unlock()

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("axon serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		s.log.Warn("axon shutdown timed out; closing connections", "err", err)
		hs.Close()
	}
	<-errc
	return nil
}

// Close stops every Serve at once and cancels running handlers. It is
// idempotent.
func (s *Server) Close() error {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.cancel()
	var errs []error
	for _, hs := range s.servers {
		if err := hs.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func newUUID(version byte) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return formatUUID(b, version)
}

func formatUUID(b [16]byte, version byte) string {
	b[6] = b[6]&0x0f | version<<4
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// signsBody reports whether a dendrite uuid announces that its requests
// carry BodySignatureHeader: nicompute dendrites use a version-8 UUID that
// starts with "6e696331" ("nic1"). The uuid is covered by the Bittensor
// signature, so the announcement cannot be stripped from a request.
func signsBody(uuid string) bool {
	return len(uuid) == 36 && uuid[:8] == "6e696331" && uuid[14] == '8'
}
