// Package subtensortest serves subtensor JSON-RPC over a loopback
// WebSocket for tests: a fake node whose answers come from a handler, with
// faults on demand (dropped connections, silence, raw frames), and a
// replay of the JSON-RPC traffic the Bittensor Python SDK recorded against
// finney. It imports nothing from this repository, so chain/subtensor's
// own tests and command tests can both use it.
package subtensortest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
)

// WireError is a JSON-RPC error object.
type WireError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

// Reply is what the node does with one request.
type Reply struct {
	Result any        // the result (marshalled; json.RawMessage as is)
	Err    *WireError // or an error
	Raw    [][]byte   // frames sent verbatim instead of an answer
	Notes  []any      // subscription notifications sent after the answer (the result is then a subscription id)
	Drop   bool       // close the connection instead of answering
	Silent bool       // never answer
}

// Handler answers one request.
type Handler func(method string, params []json.RawMessage) Reply

// Node is a fake subtensor node.
type Node struct {
	tb  testing.TB
	srv *httptest.Server

	mu       sync.Mutex // protects the following
	handler  Handler
	requests []string // "method params" in arrival order
	conns    int
	live     []*websocket.Conn
}

// NewNode starts a node on 127.0.0.1 that closes when the test ends.
func NewNode(tb testing.TB, h Handler) *Node {
	tb.Helper()
	n := &Node{tb: tb, handler: h}
	up := websocket.Upgrader{}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		n.mu.Lock()
		n.conns++
		n.live = append(n.live, ws)
		n.mu.Unlock()
		n.serve(ws)
	}))
	tb.Cleanup(n.Close)
	return n
}

// URL is the node's ws:// endpoint.
func (n *Node) URL() string { return "ws://" + n.srv.Listener.Addr().String() }

// Close stops the node.
func (n *Node) Close() {
	n.DropAll()
	n.srv.Close()
}

// DropAll closes every live connection, as a restarting endpoint does.
func (n *Node) DropAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.live {
		c.Close()
	}
	n.live = nil
}

// SetHandler replaces the handler.
func (n *Node) SetHandler(h Handler) {
	n.mu.Lock()
	n.handler = h
	n.mu.Unlock()
}

// ConnCount is the number of connections accepted so far.
func (n *Node) ConnCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.conns
}

// Called lists the requests of a method ("" for all) as "method params".
func (n *Node) Called(method string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, r := range n.requests {
		if method == "" || strings.HasPrefix(r, method+" ") {
			out = append(out, r)
		}
	}
	return out
}

func (n *Node) serve(ws *websocket.Conn) {
	defer ws.Close()
	subID := 0
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var req struct {
			ID     json.RawMessage   `json:"id"`
			Method string            `json:"method"`
			Params []json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(msg, &req); err != nil {
			n.tb.Errorf("fake node: bad request %q", msg)
			return
		}
		ps, _ := json.Marshal(req.Params)
		n.mu.Lock()
		n.requests = append(n.requests, req.Method+" "+string(ps))
		h := n.handler
		n.mu.Unlock()
		rep := h(req.Method, req.Params)
		switch {
		case rep.Drop:
			return
		case rep.Silent:
			continue
		case rep.Raw != nil:
			for _, f := range rep.Raw {
				if ws.WriteMessage(websocket.TextMessage, f) != nil {
					return
				}
			}
			continue
		}
		out := map[string]any{"jsonrpc": "2.0", "id": req.ID}
		if rep.Err != nil {
			out["error"] = rep.Err
		} else {
			if rep.Notes != nil {
				subID++
				rep.Result = "sub" + strconv.Itoa(subID)
			}
			out["result"] = rep.Result
		}
		if ws.WriteJSON(out) != nil {
			return
		}
		for _, note := range rep.Notes {
			ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "method": "author_extrinsicUpdate",
				"params": map[string]any{"subscription": rep.Result, "result": note}})
		}
	}
}

// QueryFrom answers state_queryStorageAt from values (lower-case hex key →
// hex value); keys not in values are reported absent. Other methods are
// left to the next handler (ok false).
func QueryFrom(tb testing.TB, values map[string]string) func(string, []json.RawMessage) (Reply, bool) {
	return func(method string, params []json.RawMessage) (Reply, bool) {
		if method != "state_queryStorageAt" {
			return Reply{}, false
		}
		var keys []string
		if len(params) == 0 || json.Unmarshal(params[0], &keys) != nil {
			tb.Errorf("state_queryStorageAt params %s", params)
			return Reply{Err: &WireError{Code: -32602, Message: "bad params"}}, true
		}
		changes := make([][2]any, 0, len(keys))
		for _, k := range keys {
			if v, ok := values[strings.ToLower(k)]; ok {
				changes = append(changes, [2]any{k, v})
			} else {
				changes = append(changes, [2]any{k, nil})
			}
		}
		return Reply{Result: []any{map[string]any{"block": "0x" + strings.Repeat("00", 32), "changes": changes}}}, true
	}
}
