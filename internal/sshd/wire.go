//go:build linux

package sshd

import (
	"encoding/binary"
	"errors"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Payloads of the channel requests a session accepts (RFC 4254 §6).

// ptyRequest is the "pty-req" payload (§6.2).
type ptyRequest struct {
	Term   string
	Cols   uint32
	Rows   uint32
	Width  uint32 // pixels
	Height uint32 // pixels
	Modes  string // encoded terminal modes (§8)
}

// windowChange is the "window-change" payload (§6.7).
type windowChange struct {
	Cols   uint32
	Rows   uint32
	Width  uint32
	Height uint32
}

// envRequest is the "env" payload (§6.4).
type envRequest struct {
	Name  string
	Value string
}

// stringRequest is the payload of "exec" (command), "subsystem" (name)
// and "signal" (signal name without "SIG").
type stringRequest struct {
	Value string
}

// exitStatus is the "exit-status" payload (§6.10).
type exitStatus struct {
	Status uint32
}

// exitSignal is the "exit-signal" payload (§6.10).
type exitSignal struct {
	Signal     string
	CoreDumped bool
	Message    string
	Lang       string
}

// directTCPIP is the "direct-tcpip" channel-open payload (§7.2).
type directTCPIP struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

// Bounds on what a client may put in a pty-req.
const (
	maxTermLen   = 256
	maxTermModes = 256
	maxWinCells  = 1 << 16
)

var errBadPTYRequest = errors.New("malformed pty-req")

// parsePTYRequest decodes and validates a pty-req payload.
func parsePTYRequest(payload []byte) (ptyRequest, []terminalMode, error) {
	var p ptyRequest
	if err := ssh.Unmarshal(payload, &p); err != nil {
		return p, nil, errBadPTYRequest
	}
	if len(p.Term) > maxTermLen || strings.ContainsAny(p.Term, "\x00=\n") {
		return p, nil, errBadPTYRequest
	}
	modes, err := parseTerminalModes([]byte(p.Modes))
	if err != nil {
		return p, nil, err
	}
	return p, modes, nil
}

// terminalMode is one encoded terminal mode: an opcode (ssh.ECHO, …) and
// its argument.
type terminalMode struct {
	op  uint8
	val uint32
}

// parseTerminalModes decodes RFC 4254 §8 encoded terminal modes. Opcodes
// 1–159 carry a uint32 argument; TTY_OP_END (0) ends the list, and so does
// an opcode of 160 or more, whose argument format is undefined.
func parseTerminalModes(b []byte) ([]terminalMode, error) {
	var modes []terminalMode
	for len(b) > 0 {
		op := b[0]
		if op == 0 || op >= 160 {
			break
		}
		if len(b) < 5 {
			return nil, errBadPTYRequest
		}
		if len(modes) == maxTermModes {
			return nil, errBadPTYRequest
		}
		modes = append(modes, terminalMode{op: op, val: binary.BigEndian.Uint32(b[1:5])})
		b = b[5:]
	}
	return modes, nil
}

// clampCells keeps a terminal dimension within what the kernel's winsize
// (uint16) holds.
func clampCells(v uint32) uint16 {
	if v >= maxWinCells {
		return maxWinCells - 1
	}
	return uint16(v)
}
