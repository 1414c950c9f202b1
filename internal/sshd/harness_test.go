//go:build linux

package sshd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/nictest"

	"golang.org/x/crypto/ssh"
)

// testServer is a Server on 127.0.0.1:0 with one authorized user key.
type testServer struct {
	srv     *Server
	cfg     Config
	addr    string
	port    string
	dir     string
	home    string     // the user's home directory in the test passwd file
	signer  ssh.Signer // in authorized_keys
	keyFile string     // signer's private key for OpenSSH
	cancel  context.CancelFunc
	served  chan error
}

// startServer starts a server; mod may adjust the configuration. The
// server is shut down when the test ends.
func startServer(tb testing.TB, mod func(*Config)) *testServer {
	tb.Helper()
	log := nictest.Logger(tb)
	dir := tb.TempDir()
	signer, keyFile := newUserKey(tb, dir, "id_user")
	writeAuthorizedKeys(tb, dir, authorizedLine(signer.PublicKey(), ""))
	cfg := Config{
		Dir:           filepath.Join(dir, "etc"),
		ShutdownGrace: 3 * time.Second,
		Env:           []string{"PATH=" + DefaultPath, "LANG=C.UTF-8"},
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg, log)
	if err != nil {
		tb.Fatal(err)
	}
	// Sessions run /bin/sh with a fresh home directory, so that the
	// machine's own shell start-up files cannot disturb the tests.
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		tb.Fatal(err)
	}
	srv.passwdPath = filepath.Join(dir, "passwd")
	passwd := fmt.Sprintf("root:x:0:0:root:%s:/bin/sh\n", home)
	if err := os.WriteFile(srv.passwdPath, []byte(passwd), 0o644); err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{
		srv: srv, cfg: cfg, addr: ln.Addr().String(), dir: dir, home: home,
		signer: signer, keyFile: keyFile, cancel: cancel, served: make(chan error, 1),
	}
	_, ts.port, _ = net.SplitHostPort(ts.addr)
	go func() { ts.served <- srv.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		srv.Close()
		select {
		case err := <-ts.served:
			if err != nil {
				tb.Errorf("Serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			tb.Errorf("Serve did not return after Close")
		}
	})
	return ts
}

// newUserKey creates an ed25519 key and writes its private half in
// OpenSSH format (mode 0600) to dir/name.
func newUserKey(tb testing.TB, dir, name string) (ssh.Signer, string) {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		tb.Fatal(err)
	}
	return signer, path
}

func authorizedLine(pub ssh.PublicKey, options string) string {
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if options != "" {
		line = options + " " + line
	}
	return line + " test@nicompute\n"
}

// writeAuthorizedKeys replaces authorized_keys atomically, as the miner's
// runtime does.
func writeAuthorizedKeys(tb testing.TB, dir string, lines ...string) {
	tb.Helper()
	etc := filepath.Join(dir, "etc")
	if err := os.MkdirAll(etc, 0o700); err != nil {
		tb.Fatal(err)
	}
	tmp := filepath.Join(etc, ".authorized_keys.tmp")
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "")), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(etc, AuthorizedKeysFile)); err != nil {
		tb.Fatal(err)
	}
}

func (ts *testServer) writePassword(tb testing.TB, password string) {
	tb.Helper()
	h, err := HashPassword(password)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts.cfg.Dir, PasswordFile), []byte(h+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// dial connects with Go's SSH client as user.
func (ts *testServer) dial(user string, auth ...ssh.AuthMethod) (*ssh.Client, error) {
	return ssh.Dial("tcp", ts.addr, &ssh.ClientConfig{
		User:            user,
		Auth:            auth,
		HostKeyCallback: ssh.FixedHostKey(ts.srv.HostKey()),
		Timeout:         10 * time.Second,
	})
}

func (ts *testServer) mustDial(tb testing.TB) *ssh.Client {
	tb.Helper()
	c, err := ts.dial("root", ssh.PublicKeys(ts.signer))
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// runResult is what a command produced.
type runResult struct {
	stdout, stderr string
	exit           int
	err            error // non-nil for anything but a clean exit status
}

// run runs command on a new session of c.
func run(tb testing.TB, c *ssh.Client, command string, setup func(*ssh.Session) error) runResult {
	tb.Helper()
	s, err := c.NewSession()
	if err != nil {
		tb.Fatalf("new session: %v", err)
	}
	defer s.Close()
	if setup != nil {
		if err := setup(s); err != nil {
			tb.Fatalf("session setup: %v", err)
		}
	}
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	err = s.Run(command)
	r := runResult{stdout: out.String(), stderr: errb.String()}
	var ee *ssh.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Signal() == "":
		r.exit = ee.ExitStatus()
	default:
		r.err = err
	}
	return r
}

// requireOpenSSH skips the test when the OpenSSH client is not installed.
func requireOpenSSH(tb testing.TB, bin string) string {
	tb.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		tb.Skipf("OpenSSH %s not installed: %v", bin, err)
	}
	return p
}

// sshArgs are the OpenSSH options that connect to ts with keyFile,
// non-interactively, trusting the host key blindly.
func (ts *testServer) sshArgs(keyFile string, portFlag string) []string {
	return []string{
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes",
		"-o", "LogLevel=ERROR",
		"-o", "ConnectTimeout=10",
		"-F", "/dev/null",
		"-i", keyFile,
		portFlag, ts.port,
	}
}

// openssh runs the OpenSSH client with args after the connection options
// and returns its stdout, stderr and exit code.
func (ts *testServer) openssh(tb testing.TB, keyFile string, stdin io.Reader, extra ...string) (string, string, int) {
	tb.Helper()
	return ts.opensshEnv(tb, nil, keyFile, stdin, extra...)
}

// opensshEnv is openssh with env added to the client's environment.
func (ts *testServer) opensshEnv(tb testing.TB, env []string, keyFile string, stdin io.Reader, extra ...string) (string, string, int) {
	tb.Helper()
	bin := requireOpenSSH(tb, "ssh")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := ts.sshArgs(keyFile, "-p")
	if slices.Contains(extra, "BatchMode=no") {
		// OpenSSH keeps the first value given for an option.
		i := slices.Index(args, "BatchMode=yes")
		args = slices.Delete(args, i-1, i+1)
	}
	args = append(args, extra...)
	cmd := exec.CommandContext(ctx, bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		tb.Fatalf("ssh: %v", err)
	}
	return out.String(), errb.String(), code
}

// readUntil reads r until the accumulated output contains want or the
// deadline passes; it returns what it read.
func readUntil(tb testing.TB, r io.Reader, want string, timeout time.Duration) string {
	tb.Helper()
	type chunk struct {
		b   []byte
		err error
	}
	ch := make(chan chunk, 1)
	var got []byte
	deadline := time.After(timeout)
	for !bytes.Contains(got, []byte(want)) {
		go func() {
			buf := make([]byte, 4096)
			n, err := r.Read(buf)
			ch <- chunk{buf[:n], err}
		}()
		select {
		case c := <-ch:
			got = append(got, c.b...)
			if c.err != nil && !bytes.Contains(got, []byte(want)) {
				tb.Fatalf("read: %v; waiting for %q, got %q", c.err, want, got)
			}
		case <-deadline:
			tb.Fatalf("timed out waiting for %q, got %q", want, got)
		}
	}
	return string(got)
}

// runCommand runs a local program with a time limit and returns its
// combined output.
func runCommand(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
