//go:build linux

package sshd

import (
	"bufio"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestAuthGoClient(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	stranger, _ := newUserKey(t, t.TempDir(), "stranger")
	const password = "correct-horse-battery-staple-42"

	tests := []struct {
		name         string
		passwordFile bool
		user         string
		auth         ssh.AuthMethod
		wantOK       bool
	}{
		{name: "authorized key", user: "root", auth: ssh.PublicKeys(ts.signer), wantOK: true},
		{name: "unknown key", user: "root", auth: ssh.PublicKeys(stranger)},
		{name: "authorized key, other user", user: "ubuntu", auth: ssh.PublicKeys(ts.signer)},
		{name: "password without password file", user: "root", auth: ssh.Password(password)},
		{name: "password", passwordFile: true, user: "root", auth: ssh.Password(password), wantOK: true},
		{name: "wrong password", passwordFile: true, user: "root", auth: ssh.Password(password + "x")},
		{name: "password, other user", passwordFile: true, user: "admin", auth: ssh.Password(password)},
		{name: "key with password file", passwordFile: true, user: "root", auth: ssh.PublicKeys(ts.signer), wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pw := filepath.Join(ts.cfg.Dir, PasswordFile)
			if tt.passwordFile {
				ts.writePassword(t, password)
				t.Cleanup(func() { os.Remove(pw) })
			}
			c, err := ts.dial(tt.user, tt.auth)
			if (err == nil) != tt.wantOK {
				t.Fatalf("dial error = %v, want success %v", err, tt.wantOK)
			}
			if err != nil {
				return
			}
			defer c.Close()
			if r := run(t, c, "echo ok", nil); r.stdout != "ok\n" || r.exit != 0 || r.err != nil {
				t.Errorf("run = %+v", r)
			}
		})
	}
}

