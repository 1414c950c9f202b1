//go:build linux

package sshd

import (
	"encoding/binary"
	"net"
)

// How far an unauthenticated connection has come, in order. The start-up
// gate evicts connections that have come least far first: an idle TCP
// connection costs an attacker nothing, while every later stage costs a
// message the protocol checks, and the last ones a key exchange.
const (
	stageConnected = iota // nothing received yet
	stageVersion          // the client's version line (RFC 4253 §4.2)
	stageKexInit          // its SSH_MSG_KEXINIT (§7.1)
	stageKexMethod        // its key exchange message (types 30-49, e.g. KEX_ECDH_INIT)
	stageNewKeys          // its SSH_MSG_NEWKEYS: the key exchange is complete
	stageAuth             // the user authentication service was granted
)

// SSH message numbers the scanner recognises (RFC 4250 §4.1.2).
const (
	msgKexInit        = 20
	msgNewKeys        = 21
	msgKexMethodFirst = 30
	msgKexMethodLast  = 49
)

// Bounds past which the scanner gives up (the SSH library refuses such
// input anyway): a version line is at most 255 bytes (RFC 4253 §4.2) and
// a packet at most 256 KiB (the library's limit).
const (
	maxScanLine   = 255
	maxScanLines  = 32
	maxScanPacket = 256 << 10
)

// handshakeScanner follows the plaintext start of the byte stream a client
// sends — the version exchange, then the unencrypted packets of the first
// key exchange up to NEWKEYS — and records the stage reached. It only
// observes: the SSH library parses and checks the same bytes.
type handshakeScanner struct {
	stage int
	done  bool // NEWKEYS seen, or the stream is not one the scanner follows

	versionSeen bool
	prefix      [4]byte // the first bytes of the current line
	lineLen     int     // bytes of the current line
	lines       int     // lines seen

	hdr  [6]byte // packet_length, padding_length, message number
	nhdr int
	skip int // bytes of the current packet still to skip
}

// feed scans the next bytes of the stream.
func (s *handshakeScanner) feed(b []byte) {
	for len(b) > 0 && !s.done {
		if !s.versionSeen {
			b = s.feedLine(b)
			continue
		}
		if s.skip > 0 {
			n := min(s.skip, len(b))
			s.skip -= n
			b = b[n:]
			continue
		}
		n := copy(s.hdr[s.nhdr:], b)
		s.nhdr += n
		b = b[n:]
		if s.nhdr < len(s.hdr) {
			return
		}
		s.nhdr = 0
		length := binary.BigEndian.Uint32(s.hdr[:4])
		if length < 2 || length > maxScanPacket {
			s.done = true
			return
		}
		s.skip = int(length) - 2
		switch typ := s.hdr[5]; {
		case typ == msgKexInit:
			s.advance(stageKexInit)
		case typ >= msgKexMethodFirst && typ <= msgKexMethodLast:
			s.advance(stageKexMethod)
		case typ == msgNewKeys:
			s.advance(stageNewKeys)
			s.done = true // what follows is encrypted
		}
	}
}

// feedLine consumes version-exchange bytes up to the end of a line and
// returns the rest. A line starting "SSH-" is the client's version; others
// are skipped, as RFC 4253 §4.2 allows.
func (s *handshakeScanner) feedLine(b []byte) []byte {
	for i, c := range b {
		if s.lineLen < len(s.prefix) {
			s.prefix[s.lineLen] = c
		}
		if s.lineLen++; s.lineLen > maxScanLine {
			s.done = true
			return nil
		}
		if c != '\n' {
			continue
		}
		if s.lineLen > len(s.prefix) && string(s.prefix[:]) == "SSH-" {
			s.versionSeen = true
			s.advance(stageVersion)
		}
		s.lineLen = 0
		if s.lines++; s.lines > maxScanLines {
			s.done = true
		}
		return b[i+1:]
	}
	return nil
}

func (s *handshakeScanner) advance(stage int) {
	s.stage = max(s.stage, stage)
}

// stagedConn reports the handshake stages of the bytes read from it.
type stagedConn struct {
	net.Conn
	scan    handshakeScanner
	onStage func(stage int)
}

func (c *stagedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.scan.done {
		before := c.scan.stage
		c.scan.feed(b[:n])
		if c.scan.stage > before {
			c.onStage(c.scan.stage)
		}
	}
	return n, err
}
