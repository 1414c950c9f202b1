package subtensor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nicompute/nicompute/internal/subnet"
)

// JSON-RPC 2.0 over one WebSocket, with automatic reconnection. gsrpc's
// client (a go-ethereum rpc fork) is not used: it redials only inline on the
// next request, with no backoff, so every caller pays a dial against a dead
// endpoint; it never probes an idle connection, so a half-open one hangs
// callers until their deadline; and its frame limit is a fixed 5 MiB. Here
// a background loop redials with capped exponential backoff, callers wait
// for a connection no longer than their context, pings detect half-open
// connections, and a lost connection fails pending calls and subscriptions
// at once.

// rpcError is an error object returned by the node.
type rpcError struct {
	Method  string
	Code    int
	Message string
	Data    string
}

func (e *rpcError) Error() string {
	s := fmt.Sprintf("%s: rpc error %d: %s", e.Method, e.Code, e.Message)
	if e.Data != "" {
		s += ": " + e.Data
	}
	return s
}

// errConnLost reports a connection that closed before the answer came.
var errConnLost = errors.New("connection to the chain endpoint lost")

// frame is one incoming JSON-RPC message: a response (ID set) or a
// subscription notification (Method set).
type frame struct {
	ID     *uint64         `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
	Method string `json:"method"`
	Params struct {
		Subscription json.RawMessage `json:"subscription"`
		Result       json.RawMessage `json:"result"`
	} `json:"params"`
}

// parseFrame decodes an incoming message. It fails on anything that is not
// a JSON object answering a numeric id or notifying a subscription.
func parseFrame(b []byte) (*frame, error) {
	var f frame
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("invalid JSON-RPC frame: %w", err)
	}
	if dec.More() {
		return nil, errors.New("invalid JSON-RPC frame: trailing data")
	}
	switch {
	case f.ID != nil:
		if f.Error == nil && len(f.Result) == 0 {
			return nil, errors.New("invalid JSON-RPC frame: response without result or error")
		}
	case f.Method != "":
		if len(f.Params.Subscription) == 0 {
			return nil, errors.New("invalid JSON-RPC frame: notification without subscription")
		}
	default:
		return nil, errors.New("invalid JSON-RPC frame: neither response nor notification")
	}
	return &f, nil
}

// subKey normalises a subscription id (string or number) to a map key.
func subKey(raw json.RawMessage) string { return strings.Trim(string(raw), `"`) }

type rpcResult struct {
	result json.RawMessage
	err    error
}

type pendingCall struct {
	method string
	ch     chan rpcResult // buffered 1
	sub    *subscription  // set for subscribe calls
}

// subscription receives notifications until the server ends it or the
// connection drops.
type subscription struct {
	ch   chan json.RawMessage // buffered; closed when the subscription ends
	conn *wsConn
	id   string
	mu   sync.Mutex
	err  error
}

// Err is why the subscription ended (after ch is closed).
func (s *subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// wsConn is one live WebSocket connection.
type wsConn struct {
	ws       *websocket.Conn
	writeSem chan struct{} // one writer at a time; acquired within the caller's ctx
	done     chan struct{} // closed when the connection is finished
	onClose  func(*wsConn) // called once, before done closes

	mu      sync.Mutex // protects the following
	pending map[uint64]*pendingCall
	subs    map[string]*subscription
	err     error // why the connection closed
}

// rpcConfig tunes the client's transport.
type rpcConfig struct {
	readLimit    int64
	pingInterval time.Duration
	dialTimeout  time.Duration
	maxBackoff   time.Duration
	observe      func(method string, d time.Duration, err error)
}

// rpcClient keeps one connection to a node alive and multiplexes calls.
type rpcClient struct {
	url string
	cfg rpcConfig
	log *slog.Logger

	mu      sync.Mutex // protects the following
	conn    *wsConn
	up      chan struct{} // closed while conn is usable; replaced when it drops
	nextID  uint64
	lastErr error
	closed  bool

	ctx    context.Context // ends when the client closes
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// dialRPC connects to url and keeps the connection up until close.
func dialRPC(ctx context.Context, url string, cfg rpcConfig, log *slog.Logger) (*rpcClient, error) {
	c := &rpcClient{url: url, cfg: cfg, log: log, up: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	conn, err := c.dial(ctx)
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.setConn(conn)
	c.wg.Add(1)
	go c.maintain(conn)
	return c, nil
}

func (c *rpcClient) dial(ctx context.Context) (*wsConn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.dialTimeout)
	defer cancel()
	d := websocket.Dialer{HandshakeTimeout: c.cfg.dialTimeout, Proxy: nil}
	ws, resp, err := d.DialContext(ctx, c.url, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redactURL(c.url), err)
	}
	ws.SetReadLimit(c.cfg.readLimit)
	ws.SetReadDeadline(time.Now().Add(2 * c.cfg.pingInterval))
	ws.SetPongHandler(func(string) error {
		return ws.SetReadDeadline(time.Now().Add(2 * c.cfg.pingInterval))
	})
	conn := &wsConn{ws: ws, done: make(chan struct{}), onClose: c.connLost, writeSem: make(chan struct{}, 1),
		pending: map[uint64]*pendingCall{}, subs: map[string]*subscription{}}
	c.wg.Add(2)
	go c.readLoop(conn)
	go c.pingLoop(conn)
	return conn, nil
}

func (c *rpcClient) setConn(conn *wsConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn = conn
	c.lastErr = nil
	close(c.up)
}

// connLost takes a closed connection out of use at once, so no caller
// picks it up while the reconnect loop catches up.
func (c *rpcClient) connLost(conn *wsConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == conn {
		c.conn, c.up, c.lastErr = nil, make(chan struct{}), conn.closeErr()
	}
}

// maintain waits for the connection to drop and redials with capped
// exponential backoff and jitter until the client closes.
func (c *rpcClient) maintain(conn *wsConn) {
	defer c.wg.Done()
	for {
		select {
		case <-conn.done:
		case <-c.ctx.Done():
			return
		}
		c.log.Warn("chain connection lost; reconnecting", "endpoint", redactURL(c.url), "err", conn.closeErr())
		backoff := 250 * time.Millisecond
		for {
			next, err := c.dial(c.ctx)
			if err == nil {
				if c.ctx.Err() != nil {
					next.close(errors.New("client closed"))
					return
				}
				c.setConn(next)
				c.log.Info("chain connection restored", "endpoint", redactURL(c.url))
				conn = next
				break
			}
			c.mu.Lock()
			c.lastErr = err
			c.mu.Unlock()
			wait := backoff/2 + rand.N(backoff/2+1)
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(wait):
			}
			backoff = min(backoff*2, c.cfg.maxBackoff)
		}
	}
}

func (c *rpcClient) readLoop(conn *wsConn) {
	defer c.wg.Done()
	for {
		_, msg, err := conn.ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				err = fmt.Errorf("message larger than the %d-byte limit", c.cfg.readLimit)
			}
			conn.close(err)
			return
		}
		conn.ws.SetReadDeadline(time.Now().Add(2 * c.cfg.pingInterval))
		f, err := parseFrame(msg)
		if err != nil {
			c.log.Debug("chain endpoint sent an unusable frame", "endpoint", redactURL(c.url), "err", err)
			continue
		}
		conn.dispatch(f)
	}
}

