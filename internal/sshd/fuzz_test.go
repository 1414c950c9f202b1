//go:build linux

package sshd

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// The files in Dir and the channel-request payloads come from outside the
// server (the miner's runtime, the renter, any client); their parsers must
// neither panic nor accept what they should not.

func FuzzParseAuthorizedKeys(f *testing.F) {
	f.Add([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZ6CK1r1Kqp8l7Wm9u5J2bV8n7x3JcIkc9a0fZgR2zq a@b\n"))
	f.Add([]byte(`restrict,pty,command="x" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZ6CK1r1Kqp8l7Wm9u5J2bV8n7x3JcIkc9a0fZgR2zq`))
	f.Add([]byte("# comment\n\n\r\nno-pty ssh-rsa AAAA\n"))
	f.Add([]byte(`from="1.2.3.4",no-pty ssh-ed25519 AAAA`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, skipped := parseAuthorizedKeys(data)
		lines := strings.Count(string(data), "\n") + 1
		if len(keys)+len(skipped) > lines {
			t.Fatalf("%d keys and %d skipped lines from %d lines", len(keys), len(skipped), lines)
		}
		for _, k := range keys {
			if k.key == nil {
				t.Fatal("nil key accepted")
			}
		}
	})
}

func FuzzParsePTYRequest(f *testing.F) {
	f.Add(ssh.Marshal(ptyRequest{"xterm-256color", 80, 24, 640, 480, encodeModes(terminalMode{ssh.ECHO, 1}, terminalMode{ssh.VINTR, 3})}))
	f.Add(ssh.Marshal(ptyRequest{"", 0, 0, 0, 0, ""}))
	f.Add([]byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, payload []byte) {
		p, modes, err := parsePTYRequest(payload)
		if err != nil {
			return
		}
		if len(p.Term) > maxTermLen || strings.ContainsAny(p.Term, "\x00=\n") {
			t.Fatalf("accepted TERM %q", p.Term)
		}
		if len(modes) > maxTermModes {
			t.Fatalf("%d modes", len(modes))
		}
		for _, m := range modes {
			if m.op == 0 || m.op >= 160 {
				t.Fatalf("opcode %d returned", m.op)
			}
		}
	})
}

func FuzzParsePasswd(f *testing.F) {
	f.Add([]byte("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n"), 0)
	f.Add([]byte("::0::::\n"), 0)
	f.Add([]byte("a:b:1:c:d:relative:sh"), 1)
	f.Fuzz(func(t *testing.T, passwd []byte, uid int) {
		a := lookupAccount(passwd, uid, "fallback")
		if !strings.HasPrefix(a.home, "/") {
			t.Fatalf("home %q is not absolute", a.home)
		}
		if a.name == "" {
			t.Fatal("empty account name")
		}
	})
}

func FuzzCheckPassword(f *testing.F) {
	f.Add("sha256$00112233445566778899aabbccddeeff$00", "pw")
	f.Add("sha256$$", "")
	f.Add("$$$", "x")
	f.Fuzz(func(t *testing.T, hash, password string) {
		if CheckPassword(hash, password) {
			// Only a real salted SHA-256 of password can match.
			parts := strings.Split(strings.TrimSpace(hash), "$")
			if len(parts) != 3 || len(parts[1]) < 32 || len(parts[2]) != 64 {
				t.Fatalf("malformed hash %q matched", hash)
			}
		}
	})
}

func FuzzAcceptClientEnv(f *testing.F) {
	f.Add("LANG", "C.UTF-8")
	f.Add("SSH_TTY", "x")
	f.Add("A=B", "x")
	f.Fuzz(func(t *testing.T, name, value string) {
		if !acceptClientEnv(name, value) {
			return
		}
		if strings.ContainsAny(name, "=\x00 -") || strings.HasPrefix(name, "SSH_") || strings.ContainsRune(value, 0) || name == "" {
			t.Fatalf("accepted %q=%q", name, value)
		}
		if name[0] >= '0' && name[0] <= '9' {
			t.Fatalf("accepted name %q starting with a digit", name)
		}
	})
}

// FuzzParseTCPIPForward: whatever address a client asks a remote forward
// to listen on, the server listens on loopback.
func FuzzParseTCPIPForward(f *testing.F) {
	for _, req := range []tcpipForward{{"localhost", 8080}, {"", 0}, {"0.0.0.0", 22}, {"::", 443}, {"*", 1}, {"10.0.0.1", 80}, {"::ffff:10.0.0.1", 80}, {"fe80::1%eth0", 9}} {
		f.Add(ssh.Marshal(req))
	}
	f.Add([]byte{0, 0, 0, 9, 'l', 'o', 'c'})
	f.Add(append(ssh.Marshal(tcpipForward{"a", 1}), 0xff))
	f.Fuzz(func(t *testing.T, payload []byte) {
		req, addr, ok := parseTCPIPForward(payload)
		if !ok {
			return
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || (host != "127.0.0.1" && host != "::1") {
			t.Fatalf("request %+v listens on %q", req, addr)
		}
		if p, err := strconv.Atoi(port); err != nil || p != int(req.Port) || p > 65535 {
			t.Fatalf("request %+v listens on port %q", req, port)
		}
	})
}
