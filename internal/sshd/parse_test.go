//go:build linux

package sshd

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func testPublicKey(tb testing.TB) ssh.PublicKey {
	tb.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestParseAuthorizedKeys(t *testing.T) {
	k1, k2 := testPublicKey(t), testPublicKey(t)
	line := func(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }
	tests := []struct {
		name        string
		in          string
		wantKeys    int
		wantNoPTY   []bool
		wantSkipped []int // line numbers
	}{
		{name: "empty", in: ""},
		{name: "comments and blanks", in: "# hello\n\n   \n#" + line(k1) + "\n"},
		{name: "two keys, CRLF", in: line(k1) + " a@b\r\n" + line(k2) + "\r\n", wantKeys: 2, wantNoPTY: []bool{false, false}},
		{name: "garbage skipped", in: "garbage\n" + line(k1) + "\n", wantKeys: 1, wantNoPTY: []bool{false}, wantSkipped: []int{1}},
		{name: "honoured options", in: "no-pty,no-port-forwarding " + line(k1) + "\nrestrict,pty " + line(k2), wantKeys: 2, wantNoPTY: []bool{true, false}},
		{name: "command option skips the key", in: `command="/bin/date" ` + line(k1) + "\n" + line(k2), wantKeys: 1, wantNoPTY: []bool{false}, wantSkipped: []int{1}},
		{name: "environment option skips the key", in: `environment="A=b" ` + line(k1), wantSkipped: []int{1}},
		{name: "no final newline", in: line(k1), wantKeys: 1, wantNoPTY: []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, skipped := parseAuthorizedKeys([]byte(tt.in))
			if len(keys) != tt.wantKeys {
				t.Fatalf("got %d keys, want %d", len(keys), tt.wantKeys)
			}
			for i, k := range keys {
				if k.noPTY != tt.wantNoPTY[i] {
					t.Errorf("key %d noPTY = %v", i, k.noPTY)
				}
			}
			var lines []int
			for _, s := range skipped {
				lines = append(lines, s.line)
			}
			if !slices.Equal(lines, tt.wantSkipped) {
				t.Errorf("skipped lines %v, want %v", lines, tt.wantSkipped)
			}
		})
	}
}

