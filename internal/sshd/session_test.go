//go:build linux

package sshd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"
)

func TestExecGoClient(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	c := ts.mustDial(t)
	tests := []struct {
		name       string
		command    string
		stdin      string
		env        map[string]string
		wantStdout string
		wantStderr string
		wantExit   int
	}{
		{name: "stdout and stderr", command: "echo out; echo err >&2", wantStdout: "out\n", wantStderr: "err\n"},
		{name: "exit 3", command: "exit 3", wantExit: 3},
		{name: "missing command", command: "nicompute-no-such-command", wantExit: 127},
		{name: "stdin to EOF", command: "/bin/busybox wc -c", stdin: strings.Repeat("x", 100000), wantStdout: "100000\n"},
		{name: "empty command", command: "", wantExit: 0},
		{name: "env", command: `printf '%s|%s' "$FOO" "$LC_ALL"`, env: map[string]string{"FOO": "bar baz", "LC_ALL": "C"}, wantStdout: "bar baz|C"},
		{name: "base environment", command: `printf '%s' "$LANG"`, wantStdout: "C.UTF-8"},
		{name: "login variables", command: `printf '%s|%s|%s|%s|%s' "$HOME" "$USER" "$LOGNAME" "$PWD" "$SHELL"`, wantStdout: ts.home + "|root|root|" + ts.home + "|/bin/sh"},
		{name: "no terminal", command: `tty`, wantStdout: "not a tty\n", wantExit: 1},
		{name: "large output", command: "/bin/busybox head -c 3000000 /dev/zero", wantStdout: strings.Repeat("\x00", 3000000)},
		{name: "large output and exit code", command: "/bin/busybox head -c 1000000 /dev/zero; exit 9", wantStdout: strings.Repeat("\x00", 1000000), wantExit: 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, c, tt.command, func(s *ssh.Session) error {
				for k, v := range tt.env {
					if err := s.Setenv(k, v); err != nil {
						return err
					}
				}
				s.Stdin = strings.NewReader(tt.stdin)
				return nil
			})
			if r.err != nil {
				t.Fatalf("run: %v", r.err)
			}
			if r.stdout != tt.wantStdout {
				t.Errorf("stdout %.100q (%d bytes), want %.100q (%d bytes)", r.stdout, len(r.stdout), tt.wantStdout, len(tt.wantStdout))
			}
			if tt.name != "missing command" && r.stderr != tt.wantStderr {
				t.Errorf("stderr %q, want %q", r.stderr, tt.wantStderr)
			}
			if r.exit != tt.wantExit {
				t.Errorf("exit %d, want %d", r.exit, tt.wantExit)
			}
		})
	}
}

func TestExecOpenSSH(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantStdout string
		wantStderr string
		wantExit   int
	}{
		{name: "stdout and stderr", args: []string{"echo out; echo err >&2"}, wantStdout: "out\n", wantStderr: "err\n"},
		{name: "exit 3", args: []string{"exit 3"}, wantExit: 3},
		{name: "missing command", args: []string{"nicompute-no-such-command"}, wantExit: 127},
		{name: "stdin", args: []string{"/bin/busybox tr a-z A-Z"}, stdin: "hello\n", wantStdout: "HELLO\n"},
		{name: "SetEnv", args: []string{"-o", "SetEnv=FOO=from-client", "root@127.0.0.1", `echo "$FOO"`}, wantStdout: "from-client\n"},
		{name: "large output", args: []string{"/bin/busybox head -c 2000000 /dev/zero; exit 8"}, wantStdout: strings.Repeat("\x00", 2000000), wantExit: 8},
		{name: "shell without terminal", args: []string{"-T", "root@127.0.0.1"}, stdin: "echo in-shell\nexit 4\n", wantStdout: "in-shell\n", wantExit: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := tt.args
			if !strings.Contains(strings.Join(args, " "), "root@") {
				args = append([]string{"root@127.0.0.1"}, args...)
			}
			out, stderr, code := ts.openssh(t, ts.keyFile, strings.NewReader(tt.stdin), args...)
			if out != tt.wantStdout {
				t.Errorf("stdout %.100q (%d bytes), want %.100q (%d bytes)", out, len(out), tt.wantStdout, len(tt.wantStdout))
			}
			if tt.name != "missing command" && stderr != tt.wantStderr {
				t.Errorf("stderr %q, want %q", stderr, tt.wantStderr)
			}
			if tt.name == "missing command" && !strings.Contains(stderr, "not found") {
				t.Errorf("stderr %q, want a not-found message", stderr)
			}
			if code != tt.wantExit {
				t.Errorf("exit %d, want %d", code, tt.wantExit)
			}
		})
	}
}

