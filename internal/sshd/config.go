package sshd

import (
	"errors"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultUser           = "root"
	DefaultMaxAuthTries   = 6
	DefaultLoginGraceTime = 30 * time.Second
	DefaultMaxStartups    = 10
	DefaultMaxSessions    = 10
	DefaultShutdownGrace  = 5 * time.Second
	// DefaultPath is the session's PATH when the base environment has none.
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Config configures a Server. The zero value of every field except Dir
// selects its default.
type Config struct {
	// Dir holds authorized_keys, the optional password file and the host
	// key (see the constants in layout.go). Required.
	Dir string
	// User is the only login name accepted. Commands run as the user of
	// the server process whatever the login name; in a container both are
	// root.
	User string
	// Env is the base environment of every session, usually the
	// container's own environment (the image's ENV lines), so that PATH,
	// CUDA and conda settings reach the renter. The server then sets HOME,
	// USER, LOGNAME, SHELL, SSH_CONNECTION, SSH_CLIENT, TERM and SSH_TTY,
	// PATH when Env has none, and the client's accepted "env" requests.
	Env []string
	// AllowTCPForwarding enables local port forwarding (direct-tcpip, as
	// `ssh -L`). Remote forwarding (tcpip-forward) is always refused.
	AllowTCPForwarding bool
	// MaxAuthTries bounds failed authentication attempts per connection.
	MaxAuthTries int
	// LoginGraceTime bounds the time from TCP accept to successful
	// authentication.
	LoginGraceTime time.Duration
	// MaxStartups bounds connections that have not yet authenticated;
	// further connections are closed at once.
	MaxStartups int
	// MaxSessions bounds concurrently open session channels per
	// connection.
	MaxSessions int
	// ShutdownGrace is how long Close (or cancelling Serve's context) lets
	// running sessions finish before they are hung up and killed.
	ShutdownGrace time.Duration
	// Reap makes the server reap every child process that exits, including
	// orphans re-parented to it. It is switched on automatically when the
	// server runs as PID 1 (a container started without an init); set it
	// when the process is a child subreaper.
	Reap bool
}

func (c Config) withDefaults() (Config, error) {
	if c.Dir == "" {
		return c, errors.New("sshd config: empty Dir")
	}
	if c.User == "" {
		c.User = DefaultUser
	}
	if c.MaxAuthTries == 0 {
		c.MaxAuthTries = DefaultMaxAuthTries
	}
	if c.LoginGraceTime == 0 {
		c.LoginGraceTime = DefaultLoginGraceTime
	}
	if c.MaxStartups == 0 {
		c.MaxStartups = DefaultMaxStartups
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.MaxAuthTries < 0 || c.LoginGraceTime < 0 || c.MaxStartups < 0 || c.MaxSessions < 0 || c.ShutdownGrace < 0 {
		return c, errors.New("sshd config: negative limit")
	}
	return c, nil
}
