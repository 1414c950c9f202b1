//go:build linux

package sshd

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// dialTimeout bounds connecting to a forwarding target.
const dialTimeout = 10 * time.Second

// forward serves a direct-tcpip channel (RFC 4254 §7.2, `ssh -L`): it
// connects to the requested address from inside the container and copies
// bytes both ways until both sides have finished.
func (c *conn) forward(nch ssh.NewChannel) {
	var req directTCPIP
	if err := ssh.Unmarshal(nch.ExtraData(), &req); err != nil || req.Port == 0 || req.Port > 65535 {
		nch.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	addr := net.JoinHostPort(req.Host, strconv.FormatUint(uint64(req.Port), 10))
	ctx, cancel := context.WithTimeout(c.ctx, dialTimeout)
	var d net.Dialer
	tc, err := d.DialContext(ctx, "tcp", addr)
	cancel()
	if err != nil {
		c.log.Debug("forward: connect failed", "addr", addr, "err", err)
		nch.Reject(ssh.ConnectionFailed, "connect failed")
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		tc.Close()
		return
	}
	go func() {
		// reqs is closed when the channel is: stop copying then.
		ssh.DiscardRequests(reqs)
		tc.Close()
	}()
	c.log.Debug("forward: open", "addr", addr)

	stop := context.AfterFunc(c.ctx, func() {
		ch.Close()
		tc.Close()
	})
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() {
		io.Copy(tc, ch)
		if cw, ok := tc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	})
	wg.Go(func() {
		io.Copy(ch, tc)
		ch.CloseWrite()
	})
	wg.Wait()
	ch.Close()
	tc.Close()
}
