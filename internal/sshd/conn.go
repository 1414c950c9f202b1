//go:build linux

package sshd

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// maxForwards bounds open forwarding channels per connection.
const maxForwards = 64

// Permissions extensions set by the auth callbacks.
const (
	extMethod      = "nicompute-method"
	extFingerprint = "nicompute-fingerprint"
	extNoPTY       = "nicompute-no-pty"
	extNoForward   = "nicompute-no-port-forwarding"
)

var (
	errAuthFailed = errors.New("authentication failed")
	errNoPassword = errors.New("password login disabled")
)

// conn is one client connection, from TCP accept to close.
type conn struct {
	srv *Server
	nc  net.Conn
	id  string
	log *slog.Logger
	// startup is the connection's place among the unauthenticated ones,
	// set before serve runs.
	startup *startup

	// Set once authentication succeeded; read-only afterwards.
	sc       *ssh.ServerConn
	ctx      context.Context // cancelled when the connection ends or the server hangs up
	restrict keyRestrictions

	// Counted under srv.mu.
	openChans    int
	openSessions int

	closeOnce sync.Once
}

// close closes the network connection, ending every channel on it.
func (c *conn) close() {
	c.closeOnce.Do(func() { c.nc.Close() })
}

func (c *conn) serve() {
	s := c.srv
	defer s.startups.release(c.startup)
	defer c.close()

	// The version and key exchanges get HandshakeTimeout; once the client
	// asks to authenticate, the rest of LoginGraceTime.
	start := time.Now()
	c.nc.SetDeadline(start.Add(s.cfg.HandshakeTimeout))
	cfg := c.serverConfig()
	cfg.PreAuthConnCallback = func(ssh.ServerPreAuthConn) {
		s.startups.progress(c.startup, stageAuth)
		c.nc.SetDeadline(start.Add(s.cfg.LoginGraceTime))
	}
	staged := &stagedConn{Conn: c.nc, onStage: func(stage int) { s.startups.progress(c.startup, stage) }}
	sc, chans, reqs, err := ssh.NewServerConn(staged, cfg)
	if err != nil {
		c.log.Debug("ssh handshake failed", "err", err)
		return
	}
	c.nc.SetDeadline(time.Time{})
	s.startups.release(c.startup)
	defer sc.Close()

	c.sc = sc
	ext := sc.Permissions.Extensions
	_, c.restrict.noPTY = ext[extNoPTY]
	_, c.restrict.noPortForwarding = ext[extNoForward]
	ctx, cancel := context.WithCancelCause(s.baseCtx)
	defer cancel(errors.New("connection closed"))
	c.ctx = ctx
	c.log.Info("login", "user", sc.User(), "method", ext[extMethod], "key", ext[extFingerprint],
		"client", string(sc.ClientVersion()))

	// Global requests: remote forwarding (ssh -R) and keepalives.
	fwd := newRemoteForwards(c)
	globalDone := make(chan struct{})
	go func() {
		defer close(globalDone)
		for r := range reqs {
			fwd.handle(r)
		}
	}()
	defer func() {
		<-globalDone // reqs is closed once the connection is
		fwd.close()
	}()

	var wg sync.WaitGroup
	for nch := range chans {
		switch nch.ChannelType() {
		case "session":
			if err := s.attachChannel(c, true); err != nil {
				nch.Reject(ssh.ResourceShortage, err.Error())
				continue
			}
			ch, creqs, err := nch.Accept()
			if err != nil {
				s.detachChannel(c, true)
				continue
			}
			wg.Go(func() {
				defer s.detachChannel(c, true)
				newSession(c, ch, creqs).serve()
			})
		case "direct-tcpip":
			if !c.forwardingAllowed() {
				nch.Reject(ssh.Prohibited, "port forwarding is disabled")
				continue
			}
			if err := s.attachChannel(c, false); err != nil {
				nch.Reject(ssh.ResourceShortage, err.Error())
				continue
			}
			wg.Go(func() {
				defer s.detachChannel(c, false)
				c.forward(nch)
			})
		default:
			nch.Reject(ssh.UnknownChannelType, "unsupported channel type")
		}
	}
	cancel(errors.New("connection closed"))
	wg.Wait()
	c.log.Info("connection closed")
}

// serverConfig is built per connection so that password login is offered
// only while the password file holds a hash.
func (c *conn) serverConfig() *ssh.ServerConfig {
	s := c.srv
	cfg := &ssh.ServerConfig{
		Config: ssh.Config{
			KeyExchanges: keyExchanges(),
			Ciphers:      ciphers(),
			MACs:         macs(),
		},
		PublicKeyAuthAlgorithms: publicKeyAuthAlgorithms(),
		ServerVersion:           Version,
		MaxAuthTries:            s.cfg.MaxAuthTries,
		PublicKeyCallback:       c.authPublicKey,
		AuthLogCallback: func(m ssh.ConnMetadata, method string, err error) {
			if err != nil && method != "none" {
				c.log.Debug("authentication failed", "user", m.User(), "method", method, "err", err)
			}
		},
	}
	_, ok, err := readPasswordHash(filepath.Join(s.cfg.Dir, PasswordFile))
	if err != nil {
		c.log.Warn("cannot read password file; password login disabled", "err", err)
	}
	if ok {
		cfg.PasswordCallback = c.authPassword
	}
	cfg.AddHostKey(s.hostKey)
	return cfg
}

func (c *conn) authPublicKey(m ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	s := c.srv
	if m.User() != s.cfg.User {
		return nil, errAuthFailed
	}
	k, skipped, err := findKey(filepath.Join(s.cfg.Dir, AuthorizedKeysFile), key)
	s.warnSkipped(skipped)
	switch {
	case err == nil:
	case errors.Is(err, errKeyNotAuthorized):
		return nil, errAuthFailed
	case errors.Is(err, fs.ErrNotExist):
		c.log.Debug("no authorized_keys file", "err", err)
		return nil, errAuthFailed
	default:
		c.log.Warn("cannot read authorized_keys", "err", err)
		return nil, errAuthFailed
	}
	ext := map[string]string{extMethod: "publickey", extFingerprint: ssh.FingerprintSHA256(key)}
	if k.noPTY {
		ext[extNoPTY] = ""
	}
	if k.noPortForwarding {
		ext[extNoForward] = ""
	}
	return &ssh.Permissions{Extensions: ext}, nil
}

func (c *conn) authPassword(m ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
	s := c.srv
	hash, ok, err := readPasswordHash(filepath.Join(s.cfg.Dir, PasswordFile))
	if err != nil || !ok {
		return nil, errNoPassword
	}
	// Check the password even for a wrong user so both fail alike.
	good := CheckPassword(hash, string(password))
	if !good || m.User() != s.cfg.User {
		return nil, errAuthFailed
	}
	return &ssh.Permissions{Extensions: map[string]string{extMethod: "password"}}, nil
}
