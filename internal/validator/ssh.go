package validator

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// newSSHKey returns an ephemeral ed25519 key and its authorized_keys line.
func newSSHKey() (ssh.Signer, string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, "", err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	return signer, line + " nicompute-validator-pog", nil
}

// dialSSH logs in to addr as user with signer. The lease's host key cannot
// be known in advance: it is accepted and its fingerprint returned. A
// freshly started container may not listen yet, so refused connections are
// retried until timeout; the handshake itself is bounded by the same
// deadline, and ctx cancels it.
func dialSSH(ctx context.Context, addr, user string, signer ssh.Signer, timeout time.Duration) (*ssh.Client, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error
	backoff := 100 * time.Millisecond
	for {
		c, fp, err := dialSSHOnce(ctx, addr, user, signer)
		if err == nil {
			return c, fp, nil
		}
		lastErr = err
		if !retrySSH(err) {
			return nil, "", err
		}
		select {
		case <-ctx.Done():
			return nil, "", fmt.Errorf("ssh %s: no SSH server within %s: %w", addr, timeout, lastErr)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// retrySSH reports whether a failed login may succeed on a new try: the
// port refused the connection, or a port forwarder (Docker's) accepted it
// and closed it at once because the server behind it is not listening yet.
func retrySSH(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

func dialSSHOnce(ctx context.Context, addr, user string, signer ssh.Signer) (*ssh.Client, string, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, "", err
	}
	// The handshake has no context of its own: closing the connection when
	// ctx ends (or its deadline passes) interrupts it.
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	var hostKey string
	cfg := &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			hostKey = ssh.FingerprintSHA256(key)
			return nil
		},
	}
	conn, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if !stop() || err != nil {
		nc.Close()
		if err == nil {
			conn.Close()
			err = ctx.Err()
		}
		return nil, "", fmt.Errorf("ssh %s: %w", addr, err)
	}
	_ = nc.SetDeadline(time.Time{})
	return ssh.NewClient(conn, chans, reqs), hostKey, nil
}

// uploadConcurrency is the SFTP write requests in flight per upload.
const uploadConcurrency = 16

// ctxOr returns ctx's error when it ended (the cause of a closed session),
// else err.
func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

// session is one exec session with its pipes.
type session struct {
	s      *ssh.Session
	stdin  io.WriteCloser
	stdout io.Reader
	stderr *tailBuffer
}

// startExec runs command (a fixed command line of the validator's own
// making) in a new session of c.
func startExec(c *ssh.Client, command string) (*session, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, fmt.Errorf("ssh session: %w", err)
	}
	in, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	out, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	tail := &tailBuffer{max: 2048}
	s.Stderr = tail
	if err := s.Start(command); err != nil {
		s.Close()
		return nil, fmt.Errorf("start %q: %w", command, err)
	}
	return &session{s: s, stdin: in, stdout: out, stderr: tail}, nil
}

// settle waits up to d for the worker to exit, so that its last words on
// stderr have arrived when the session failed.
func (x *session) settle(d time.Duration) {
	done := make(chan struct{})
	go func() {
		_ = x.s.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// close ends the session: end of input first (the worker exits at EOF),
// then the channel.
func (x *session) close() {
	x.stdin.Close()
	x.s.Close()
}

// output runs command and returns at most limit bytes of its stdout, or an
// error when it fails, prints more, or does not finish by ctx.
func output(ctx context.Context, c *ssh.Client, command string, limit int64) ([]byte, error) {
	x, err := startExec(c, command)
	if err != nil {
		return nil, err
	}
	defer x.close()
	x.stdin.Close()
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(x.stdout, limit+1))
		if err == nil && int64(len(b)) > limit {
			err = fmt.Errorf("more than %d bytes of output", limit)
		}
		if err == nil {
			err = x.s.Wait()
		}
		ch <- res{b, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("%s: %w%s", command, r.err, x.stderr.suffix())
		}
		return r.b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

// suffix is ": <last line of stderr>" (printable, short), or "".
func (t *tailBuffer) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := bytes.Split(bytes.TrimSpace(t.b), []byte("\n"))
	last := strings.TrimSpace(string(lines[len(lines)-1]))
	if last == "" {
		return ""
	}
	return ": " + clean(last, 200)
}

// clean keeps printable ASCII of s, at most n bytes.
func clean(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= n {
			b.WriteString("…")
			break
		}
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}
