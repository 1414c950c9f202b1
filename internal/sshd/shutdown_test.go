//go:build linux

package sshd

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestShutdownDrains cancels Serve's context while a session runs: the
// listener closes, new sessions are refused, the running one finishes and
// reports its exit status, then Serve returns.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.ShutdownGrace = 20 * time.Second })
	c := ts.mustDial(t)
	idle := ts.mustDial(t) // no session: closed at once
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stdout, _ := s.StdoutPipe()
	if err := s.Start("echo started; /bin/busybox sleep 1; echo done; exit 4"); err != nil {
		t.Fatal(err)
	}
	readUntil(t, stdout, "started", 15*time.Second)
	pending, err := c.NewSession() // open, but no command yet
	if err != nil {
		t.Fatal(err)
	}
	defer pending.Close()
	start := time.Now()
	ts.cancel()

	// The listener closes.
	deadline := time.Now().Add(5 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", ts.addr, time.Second)
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after shutdown began")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.NewSession(); err == nil {
		t.Error("new session opened during shutdown")
	}
	var pendingErr strings.Builder
	pending.Stderr = &pendingErr
	var ee *ssh.ExitError
	if err := pending.Run("echo too late"); !errors.As(err, &ee) || ee.ExitStatus() != 255 ||
		!strings.Contains(pendingErr.String(), "shutting down") {
		t.Errorf("command on an open channel during shutdown: %v, stderr %q; want exit 255", err, pendingErr.String())
	}
	if err := idle.Wait(); err == nil {
		t.Log("idle connection closed")
	}

	rest, _ := io.ReadAll(stdout)
	if !strings.Contains(string(rest), "done") {
		t.Errorf("running session's output %q lacks its end", rest)
	}
	if err := s.Wait(); !errors.As(err, &ee) || ee.ExitStatus() != 4 {
		t.Errorf("running session ended with %v, want exit 4", err)
	}
	select {
	case err := <-ts.served:
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
		ts.served <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the session ended")
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("drain took %v for a 1 s command", d)
	}
	if err := ts.srv.Serve(t.Context(), mustListen(t)); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close = %v, want ErrServerClosed", err)
	}
}

func mustListen(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ln
}

// TestShutdownForced: a session that outlives the grace period and ignores
// SIGHUP is killed, and Close returns.
func TestShutdownForced(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.ShutdownGrace = 300 * time.Millisecond })
	c := ts.mustDial(t)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stdout, _ := s.StdoutPipe()
	if err := s.Start(`trap '' HUP; echo pid=$$; /bin/busybox sleep 60; echo survived`); err != nil {
		t.Fatal(err)
	}
	out := readUntil(t, stdout, "\n", 15*time.Second)
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(out, "pid=")))
	if err != nil {
		t.Fatalf("pid line %q", out)
	}
	start := time.Now()
	ts.srv.Close()
	if d := time.Since(start); d > ts.cfg.ShutdownGrace+killDelay+5*time.Second {
		t.Errorf("Close took %v", d)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(b), ") Z ") {
			t.Errorf("session process %d still running after Close: %s", pid, b)
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("killed session reported success")
		}
	case <-time.After(10 * time.Second):
		t.Error("client session not ended")
	}
}

// TestHangupOnDisconnect: when the client goes away, the session's
// process group gets SIGHUP and a command ignoring it gets EPIPE on its
// next write, instead of blocking on a full pipe.
func TestHangupOnDisconnect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		command string
	}{
		{name: "background job", command: `/bin/busybox sleep 60 & echo pid=$!; wait`},
		{name: "writer ignoring SIGHUP", command: `trap '' HUP; echo pid=$$; while :; do echo x; done`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, nil)
			c, err := ts.dial("root", ssh.PublicKeys(ts.signer))
			if err != nil {
				t.Fatal(err)
			}
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			stdout, _ := s.StdoutPipe()
			if err := s.Start(tt.command); err != nil {
				t.Fatal(err)
			}
			out := readUntil(t, stdout, "\n", 15*time.Second)
			line, _, _ := strings.Cut(out, "\n")
			pid, err := strconv.Atoi(strings.TrimPrefix(line, "pid="))
			if err != nil {
				t.Fatalf("pid line %q", out)
			}
			c.Close()
			deadline := time.Now().Add(10 * time.Second)
			for {
				b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
				if err != nil || strings.Contains(string(b), ") Z ") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("process %d alive after the client disconnected: %s", pid, b)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
