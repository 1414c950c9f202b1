//go:build linux

package sshd

import (
	"encoding/binary"
	"testing"
)

// packet frames an unencrypted SSH binary packet (RFC 4253 §6) with
// message number typ.
func packet(typ byte, payload ...byte) []byte {
	pad := 4
	length := 1 + 1 + len(payload) + pad
	b := binary.BigEndian.AppendUint32(nil, uint32(length))
	b = append(b, byte(pad), typ)
	b = append(b, payload...)
	return append(b, make([]byte, pad)...)
}

func TestHandshakeScanner(t *testing.T) {
	kexinit := packet(msgKexInit, make([]byte, 300)...)
	ecdh := packet(30, make([]byte, 36)...)
	newkeys := packet(msgNewKeys)
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	tests := []struct {
		name   string
		stream []byte
		want   int
		done   bool
	}{
		{"nothing", nil, stageConnected, false},
		{"half a version line", []byte("SSH-2.0-Open"), stageConnected, false},
		{"version line", []byte("SSH-2.0-OpenSSH_9.2\r\n"), stageVersion, false},
		{"version line ending in LF only", []byte("SSH-2.0-x\n"), stageVersion, false},
		{"other lines first", []byte("hello\r\nworld\r\nSSH-2.0-x\r\n"), stageVersion, false},
		{"a line that only starts like one", []byte("SSX-2.0-x\r\n"), stageConnected, false},
		{"kexinit", cat([]byte("SSH-2.0-x\r\n"), kexinit), stageKexInit, false},
		{"key exchange message", cat([]byte("SSH-2.0-x\r\n"), kexinit, ecdh), stageKexMethod, false},
		{"newkeys", cat([]byte("SSH-2.0-x\r\n"), kexinit, ecdh, newkeys, []byte("encrypted…")), stageNewKeys, true},
		{"kexinit without a version line", kexinit, stageConnected, true},
		{"version line too long", cat([]byte("SSH-2.0-"), make([]byte, 300)), stageConnected, true},
		{"packet too long", cat([]byte("SSH-2.0-x\r\n"), []byte{0x7f, 0, 0, 0, 4, msgKexInit}), stageVersion, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, chunk := range []int{1, 7, len(tt.stream) + 1} {
				var s handshakeScanner
				for b := tt.stream; len(b) > 0; {
					n := min(chunk, len(b))
					s.feed(b[:n])
					b = b[n:]
				}
				if s.stage != tt.want || s.done != tt.done {
					t.Errorf("in chunks of %d: stage %d done %v, want %d %v", chunk, s.stage, s.done, tt.want, tt.done)
				}
			}
		})
	}
}

// FuzzHandshakeScanner: the scanner reads what any client sends; it must
// not panic, must stay within its stages and must not depend on how the
// bytes are split into reads.
func FuzzHandshakeScanner(f *testing.F) {
	f.Add([]byte("SSH-2.0-x\r\n"), 3)
	f.Add(append([]byte("SSH-2.0-x\r\n"), packet(msgKexInit, 1, 2, 3)...), 12)
	f.Add(append(append([]byte("a\nSSH-2.0-x\n"), packet(31)...), packet(msgNewKeys)...), 1)
	f.Add([]byte{0, 0, 0, 0, 0, 0}, 2)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		var whole, parts handshakeScanner
		whole.feed(b)
		split = max(split, 1)
		for rest := b; len(rest) > 0; {
			n := min(split, len(rest))
			parts.feed(rest[:n])
			rest = rest[n:]
		}
		if whole.stage < stageConnected || whole.stage > stageNewKeys {
			t.Fatalf("stage %d", whole.stage)
		}
		if whole.stage != parts.stage || whole.done != parts.done {
			t.Fatalf("whole: stage %d done %v; in reads of %d: stage %d done %v", whole.stage, whole.done, split, parts.stage, parts.done)
		}
	})
}