func TestAuthOpenSSH(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	_, strangerFile := newUserKey(t, t.TempDir(), "stranger")

	t.Run("authorized key", func(t *testing.T) {
		out, stderr, code := ts.openssh(t, ts.keyFile, nil, "root@127.0.0.1", "echo", "hello")
		if code != 0 || out != "hello\n" {
			t.Fatalf("code %d, stdout %q, stderr %q", code, out, stderr)
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		out, stderr, code := ts.openssh(t, strangerFile, nil, "root@127.0.0.1", "echo", "hello")
		if code != 255 || out != "" || !strings.Contains(stderr, "Permission denied (publickey)") {
			t.Fatalf("code %d, stdout %q, stderr %q", code, out, stderr)
		}
	})
}

// TestPasswordOpenSSH logs in the way SN27 renters do: `ssh root@host`
// and a password, supplied here through SSH_ASKPASS.
func TestPasswordOpenSSH(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	dir := t.TempDir()
	const password = "Zq3vN8pL2xR7tY5wK9mB" // 20 characters, like a lease password
	askpass := filepath.Join(dir, "askpass")
	passFile := filepath.Join(dir, "pass")
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\nexec cat "+passFile+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	login := func(t *testing.T, try string) (string, string, int) {
		if err := os.WriteFile(passFile, []byte(try+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env := []string{"SSH_ASKPASS=" + askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0"}
		return ts.opensshEnv(t, env, "/dev/null", nil,
			"-o", "BatchMode=no", "-o", "PubkeyAuthentication=no",
			"-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=1",
			"root@127.0.0.1", "echo", "in")
	}
	// The subtests share the password file, so they run in order.
	t.Run("no password file", func(t *testing.T) {
		_, stderr, code := login(t, password)
		if code != 255 || !strings.Contains(stderr, "Permission denied (publickey)") {
			t.Fatalf("code %d, stderr %q", code, stderr)
		}
	})
	ts.writePassword(t, password)
	t.Run("right password", func(t *testing.T) {
		out, stderr, code := login(t, password)
		if code != 0 || out != "in\n" {
			t.Fatalf("code %d, stdout %q, stderr %q", code, out, stderr)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		_, stderr, code := login(t, password[:19])
		if code != 255 || !strings.Contains(stderr, "Permission denied") {
			t.Fatalf("code %d, stderr %q", code, stderr)
		}
	})
}

// TestAuthorizedKeysReplaced is exchange-key: a new authorized_keys takes
// effect for the next login while existing sessions go on.
func TestAuthorizedKeysReplaced(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	old := ts.mustDial(t)
	s, err := old.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stdin, _ := s.StdinPipe()
	stdout, _ := s.StdoutPipe()
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	stdin.Write([]byte("echo one\n"))
	readUntil(t, stdout, "one\n", 10*time.Second)

	newSigner, newKeyFile := newUserKey(t, t.TempDir(), "new")
	writeAuthorizedKeys(t, ts.dir, authorizedLine(newSigner.PublicKey(), ""))

	if c, err := ts.dial("root", ssh.PublicKeys(ts.signer)); err == nil {
		c.Close()
		t.Fatal("old key still accepted for a new login")
	}
	c, err := ts.dial("root", ssh.PublicKeys(newSigner))
	if err != nil {
		t.Fatalf("new key refused: %v", err)
	}
	defer c.Close()
	if r := run(t, c, "echo new", nil); r.stdout != "new\n" {
		t.Errorf("new key session: %+v", r)
	}
	if out, stderr, code := ts.openssh(t, newKeyFile, nil, "root@127.0.0.1", "echo", "x"); code != 0 || out != "x\n" {
		t.Errorf("OpenSSH with the new key: code %d, %q, %q", code, out, stderr)
	}
	if _, _, code := ts.openssh(t, ts.keyFile, nil, "root@127.0.0.1", "true"); code != 255 {
		t.Errorf("OpenSSH with the old key: code %d, want 255", code)
	}

	// The existing session still runs.
	stdin.Write([]byte("echo two\nexit 6\n"))
	readUntil(t, stdout, "two\n", 10*time.Second)
	if err := s.Wait(); err == nil || err.(*ssh.ExitError).ExitStatus() != 6 {
		t.Errorf("existing session ended with %v, want exit 6", err)
	}
}

func TestAuthorizedKeyOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		options   string
		wantLogin bool
		wantPTY   bool
	}{
		{name: "none", wantLogin: true, wantPTY: true},
		{name: "no-pty", options: "no-pty", wantLogin: true},
		{name: "restrict", options: "restrict", wantLogin: true},
		{name: "restrict,pty", options: "restrict,pty", wantLogin: true, wantPTY: true},
		{name: "no-agent-forwarding", options: "no-agent-forwarding,no-X11-forwarding", wantLogin: true, wantPTY: true},
		{name: "command is not honoured so the key is skipped", options: `command="echo hi"`},
		{name: "from is not honoured so the key is skipped", options: `from="10.0.0.1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, nil)
			writeAuthorizedKeys(t, ts.dir, "# comment\n", "garbage line\n", authorizedLine(ts.signer.PublicKey(), tt.options))
			c, err := ts.dial("root", ssh.PublicKeys(ts.signer))
			if (err == nil) != tt.wantLogin {
				t.Fatalf("dial error %v, want login %v", err, tt.wantLogin)
			}
			if err != nil {
				return
			}
			defer c.Close()
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = s.RequestPty("xterm", 24, 80, nil)
			if (err == nil) != tt.wantPTY {
				t.Errorf("pty-req error %v, want pty %v", err, tt.wantPTY)
			}
		})
	}
}

func TestMaxAuthTries(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.MaxAuthTries = 3 })
	ts.writePassword(t, "a-long-enough-password-1")
	tries := 0
	_, err := ts.dial("root", ssh.RetryableAuthMethod(ssh.PasswordCallback(func() (string, error) {
		tries++
		return "wrong", nil
	}), 20))
	if err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	if tries != 3 {
		t.Errorf("server allowed %d password attempts, want 3", tries)
	}
}

func TestVersionAndLimits(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) {
		c.MaxStartups = 2
		c.LoginGraceTime = 2 * time.Second
	})
	// readVersion connects and reads the server's identification line.
	readVersion := func(t *testing.T) (net.Conn, string) {
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(nc).ReadString('\n')
		return nc, line
	}
	start := time.Now()
	nc1, v := readVersion(t)
	if v != "SSH-2.0-nicompute\r\n" {
		t.Fatalf("version line %q", v)
	}
	nc2, v2 := readVersion(t)
	if v2 != "SSH-2.0-nicompute\r\n" {
		t.Fatalf("second connection: version line %q", v2)
	}
	// Two connections are authenticating: a third waits until their
	// protection lapses, then takes the place of the older, which closes.
	_, v3 := readVersion(t)
	if v3 != "SSH-2.0-nicompute\r\n" {
		t.Errorf("third connection: version line %q", v3)
	}
	if d := time.Since(start); d < DefaultStartupProtection-50*time.Millisecond {
		t.Errorf("third connection admitted after %v, within the protection period %v", d, DefaultStartupProtection)
	}
	nc1.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 64)
	for {
		_, err := nc1.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the oldest connection is still open after a third was admitted")
		}
		if err != nil {
			break
		}
	}
	// The login grace time closes the silent connections.
	nc2.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err := nc2.Read(buf); err != nil {
			break
		}
	}
	if d := time.Since(start); d < 1500*time.Millisecond || d > 8*time.Second {
		t.Errorf("unauthenticated connection open for %v, want about 2s", d)
	}
	// With the slots free again a client gets in.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := ts.dial("root", ssh.PublicKeys(ts.signer))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("login after the grace time: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestHostKeyPersisted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s1, err := New(Config{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s1.Close()
	path := filepath.Join(dir, HostKeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("host key mode %v, want 0600", fi.Mode().Perm())
	}
	s2, err := New(Config{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if string(s1.HostKey().Marshal()) != string(s2.HostKey().Marshal()) {
		t.Error("host key changed across restarts")
	}
	if s1.HostKey().Type() != ssh.KeyAlgoED25519 {
		t.Errorf("host key type %s", s1.HostKey().Type())
	}
	// OpenSSH reads the file.
	if kg, err := exec.LookPath("ssh-keygen"); err == nil {
		out, err := runCommand(kg, "-y", "-f", path)
		if err != nil {
			t.Fatalf("ssh-keygen -y: %v: %s", err, out)
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(out))
		if err != nil || string(pub.Marshal()) != string(s1.HostKey().Marshal()) {
			t.Errorf("ssh-keygen derived %q (%v)", out, err)
		}
	}
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Dir: dir}, nil); err == nil {
		t.Error("New with a corrupt host key succeeded")
	}
}