func TestEnvRequests(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	c := ts.mustDial(t)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct {
		name, value string
		wantOK      bool
	}{
		{"FOO", "bar", true},
		{"_x9", "", true},
		{"LD_PRELOAD", "", true},
		{"9LIVES", "x", false},
		{"BAD-NAME", "x", false},
		{"", "x", false},
		{"SSH_CONNECTION", "spoofed", false},
		{"NUL", "a\x00b", false},
	}
	for _, tt := range tests {
		if err := s.Setenv(tt.name, tt.value); (err == nil) != tt.wantOK {
			t.Errorf("Setenv(%q) error %v, want ok %v", tt.name, err, tt.wantOK)
		}
	}
	out, err := s.Output(`printf '%s|%s' "$FOO" "${SSH_CONNECTION%% *}"`)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "bar|127.0.0.1" {
		t.Errorf("environment gave %q", out)
	}
}

func TestEnvLimits(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	c := ts.mustDial(t)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	accepted := 0
	for i := range 100 {
		if s.Setenv("V"+strings.Repeat("x", i), "1") == nil {
			accepted++
		}
	}
	if accepted != maxEnvVars {
		t.Errorf("accepted %d variables, want %d", accepted, maxEnvVars)
	}
	s2, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Setenv("BIG", strings.Repeat("x", maxEnvBytes)); err == nil {
		t.Error("accepted a variable larger than the limit")
	}
}

// TestPTYGoClient runs a shell on a terminal: the client's size and modes
// apply, a window change reaches the shell, stderr comes through the
// terminal, and the exit status follows.
func TestPTYGoClient(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	c := ts.mustDial(t)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	modes := ssh.TerminalModes{ssh.ECHO: 0, ssh.ICANON: 1, ssh.VINTR: 3}
	if err := s.RequestPty("xterm-256color", 24, 80, modes); err != nil {
		t.Fatal(err)
	}
	stdin, _ := s.StdinPipe()
	stdout, _ := s.StdoutPipe()
	var stderr bytes.Buffer
	s.Stderr = &stderr
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "stty size; echo TERM=$TERM; stty -a | grep -o -- '-echo ' ; echo er''r >&2\n")
	out := readUntil(t, stdout, "err", 15*time.Second)
	for _, want := range []string{"24 80", "TERM=xterm-256color", "-echo"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output %q lacks %q", out, want)
		}
	}
	if err := s.WindowChange(40, 120); err != nil {
		t.Fatal(err)
	}
	// Requests and data travel on different queues, so the resize may
	// land after the next command has started: ask until it shows.
	buf := &syncBuffer{}
	go io.Copy(buf, stdout)
	for i := 0; i < 50 && !buf.waitFor("40 120", 200*time.Millisecond); i++ {
		io.WriteString(stdin, "stty size\n")
	}
	if !strings.Contains(buf.String(), "40 120") {
		t.Errorf("window change not seen; output %q", buf.String())
	}
	io.WriteString(stdin, "exit 7\n")
	err = s.Wait()
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 7 {
		t.Errorf("Wait = %v, want exit 7", err)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr under a terminal got %q; output belongs on the terminal", stderr.String())
	}
}