// pingLoop sends pings; the read deadline (extended by every message and
// pong) closes connections that stop answering.
func (c *rpcClient) pingLoop(conn *wsConn) {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.pingInterval)
	defer t.Stop()
	for {
		select {
		case <-conn.done:
			return
		case <-t.C:
			err := conn.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.pingInterval))
			if err != nil {
				conn.close(fmt.Errorf("ping: %w", err))
				return
			}
		}
	}
}

func (conn *wsConn) dispatch(f *frame) {
	if f.ID == nil {
		conn.mu.Lock()
		s := conn.subs[subKey(f.Params.Subscription)]
		conn.mu.Unlock()
		if s == nil {
			return
		}
		select {
		case s.ch <- f.Params.Result:
		default:
			s.end(errors.New("subscription fell behind"))
		}
		return
	}
	conn.mu.Lock()
	p := conn.pending[*f.ID]
	delete(conn.pending, *f.ID)
	if p != nil && p.sub != nil && f.Error == nil {
		// Register before reading the next frame: the first notification
		// may follow the answer immediately.
		p.sub.id = subKey(f.Result)
		conn.subs[p.sub.id] = p.sub
	}
	conn.mu.Unlock()
	if p == nil {
		return
	}
	if f.Error != nil {
		data := string(f.Error.Data)
		if s, err := unquote(f.Error.Data); err == nil {
			data = s
		}
		p.ch <- rpcResult{err: &rpcError{Method: p.method, Code: f.Error.Code, Message: f.Error.Message, Data: data}}
		return
	}
	p.ch <- rpcResult{result: f.Result}
}

func unquote(raw json.RawMessage) (string, error) {
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// close finishes the connection, failing pending calls and subscriptions.
func (conn *wsConn) close(err error) {
	conn.mu.Lock()
	if conn.err != nil {
		conn.mu.Unlock()
		return
	}
	conn.err = err
	pending, subs := conn.pending, conn.subs
	conn.pending, conn.subs = map[uint64]*pendingCall{}, map[string]*subscription{}
	conn.mu.Unlock()
	if conn.onClose != nil {
		conn.onClose(conn)
	}
	close(conn.done)
	conn.ws.Close()
	for _, p := range pending {
		p.ch <- rpcResult{err: fmt.Errorf("%w: %v", errConnLost, err)}
	}
	for _, s := range subs {
		s.end(fmt.Errorf("%w: %v", errConnLost, err))
	}
}

func (conn *wsConn) closeErr() error {
	conn.mu.Lock()
	defer conn.mu.Unlock()
	return conn.err
}

func (s *subscription) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	s.err = err
	close(s.ch)
	if s.conn != nil {
		s.conn.mu.Lock()
		delete(s.conn.subs, s.id)
		s.conn.mu.Unlock()
	}
}

