//go:build linux

package sshd

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// dialTimeout bounds connecting to a forwarding target.
const dialTimeout = 10 * time.Second

// maxRemoteForwards bounds the tcpip-forward listeners of one connection.
const maxRemoteForwards = 16

// forwardingAllowed reports whether c may forward ports.
func (c *conn) forwardingAllowed() bool {
	return !c.srv.cfg.DisableTCPForwarding && !c.restrict.noPortForwarding
}

// forward serves a direct-tcpip channel (RFC 4254 §7.2, `ssh -L` and the
// connections of `ssh -D`): it connects to the requested address from
// inside the server's network namespace and copies bytes both ways until
// both sides have finished.
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
	c.log.Debug("forward: open", "addr", addr)
	splice(c.ctx, ch, reqs, tc)
}

// splice copies bytes between ch and tc until both directions have ended,
// the client closes the channel (reqs is closed then) or ctx ends, then
// closes both.
func splice(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request, tc net.Conn) {
	go func() {
		ssh.DiscardRequests(reqs)
		tc.Close()
	}()
	stop := context.AfterFunc(ctx, func() {
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

// tcpipForward is the payload of the "tcpip-forward" and
// "cancel-tcpip-forward" global requests (RFC 4254 §7.1).
type tcpipForward struct {
	Addr string
	Port uint32
}

// forwardedTCPIP is the "forwarded-tcpip" channel-open payload (§7.2).
type forwardedTCPIP struct {
	Addr       string
	Port       uint32
	OriginAddr string
	OriginPort uint32
}

// remoteForwards are one connection's tcpip-forward listeners (`ssh -R`),
// keyed by the address the client asked for and the port listened on
// (which the client names when it cancels, also for port 0).
type remoteForwards struct {
	c  *conn
	wg sync.WaitGroup // accept loops and their forwarded connections

	// mu protects ls and closed.
	mu     sync.Mutex
	ls     map[tcpipForward]net.Listener
	closed bool
}

func newRemoteForwards(c *conn) *remoteForwards {
	return &remoteForwards{c: c, ls: map[tcpipForward]net.Listener{}}
}

// loopbackFor is where a remote forward listens: the loopback address, as
// OpenSSH's sshd does with GatewayPorts no, IPv6 when the client asked
// for an IPv6 address, IPv4 otherwise ("localhost", "", "0.0.0.0", "*").
func loopbackFor(addr string) string {
	if ip, err := netip.ParseAddr(addr); err == nil && ip.Is6() && !ip.Is4In6() {
		return "::1"
	}
	return "127.0.0.1"
}

// handle serves one global request; anything but tcpip-forward and
// cancel-tcpip-forward (keepalives among them) gets a failure reply, which
// clients accept as proof of life.
func (f *remoteForwards) handle(r *ssh.Request) {
	reply := func(ok bool, payload []byte) {
		if r.WantReply {
			r.Reply(ok, payload)
		}
	}
	switch r.Type {
	case "tcpip-forward":
		port, chosen, ok := f.listen(r.Payload)
		switch {
		case !ok:
			reply(false, nil)
		case chosen:
			// The client asked for port 0: the reply names the port.
			reply(true, ssh.Marshal(struct{ Port uint32 }{port}))
		default:
			reply(true, nil)
		}
	case "cancel-tcpip-forward":
		reply(f.cancel(r.Payload), nil)
	default:
		reply(false, nil)
	}
}

// parseTCPIPForward parses a tcpip-forward payload and returns the request
// and the loopback address to listen on.
func parseTCPIPForward(payload []byte) (tcpipForward, string, bool) {
	var req tcpipForward
	if err := ssh.Unmarshal(payload, &req); err != nil || req.Port > 65535 {
		return req, "", false
	}
	return req, net.JoinHostPort(loopbackFor(req.Addr), strconv.FormatUint(uint64(req.Port), 10)), true
}

// listen opens the listener a tcpip-forward asks for and returns the port
// it listens on and whether the server chose it (the client asked for 0).
func (f *remoteForwards) listen(payload []byte) (port uint32, chosen, ok bool) {
	c := f.c
	req, addr, ok := parseTCPIPForward(payload)
	if !ok || !c.forwardingAllowed() {
		return 0, false, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || len(f.ls) >= maxRemoteForwards {
		return 0, false, false
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(c.ctx, "tcp", addr)
	if err != nil {
		c.log.Debug("remote forward: listen failed", "addr", addr, "err", err)
		return 0, false, false
	}
	port = uint32(ln.Addr().(*net.TCPAddr).Port)
	key := tcpipForward{Addr: req.Addr, Port: port}
	if _, dup := f.ls[key]; dup {
		ln.Close()
		return 0, false, false
	}
	f.ls[key] = ln
	c.log.Debug("remote forward: listening", "addr", ln.Addr().String(), "requested", req.Addr)
	f.wg.Go(func() { f.accept(ln, key) })
	return port, req.Port == 0, true
}

// cancel closes the listener a cancel-tcpip-forward names.
func (f *remoteForwards) cancel(payload []byte) bool {
	var req tcpipForward
	if err := ssh.Unmarshal(payload, &req); err != nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ln, ok := f.ls[req]
	if ok {
		delete(f.ls, req)
		ln.Close()
	}
	return ok
}

// accept hands every connection to ln to the client in a forwarded-tcpip
// channel, until ln is closed.
func (f *remoteForwards) accept(ln net.Listener, key tcpipForward) {
	c := f.c
	for {
		tc, err := ln.Accept()
		if err != nil {
			return
		}
		if err := c.srv.attachChannel(c, false); err != nil {
			tc.Close()
			continue
		}
		f.wg.Go(func() {
			defer c.srv.detachChannel(c, false)
			origin, _ := tc.RemoteAddr().(*net.TCPAddr)
			open := forwardedTCPIP{Addr: key.Addr, Port: key.Port}
			if origin != nil {
				open.OriginAddr, open.OriginPort = origin.IP.String(), uint32(origin.Port)
			}
			ch, reqs, err := c.sc.OpenChannel("forwarded-tcpip", ssh.Marshal(open))
			if err != nil {
				c.log.Debug("remote forward: client refused the channel", "err", err)
				tc.Close()
				return
			}
			splice(c.ctx, ch, reqs, tc)
		})
	}
}

// close closes every listener and waits for the forwarded connections to
// end (the connection's context, cancelled first, ends them).
func (f *remoteForwards) close() {
	f.mu.Lock()
	f.closed = true
	for k, ln := range f.ls {
		ln.Close()
		delete(f.ls, k)
	}
	f.mu.Unlock()
	f.wg.Wait()
}