// TestPTYOpenSSH drives `ssh -tt` from a local terminal, so the client
// sends its real window size and a window-change when that terminal is
// resized.
func TestPTYOpenSSH(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	bin := requireOpenSSH(t, "ssh")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append(ts.sshArgs(ts.keyFile, "-p"), "-tt", "root@127.0.0.1")
	cmd := exec.CommandContext(ctx, bin, args...)
	local, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	out := &syncBuffer{}
	go io.Copy(out, local)
	io.WriteString(local, "stty size\n")
	if !out.waitFor("24 80", 20*time.Second) {
		t.Fatalf("initial size not seen; output %q", out.String())
	}
	if err := pty.Setsize(local, &pty.Winsize{Rows: 30, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	// The client notices SIGWINCH asynchronously; ask until it has.
	for i := 0; i < 50 && !out.waitFor("30 100", 200*time.Millisecond); i++ {
		io.WriteString(local, "stty size\n")
	}
	if !strings.Contains(out.String(), "30 100") {
		t.Errorf("window change not seen; output %q", out.String())
	}
	io.WriteString(local, "exit 5\n")
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 5 {
		t.Errorf("ssh -tt ended with %v, want exit 5", err)
	}
}

// syncBuffer collects output written by one goroutine for another to
// inspect.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor reports whether want appeared in the buffer within timeout.
func (s *syncBuffer) waitFor(want string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(s.String(), want) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSignals(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	c := ts.mustDial(t)
	for _, sig := range []ssh.Signal{ssh.SIGTERM, ssh.SIGINT, ssh.SIGUSR1, ssh.SIGKILL} {
		t.Run(string(sig), func(t *testing.T) {
			t.Parallel()
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			stdout, _ := s.StdoutPipe()
			if err := s.Start("echo ready; exec /bin/busybox sleep 30"); err != nil {
				t.Fatal(err)
			}
			readUntil(t, stdout, "ready", 15*time.Second)
			time.Sleep(50 * time.Millisecond) // let the shell exec sleep
			if err := s.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- s.Wait() }()
			select {
			case err = <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("signal did not end the command")
			}
			var ee *ssh.ExitError
			if !errors.As(err, &ee) || ee.Signal() != string(sig) {
				t.Errorf("Wait = %v, want exit-signal %s", err, sig)
			}
		})
	}
}

// TestPTYBackgroundJob checks that a job left running in the background on
// the terminal does not hold the session open after the shell exits.
func TestPTYBackgroundJob(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	c := ts.mustDial(t)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm", 24, 80, nil); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	s.Stdout = &out
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		done <- s.Run("/bin/busybox nohup /bin/busybox sleep 20 >/dev/null 2>&1 & echo started; exit 2")
	}()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("session held open by a background job")
	}
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 2 {
		t.Errorf("Run = %v, want exit 2", err)
	}
	if !strings.Contains(out.String(), "started") {
		t.Errorf("output %q", out.String())
	}
	t.Logf("session with a background job took %v", time.Since(start))
}

func TestSubsystemsAndRequests(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	c := ts.mustDial(t)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestSubsystem("nosuch"); err == nil {
		t.Error("unknown subsystem accepted")
	}
	if ok, _ := s.SendRequest("x11-req", true, nil); ok {
		t.Error("x11-req accepted")
	}
	if ok, _ := s.SendRequest("auth-agent-req@openssh.com", true, nil); ok {
		t.Error("agent forwarding accepted")
	}
	if err := s.Run("true"); err != nil {
		t.Errorf("run after refused requests: %v", err)
	}
	// Unix-socket forwarding is not offered (TCP forwarding is, see
	// forward_test.go).
	if ok, _, err := c.SendRequest("streamlocal-forward@openssh.com", true, ssh.Marshal(struct{ Path string }{"/tmp/x.sock"})); err != nil || ok {
		t.Errorf("streamlocal-forward = %v, %v; want refused", ok, err)
	}
}

// TestMaxSessions bounds concurrent sessions per connection.
func TestMaxSessions(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.MaxSessions = 2 })
	c := ts.mustDial(t)
	var open []*ssh.Session
	defer func() {
		for _, s := range open {
			s.Close()
		}
	}()
	for range 2 {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
	}
	if s, err := c.NewSession(); err == nil {
		s.Close()
		t.Fatal("third session opened with MaxSessions 2")
	}
	open[0].Close()
	open = open[1:]
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, err := c.NewSession()
		if err == nil {
			open = append(open, s)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session after closing one: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPTYOutputComplete checks that a terminal's output written just
// before the command exits all reaches the client.
func TestPTYOutputComplete(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	c := ts.mustDial(t)
	for i := range 3 {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RequestPty("xterm", 24, 80, nil); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		s.Stdout = &out
		err = s.Run("/bin/busybox seq 1 100000; exit 3")
		s.Close()
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
			t.Errorf("run %d: %v, want exit 3", i, err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\r\n")
		if len(lines) != 100000 || lines[len(lines)-1] != "100000" {
			t.Fatalf("run %d: %d lines, last %q", i, len(lines), lines[len(lines)-1])
		}
	}
}
