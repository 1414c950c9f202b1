//go:build linux

package sshd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Version is the SSH identification string the server announces: no
// product version, so scanners learn nothing to match against.
const Version = "SSH-2.0-nicompute"

const (
	// killDelay is how long a hung-up session may take to exit during a
	// forced shutdown before its process group is killed.
	killDelay = 2 * time.Second
	// closeWait is how long clients get to close their connections once
	// their sessions have ended during shutdown.
	closeWait = time.Second
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("sshd: server closed")

// errShutdown is the cancellation cause of sessions hung up by a forced
// shutdown.
var errShutdown = errors.New("server shutting down")

// Server is the SSH server of a rented container. It accepts only the
// configured login name, authenticated by a key in authorized_keys or, when
// the password file holds a hash, by password; both files are read at every
// login attempt.
type Server struct {
	cfg      Config
	log      *slog.Logger
	hostKey  ssh.Signer
	procs    *procs
	startups *startupGate // admits unauthenticated connections
	// passwdPath is the passwd(5) file describing the server's user; tests
	// replace it.
	passwdPath string

	// baseCtx is the parent of every connection's context; it is cancelled
	// when a shutdown's grace period expires, hanging up what still runs.
	baseCtx    context.Context
	cancelBase context.CancelCauseFunc
	connWG     sync.WaitGroup // connection goroutines
	chanWG     sync.WaitGroup // open session and forwarding channels
	stopping   chan struct{}  // closed when shutdown starts
	closed     chan struct{}  // closed when shutdown has finished

	// mu protects the following.
	mu           sync.Mutex
	listeners    map[net.Listener]struct{}
	conns        map[*conn]struct{}
	shuttingDown bool
	lastSkipped  string // last authorized_keys warning, logged once
}

// New returns a server for cfg, loading the host key from cfg.Dir or
// creating it there. log may be nil.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		log.Warn("cannot create config directory", "dir", cfg.Dir, "err", err)
	}
	keyPath := filepath.Join(cfg.Dir, HostKeyFile)
	hostKey, persisted, err := loadOrCreateHostKey(keyPath)
	if err != nil {
		return nil, err
	}
	if !persisted {
		log.Warn("host key could not be saved; it will change when the server restarts", "path", keyPath)
	}
	reap := cfg.Reap || os.Getpid() == 1
	ctx, cancel := context.WithCancelCause(context.Background())
	s := &Server{
		cfg:        cfg,
		log:        log,
		hostKey:    hostKey,
		procs:      newProcs(reap),
		startups:   newStartupGate(cfg),
		passwdPath: "/etc/passwd",
		baseCtx:    ctx,
		cancelBase: cancel,
		stopping:   make(chan struct{}),
		closed:     make(chan struct{}),
		listeners:  map[net.Listener]struct{}{},
		conns:      map[*conn]struct{}{},
	}
	log.Info("ssh server ready", "host_key", ssh.FingerprintSHA256(hostKey.PublicKey()), "user", cfg.User, "reap", reap,
		"tcp_forwarding", !cfg.DisableTCPForwarding)
	return s, nil
}

// HostKey returns the server's public host key.
func (s *Server) HostKey() ssh.PublicKey { return s.hostKey.PublicKey() }

// Serve accepts connections on ln until ctx is cancelled or Close is
// called, then shuts the server down gracefully (see Close) and returns
// nil once it has. It returns ErrServerClosed if the server was already
// closed, and the listener's error if accepting fails for another reason.
// Serve may be called concurrently with several listeners.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.shuttingDown {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	s.log.Info("listening", "addr", ln.Addr().String())

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isShuttingDown() {
				<-s.closed
				return nil
			}
			if temporaryAcceptError(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "in", backoff)
				select {
				case <-time.After(backoff):
				case <-s.closed:
				}
				continue
			}
			s.mu.Lock()
			delete(s.listeners, ln)
			s.mu.Unlock()
			return fmt.Errorf("accept ssh connection: %w", err)
		}
		backoff = 0
		s.handle(nc)
	}
}

func temporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

func (s *Server) isShuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shuttingDown
}