// connection returns the live connection, waiting for a reconnect no
// longer than ctx allows.
func (c *rpcClient) connection(ctx context.Context) (*wsConn, error) {
	for {
		c.mu.Lock()
		conn, up, closed, last := c.conn, c.up, c.closed, c.lastErr
		c.mu.Unlock()
		if closed {
			return nil, errors.New("chain client closed")
		}
		if conn != nil {
			return conn, nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			if last != nil {
				return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			}
			return nil, ctx.Err()
		}
	}
}

// send writes a request and returns the channel its answer arrives on.
func (c *rpcClient) send(ctx context.Context, method string, params []any, sub *subscription) (*wsConn, uint64, chan rpcResult, error) {
	if params == nil {
		params = []any{}
	}
	conn, err := c.connection(ctx)
	if err != nil {
		return nil, 0, nil, err
	}
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.mu.Unlock()
	msg, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	if err != nil {
		return nil, 0, nil, fmt.Errorf("encode request: %w", err)
	}
	p := &pendingCall{method: method, ch: make(chan rpcResult, 1), sub: sub}
	conn.mu.Lock()
	if conn.err != nil {
		conn.mu.Unlock()
		return nil, 0, nil, fmt.Errorf("%w: %v", errConnLost, conn.err)
	}
	if sub != nil {
		sub.conn = conn
	}
	conn.pending[id] = p
	conn.mu.Unlock()

	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(c.cfg.dialTimeout)
	}
	select {
	case conn.writeSem <- struct{}{}:
	case <-ctx.Done():
		conn.mu.Lock()
		delete(conn.pending, id)
		conn.mu.Unlock()
		return nil, 0, nil, ctx.Err()
	}
	conn.ws.SetWriteDeadline(deadline)
	err = conn.ws.WriteMessage(websocket.TextMessage, msg)
	<-conn.writeSem
	if err != nil {
		conn.close(fmt.Errorf("write: %w", err))
		return nil, 0, nil, fmt.Errorf("%w: %v", errConnLost, err)
	}
	return conn, id, p.ch, nil
}

// callOnce sends one request and waits for its answer or ctx.
func (c *rpcClient) callOnce(ctx context.Context, method string, params []any) (json.RawMessage, error) {
	conn, id, ch, err := c.send(ctx, method, params, nil)
	if err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r.result, r.err
	case <-ctx.Done():
		conn.mu.Lock()
		delete(conn.pending, id)
		conn.mu.Unlock()
		return nil, ctx.Err()
	}
}

// call performs a read-only request. A connection lost before the answer
// is retried once on the next connection.
func (c *rpcClient) call(ctx context.Context, method string, params ...any) (res json.RawMessage, err error) {
	if c.cfg.observe != nil {
		defer func(start time.Time) { c.cfg.observe(method, time.Since(start), err) }(time.Now())
	}
	res, err = c.callOnce(ctx, method, params)
	if errors.Is(err, errConnLost) && ctx.Err() == nil {
		res, err = c.callOnce(ctx, method, params)
	}
	if err != nil {
		return nil, classifyRPC(method, err)
	}
	return res, nil
}

// subscribe starts a subscription; notifications arrive on the returned
// subscription's channel. Submissions are never retried.
func (c *rpcClient) subscribe(ctx context.Context, method string, params ...any) (_ *subscription, err error) {
	if c.cfg.observe != nil {
		defer func(start time.Time) { c.cfg.observe(method, time.Since(start), err) }(time.Now())
	}
	sub := &subscription{ch: make(chan json.RawMessage, 32)}
	conn, id, ch, err := c.send(ctx, method, params, sub)
	if err != nil {
		return nil, classifyRPC(method, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, classifyRPC(method, r.err)
		}
		return sub, nil
	case <-ctx.Done():
		conn.mu.Lock()
		delete(conn.pending, id)
		conn.mu.Unlock()
		return nil, classifyRPC(method, ctx.Err())
	}
}

// unsubscribe ends a subscription on the server, best effort.
func (c *rpcClient) unsubscribe(method string, sub *subscription) {
	sub.end(errors.New("unsubscribed"))
	if sub.id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c.callOnce(ctx, method, []any{sub.id})
}

// classifyRPC wraps transport failures as EUNAVAILABLE and node errors as
// EINTERNAL, naming the method.
func classifyRPC(method string, err error) error {
	var re *rpcError
	if errors.As(err, &re) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", method, err)
	}
	return &wrapped{subnet.Errorf(subnet.EUNAVAILABLE, "%s: chain unavailable: %v", method, err), err}
}

// wrapped is a classified error that still matches its cause.
type wrapped struct {
	coded *subnet.Error
	cause error
}

func (w *wrapped) Error() string   { return w.coded.Message }
func (w *wrapped) Unwrap() []error { return []error{w.coded, w.cause} }

// close stops reconnecting and closes the connection.
func (c *rpcClient) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	conn := c.conn
	c.mu.Unlock()
	c.cancel()
	if conn != nil {
		conn.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		conn.close(errors.New("client closed"))
	}
	c.wg.Wait()
}

// redactURL drops user information from an endpoint URL for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	u.User = nil
	return u.String()
}