func TestParseKeyOptions(t *testing.T) {
	tests := []struct {
		opts    []string
		want    keyRestrictions
		wantErr bool
	}{
		{opts: nil},
		{opts: []string{"restrict"}, want: keyRestrictions{noPTY: true, noPortForwarding: true}},
		{opts: []string{"restrict", "port-forwarding"}, want: keyRestrictions{noPTY: true}},
		{opts: []string{"NO-PTY"}, want: keyRestrictions{noPTY: true}},
		{opts: []string{"no-X11-forwarding", "no-agent-forwarding", "no-user-rc"}},
		{opts: []string{`from="*.example.com"`}, wantErr: true},
		{opts: []string{`permitopen="host:1"`}, wantErr: true},
		{opts: []string{"cert-authority"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.opts, ","), func(t *testing.T) {
			got, err := parseKeyOptions(tt.opts)
			if (err != nil) != tt.wantErr || !tt.wantErr && got != tt.want {
				t.Errorf("got %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestLookupAccount(t *testing.T) {
	passwd := "root:x:0:0:root:/root:/bin/bash\n" +
		"# comment:x:5:5::/:/bin/sh\n" +
		"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n" +
		"odd:x:1000:1000::relative:/bin/sh\n" +
		"short:x:1001\n"
	tests := []struct {
		name   string
		passwd string
		uid    int
		want   account
	}{
		{name: "root", passwd: passwd, uid: 0, want: account{"root", "/root", "/bin/bash"}},
		{name: "daemon", passwd: passwd, uid: 1, want: account{"daemon", "/usr/sbin", "/usr/sbin/nologin"}},
		{name: "relative home", passwd: passwd, uid: 1000, want: account{"odd", "/", "/bin/sh"}},
		{name: "malformed line", passwd: passwd, uid: 1001, want: account{"fallback", "/", ""}},
		{name: "commented line", passwd: passwd, uid: 5, want: account{"fallback", "/", ""}},
		{name: "no passwd, root", uid: 0, want: account{"root", "/root", ""}},
		{name: "no passwd, other", uid: 42, want: account{"fallback", "/", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lookupAccount([]byte(tt.passwd), tt.uid, "fallback"); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestResolveShell(t *testing.T) {
	tests := []struct {
		name   string
		login  string
		exists []string
		want   shellCmd
		wantOK bool
	}{
		{name: "passwd shell", login: "/bin/bash", exists: []string{"/bin/bash", "/bin/sh"}, want: shellCmd{"/bin/bash", "bash"}, wantOK: true},
		{name: "passwd shell missing", login: "/bin/zsh", exists: []string{"/bin/sh"}, want: shellCmd{"/bin/sh", "sh"}, wantOK: true},
		{name: "nologin", login: "/usr/sbin/nologin", exists: []string{"/usr/sbin/nologin", "/bin/sh"}, want: shellCmd{"/bin/sh", "sh"}, wantOK: true},
		{name: "relative", login: "bash", exists: []string{"bash", "/bin/sh"}, want: shellCmd{"/bin/sh", "sh"}, wantOK: true},
		{name: "busybox only", login: "", exists: []string{"/bin/busybox"}, want: shellCmd{"/bin/busybox", "sh"}, wantOK: true},
		{name: "nothing", login: "/bin/bash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := resolveShell(tt.login, func(p string) bool { return slices.Contains(tt.exists, p) })
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("got %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestAcceptClientEnv(t *testing.T) {
	tests := []struct {
		name, value string
		want        bool
	}{
		{"LANG", "C.UTF-8", true},
		{"_", "", true},
		{"a1", "x", true},
		{"LD_PRELOAD", "/x.so", true},
		{"1A", "x", false},
		{"A-B", "x", false},
		{"A B", "x", false},
		{"", "x", false},
		{"A=B", "x", false},
		{"SSH_TTY", "/dev/pts/9", false},
		{"FOO", "a\x00", false},
		{strings.Repeat("A", 257), "x", false},
		{"ÄÖ", "x", false},
	}
	for _, tt := range tests {
		if got := acceptClientEnv(tt.name, tt.value); got != tt.want {
			t.Errorf("acceptClientEnv(%q, %q) = %v, want %v", tt.name, tt.value, got, tt.want)
		}
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2", "junk", "=x", "A=3"}, "C=4", "B=5")
	want := []string{"A=3", "B=5", "C=4"}
	if !slices.Equal(got, want) {
		t.Errorf("mergeEnv = %q, want %q", got, want)
	}
	if v, ok := envValue(got, "B"); !ok || v != "5" {
		t.Errorf("envValue(B) = %q, %v", v, ok)
	}
	if _, ok := envValue(got, "Z"); ok {
		t.Error("envValue found a missing key")
	}
}

func encodeModes(modes ...terminalMode) string {
	var b []byte
	for _, m := range modes {
		b = append(b, m.op)
		b = binary.BigEndian.AppendUint32(b, m.val)
	}
	return string(append(b, 0))
}

func TestParsePTYRequest(t *testing.T) {
	tests := []struct {
		name      string
		payload   []byte
		wantModes []terminalMode
		wantErr   bool
	}{
		{
			name:      "xterm with modes",
			payload:   ssh.Marshal(ptyRequest{"xterm", 80, 24, 0, 0, encodeModes(terminalMode{ssh.ECHO, 0}, terminalMode{ssh.TTY_OP_ISPEED, 38400})}),
			wantModes: []terminalMode{{ssh.ECHO, 0}, {ssh.TTY_OP_ISPEED, 38400}},
		},
		{name: "no modes", payload: ssh.Marshal(ptyRequest{"vt100", 80, 24, 0, 0, ""})},
		{name: "undefined opcode ends the list", payload: ssh.Marshal(ptyRequest{"vt100", 80, 24, 0, 0, "\xa0junk"})},
		{name: "truncated mode", payload: ssh.Marshal(ptyRequest{"vt100", 80, 24, 0, 0, "\x35\x00\x00"}), wantErr: true},
		{name: "term with newline", payload: ssh.Marshal(ptyRequest{"x\nTERM", 80, 24, 0, 0, ""}), wantErr: true},
		{name: "term too long", payload: ssh.Marshal(ptyRequest{strings.Repeat("x", 300), 80, 24, 0, 0, ""}), wantErr: true},
		{name: "short payload", payload: []byte{0, 0, 0, 5, 'x'}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, modes, err := parsePTYRequest(tt.payload)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && !slices.Equal(modes, tt.wantModes) {
				t.Errorf("modes %v, want %v", modes, tt.wantModes)
			}
		})
	}
	// Too many modes.
	var many []terminalMode
	for range maxTermModes + 1 {
		many = append(many, terminalMode{ssh.ECHO, 1})
	}
	if _, err := parseTerminalModes([]byte(encodeModes(many...))); err == nil {
		t.Error("accepted more than maxTermModes modes")
	}
}

func TestClampCells(t *testing.T) {
	for in, want := range map[uint32]uint16{0: 0, 80: 80, 65535: 65535, 65536: 65535, 1 << 31: 65535} {
		if got := clampCells(in); got != want {
			t.Errorf("clampCells(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("Zq3vN8pL2xR7tY5wK9mB")
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := HashPassword("Zq3vN8pL2xR7tY5wK9mB")
	if h == h2 {
		t.Error("two hashes of one password are equal: no salt")
	}
	tests := []struct {
		hash, password string
		want           bool
	}{
		{h, "Zq3vN8pL2xR7tY5wK9mB", true},
		{h + "\n", "Zq3vN8pL2xR7tY5wK9mB", true},
		{h, "Zq3vN8pL2xR7tY5wK9m", false},
		{h, "", false},
		{"", "", false},
		{"sha256$$", "", false},
		{strings.Replace(h, "sha256", "md5", 1), "Zq3vN8pL2xR7tY5wK9mB", false},
	}
	for _, tt := range tests {
		if got := CheckPassword(tt.hash, tt.password); got != tt.want {
			t.Errorf("CheckPassword(%q, %q) = %v", tt.hash, tt.password, got)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	if _, err := (Config{}).withDefaults(); err == nil {
		t.Error("empty Dir accepted")
	}
	if _, err := (Config{Dir: "/x", MaxStartups: -1}).withDefaults(); err == nil {
		t.Error("negative limit accepted")
	}
	c, err := Config{Dir: "/x"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.User != "root" || c.MaxAuthTries != DefaultMaxAuthTries || c.MaxStartups != DefaultMaxStartups ||
		c.LoginGraceTime != DefaultLoginGraceTime || c.ShutdownGrace != DefaultShutdownGrace || c.MaxSessions != DefaultMaxSessions {
		t.Errorf("defaults: %+v", c)
	}
}

func TestEntrypoint(t *testing.T) {
	base := []string{"/.nicompute/bin/nicompute", "sshd", "--dir", "/etc/nicompute", "--listen", ":22"}
	for _, fwd := range []bool{true, false} {
		want := append(slices.Clone(base), "--allow-tcp-forwarding="+strconv.FormatBool(fwd))
		if got := Entrypoint(fwd); !slices.Equal(got, want) {
			t.Errorf("Entrypoint(%v) = %q", fwd, got)
		}
	}
}
