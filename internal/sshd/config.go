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
	// DefaultHandshakeTimeout leaves ample room for the version and key
	// exchanges, which take a few round trips (well under a second on an
	// ordinary link, about 2 s over a satellite one), while freeing the
	// slot of a connection that sends nothing three times sooner than
	// LoginGraceTime would.
	DefaultHandshakeTimeout = 10 * time.Second
	// The start-up limits follow OpenSSH's MaxStartups "10:30:100" and
	// PerSourceMaxStartups: unauthenticated connections beyond 10 are
	// dropped with probability 30 %, rising linearly to 100 % at 100, and
	// one source may hold at most 3.
	DefaultMaxStartups          = 100
	DefaultRandomDropStartups   = 10
	DefaultRandomDropPercent    = 30
	DefaultMaxStartupsPerSource = 3
	DefaultMaxSessions          = 10
	DefaultShutdownGrace        = 5 * time.Second
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
	// DisableTCPForwarding refuses port forwarding, which is otherwise
	// allowed as OpenSSH's AllowTcpForwarding yes allows it: local and
	// dynamic forwarding (direct-tcpip channels, `ssh -L`, `ssh -D`)
	// connect from inside the server's network namespace, and remote
	// forwarding (tcpip-forward, `ssh -R`) listens on its loopback address
	// (OpenSSH's GatewayPorts no). In a lease container that namespace is
	// the renter's own. A key's no-port-forwarding or restrict option
	// refuses both for that key.
	DisableTCPForwarding bool
	// MaxAuthTries bounds failed authentication attempts per connection.
	MaxAuthTries int
	// LoginGraceTime bounds the time from TCP accept to successful
	// authentication.
	LoginGraceTime time.Duration
	// HandshakeTimeout bounds the time from TCP accept to the end of the
	// version and key exchanges (the client's request for authentication),
	// so that connections that send nothing hold a start-up slot only
	// briefly. LoginGraceTime bounds the whole login.
	HandshakeTimeout time.Duration
	// MaxStartups bounds connections that have not yet authenticated
	// (OpenSSH's MaxStartups "full"): with that many, further connections
	// are closed at once.
	MaxStartups int
	// RandomDropStartups is the number of unauthenticated connections from
	// which further connections are closed at random (OpenSSH's "start"):
	// with probability RandomDropPercent, rising linearly to 100 % at
	// MaxStartups. A value of MaxStartups or more disables random drops.
	RandomDropStartups int
	// RandomDropPercent is the probability, in percent (1–100), of the
	// first random drops.
	RandomDropPercent int
	// MaxStartupsPerSource bounds the unauthenticated connections from one
	// IP address (for IPv6, one /64 network); further connections from it
	// are closed at once, whatever the other limits.
	MaxStartupsPerSource int
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
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.MaxStartups == 0 {
		c.MaxStartups = DefaultMaxStartups
	}
	if c.RandomDropStartups == 0 {
		c.RandomDropStartups = DefaultRandomDropStartups
	}
	if c.RandomDropPercent == 0 {
		c.RandomDropPercent = DefaultRandomDropPercent
	}
	if c.MaxStartupsPerSource == 0 {
		c.MaxStartupsPerSource = DefaultMaxStartupsPerSource
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.MaxAuthTries < 0 || c.LoginGraceTime < 0 || c.HandshakeTimeout < 0 || c.MaxStartups < 0 ||
		c.RandomDropStartups < 0 || c.MaxStartupsPerSource < 0 || c.MaxSessions < 0 || c.ShutdownGrace < 0 {
		return c, errors.New("sshd config: negative limit")
	}
	if c.RandomDropPercent < 0 || c.RandomDropPercent > 100 {
		return c, errors.New("sshd config: random drop percentage outside 1-100")
	}
	c.RandomDropStartups = min(c.RandomDropStartups, c.MaxStartups)
	c.HandshakeTimeout = min(c.HandshakeTimeout, c.LoginGraceTime)
	return c, nil
}