// Close shuts the server down: it closes the listeners and connections
// that have no open channel, refuses new sessions, and gives running
// sessions Config.ShutdownGrace to end. Then it hangs up the rest (SIGHUP
// to each session's process group, SIGKILL 2 s later), closes every
// connection and returns once all goroutines and sessions have finished.
// Close is idempotent and always returns nil.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.shuttingDown {
		s.mu.Unlock()
		<-s.closed
		return nil
	}
	s.shuttingDown = true
	close(s.stopping)
	s.startups.stop()
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		if c.openChans == 0 {
			c.close()
		}
	}
	active := len(s.conns)
	s.mu.Unlock()
	s.log.Info("shutting down", "connections", active, "grace", s.cfg.ShutdownGrace)

	drained := waitDone(&s.chanWG)
	grace := time.NewTimer(s.cfg.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-drained:
	case <-grace.C:
		s.log.Info("shutdown grace expired; hanging up sessions")
		s.cancelBase(errShutdown)
		select {
		case <-drained:
		case <-time.After(killDelay + time.Second):
		}
	}
	connsDone := waitDone(&s.connWG)
	select {
	case <-connsDone:
	case <-time.After(closeWait):
	}
	s.cancelBase(errShutdown)
	s.mu.Lock()
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	<-connsDone
	<-drained
	s.procs.close()
	close(s.closed)
	s.log.Info("ssh server stopped")
	return nil
}

// waitDone returns a channel closed when wg's counter reaches zero.
func waitDone(wg *sync.WaitGroup) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		wg.Wait()
		close(ch)
	}()
	return ch
}

// handle starts serving nc, or closes it at once when the server is
// shutting down. The connection takes a place among the unauthenticated
// ones, which may evict another, or waits for one (see startupGate)
// without holding up the accept loop.
func (s *Server) handle(nc net.Conn) {
	src := sourceOf(nc.RemoteAddr())
	c := &conn{srv: s, nc: nc, id: randomID()}
	c.log = s.log.With("conn", c.id, "remote", nc.RemoteAddr().String())
	s.mu.Lock()
	if s.shuttingDown {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	s.mu.Unlock()
	st, evicted, first := s.startups.admit(src, c.close)
	c.startup = st
	if evicted != nil {
		total, from := s.startups.count(evicted.src)
		log := s.log.Debug
		if first {
			log = s.log.Warn
		}
		log("unauthenticated connections at the limit; closing one of the source holding most",
			"limit", s.cfg.MaxStartups, "pending", total, "evicted_source", evicted.src, "pending_from_source", from)
	}
	go func() {
		defer s.connWG.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
		if !s.awaitPlace(c) {
			return
		}
		c.serve()
	}()
}

// awaitPlace waits until c is admitted among the unauthenticated
// connections; it reports false, with c closed, when c was dropped, waited
// HandshakeTimeout or the server is shutting down.
func (s *Server) awaitPlace(c *conn) bool {
	st := c.startup
	t := time.NewTimer(s.cfg.HandshakeTimeout)
	defer t.Stop()
	select {
	case <-st.ready:
	case <-t.C:
	case <-s.stopping:
	}
	select {
	case <-st.ready:
		if s.startups.admitted(st) {
			return true
		}
	default:
	}
	s.startups.release(st)
	c.close()
	return false
}

// attachChannel registers a new channel on c. It fails while the server
// shuts down or when c has max channels of that kind open.
func (s *Server) attachChannel(c *conn, session bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown {
		return errShutdown
	}
	if session && c.openSessions >= s.cfg.MaxSessions {
		return errors.New("too many sessions")
	}
	if c.openChans >= s.cfg.MaxSessions+maxForwards {
		return errors.New("too many channels")
	}
	c.openChans++
	if session {
		c.openSessions++
	}
	s.chanWG.Add(1)
	return nil
}

func (s *Server) detachChannel(c *conn, session bool) {
	s.mu.Lock()
	c.openChans--
	if session {
		c.openSessions--
	}
	s.mu.Unlock()
	s.chanWG.Done()
}

// warnSkipped logs skipped authorized_keys lines once per distinct set.
func (s *Server) warnSkipped(skipped []skippedLine) {
	if len(skipped) == 0 {
		return
	}
	msg := fmt.Sprint(skipped)
	s.mu.Lock()
	seen := msg == s.lastSkipped
	s.lastSkipped = msg
	s.mu.Unlock()
	if seen {
		return
	}
	for _, l := range skipped {
		s.log.Warn("authorized_keys line ignored", "line", l.line, "reason", l.reason)
	}
}

func randomID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}
