// Package nictest holds helpers for nicompute's tests: a slog logger that
// writes through testing.TB, free loopback ports, a Docker engine check,
// the busybox-based test image, a once-per-process build of the static
// nicompute binary, cleanup of labelled Docker objects, and a dendrite that
// sends requests as Bittensor's Python SDK does. Only _test.go files import
// it.
//
// BuildNicompute caches its result in a package-level sync.OnceValues and
// BuildTestImage serializes builds with a package-level mutex: the only
// package state in the project, acceptable in a test-only package because
// the binary and image are the same for every test in the process and
// building them per test would cost seconds each time.
package nictest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Logger returns a logger that writes through tb.Log at debug level and
// drops records once the test has finished (a late log from a goroutine
// would otherwise panic).
func Logger(tb testing.TB) *slog.Logger {
	tb.Helper()
	w := &tbWriter{tb: tb}
	tb.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct {
	tb   testing.TB
	mu   sync.Mutex
	done bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago, for
// services (such as a Docker port binding) that cannot listen on :0. It is
// chosen at random below Linux's default ephemeral range (32768–60999),
// so the outgoing connections other tests open by the thousand (the SSH
// flood tests) cannot take it before the service binds it, and with the
// 63 ports above it in the same band, for tests that use a range from it.
func FreePort(tb testing.TB) int {
	tb.Helper()
	const first, last = 20000, 32767 - 63
	for range 64 {
		var b [2]byte
		rand.Read(b[:])
		p := first + (int(b[0])<<8|int(b[1]))%(last-first+1)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// SSHKey returns a fresh ed25519 SSH signer.
func SSHKey(tb testing.TB) ssh.Signer {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatalf("ed25519 key: %v", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		tb.Fatalf("ssh signer: %v", err)
	}
	return s
}

// SyncBuffer is a bytes.Buffer that one goroutine may write while another
// reads it (a log handler's output, a process's stderr).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
