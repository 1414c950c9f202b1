//go:build !linux

package sshd

import (
	"context"
	"errors"
	"log/slog"
	"net"
)

// Version is the SSH identification string the server announces.
const Version = "SSH-2.0-nicompute"

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("sshd: server closed")

var errUnsupported = errors.New("sshd: the ssh server runs only on linux")

// Server is the SSH server of a rented container; it runs only on Linux.
type Server struct{}

// New reports that the server is not supported on this system.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if _, err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	return nil, errUnsupported
}

// Serve reports that the server is not supported on this system.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error { return errUnsupported }

// Close does nothing.
func (s *Server) Close() error { return nil }
