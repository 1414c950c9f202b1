package sshd

import (
	"errors"
	"time"

	"golang.org/x/crypto/ssh"
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
	// DefaultMaxStartups bounds unauthenticated connections, as OpenSSH's
	// MaxStartups does; past it each new connection evicts a pending one
	// (see startupGate) instead of being refused.
	DefaultMaxStartups = 100
	// DefaultStartupProtection is how long a pending connection keeps its
	// place after each step of its handshake. Each step takes a client one
	// round trip, which is shorter on nearly every link; a flood then
	// cycles through at most MaxStartups connections per period.
	DefaultStartupProtection = 500 * time.Millisecond
	DefaultMaxSessions       = 10
	DefaultShutdownGrace     = 5 * time.Second
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
	// MaxStartups bounds connections that have not yet authenticated. A
	// connection beyond it is still admitted: it evicts a pending one,
	// taken from the source holding the most, preferring those still in
	// the key exchange, oldest first. One party's flood thus evicts its own
	// connections, even when every client arrives through Docker's port
	// proxy with the same address. Up to four times as many connections
	// wait, accepted, for a place (see startupGate).
	MaxStartups int
	// StartupProtection is how long after each step of its handshake a
	// pending connection cannot be evicted by a newcomer from a source
	// holding as many (one from a source holding two fewer evicts at
	// once); when all are protected, new connections wait for a place.
	StartupProtection time.Duration
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
	if c.StartupProtection == 0 {
		c.StartupProtection = DefaultStartupProtection
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.MaxAuthTries < 0 || c.LoginGraceTime < 0 || c.HandshakeTimeout < 0 || c.MaxStartups < 0 ||
		c.StartupProtection < 0 || c.MaxSessions < 0 || c.ShutdownGrace < 0 {
		return c, errors.New("sshd config: negative limit")
	}
	c.HandshakeTimeout = min(c.HandshakeTimeout, c.LoginGraceTime)
	return c, nil
}

// The algorithms the server offers: only those without known weaknesses,
// and for key exchange only elliptic-curve ones, whose cost is small and
// fixed (a finite-field group such as diffie-hellman-group16-sha512 costs
// the server a 4096-bit exponentiation per connection, which a stranger
// could make it spend by the thousand). No SHA-1 anywhere: not
// diffie-hellman-group14-sha1, not hmac-sha1 or hmac-sha1-96, not ssh-rsa
// signatures (RSA keys sign with rsa-sha2-256/512, as OpenSSH has since
// 7.2). Every OpenSSH client since 6.5 (2014) connects with its defaults.

// keyExchanges are the key exchange algorithms offered, best first.
func keyExchanges() []string {
	return []string{
		ssh.KeyExchangeMLKEM768X25519, ssh.KeyExchangeCurve25519,
		ssh.KeyExchangeECDHP256, ssh.KeyExchangeECDHP384, ssh.KeyExchangeECDHP521,
	}
}

// ciphers are the ciphers offered: AEADs, then AES-CTR (with an
// encrypt-then-MAC or SHA-2 MAC).
func ciphers() []string {
	return []string{
		ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305,
		ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR,
	}
}

// macs are the MACs offered (unused with the AEAD ciphers).
func macs() []string {
	return []string{ssh.HMACSHA256ETM, ssh.HMACSHA512ETM, ssh.HMACSHA256, ssh.HMACSHA512}
}

// publicKeyAuthAlgorithms are the signature algorithms accepted from
// clients' keys.
func publicKeyAuthAlgorithms() []string {
	return []string{
		ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256,
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512,
	}
}
