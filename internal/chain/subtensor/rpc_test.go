package subtensor

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	st "github.com/nicompute/nicompute/internal/chain/subtensor/subtensortest"
	"github.com/nicompute/nicompute/internal/subnet"
)

// headerNode answers chain_getHeader with block 0x10 and fails the test on
// anything else.
func headerNode(tb testing.TB) st.Handler {
	return func(method string, params []json.RawMessage) st.Reply {
		if method == "chain_getHeader" {
			return st.Reply{Result: map[string]any{"number": "0x10", "parentHash": genesisHex}}
		}
		tb.Errorf("unexpected %s", method)
		return st.Reply{Err: &st.WireError{Code: -32601, Message: "unexpected"}}
	}
}

func testRPC(tb testing.TB, node *st.Node, readLimit int64) *rpcClient {
	tb.Helper()
	c, err := dialRPC(tb.Context(), node.URL(), rpcConfig{
		readLimit: readLimit, pingInterval: time.Second, dialTimeout: time.Second, maxBackoff: 50 * time.Millisecond,
	}, slog.New(slog.NewTextHandler(tbWriter{tb}, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.close)
	return c
}

func getHeader(ctx context.Context, c *rpcClient) error {
	raw, err := c.call(ctx, "chain_getHeader")
	if err != nil {
		return err
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil || h.Number != "0x10" {
		return errors.New("bad header")
	}
	return nil
}

func TestDialDeadEndpoint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	start := time.Now()
	_, err = Dial(t.Context(), "ws://"+addr, testConfig(t))
	if subnet.ErrorCode(err) != subnet.EUNAVAILABLE || !strings.Contains(err.Error(), addr) {
		t.Fatalf("err %v (code %s)", err, subnet.ErrorCode(err))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("dial took %s", d)
	}
	if _, err := Dial(t.Context(), "http://"+addr, testConfig(t)); err == nil || !strings.Contains(err.Error(), "ws://") {
		t.Fatalf("http endpoint: %v", err)
	}
}

func TestRPCSilentEndpointHonoursDeadline(t *testing.T) {
	node := st.NewNode(t, func(string, []json.RawMessage) st.Reply { return st.Reply{Silent: true} })
	c := testRPC(t, node, 1<<20)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := getHeader(ctx, c)
	if subnet.ErrorCode(err) != subnet.EUNAVAILABLE || !strings.Contains(err.Error(), "chain_getHeader") {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("call returned after %s, deadline was 200ms", d)
	}
}

func TestRPCReconnectsAfterDrop(t *testing.T) {
	node := st.NewNode(t, headerNode(t))
	c := testRPC(t, node, 1<<20)
	if err := getHeader(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	node.DropAll()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var err error
	for range 100 {
		if err = getHeader(ctx, c); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("no answer after the endpoint restarted: %v", err)
	}
	if n := node.ConnCount(); n < 2 {
		t.Fatalf("%d connections, want a reconnect", n)
	}
}

func TestRPCRetriesReadAfterConnectionLoss(t *testing.T) {
	var dropped atomic.Bool
	node := st.NewNode(t, nil)
	node.SetHandler(func(method string, params []json.RawMessage) st.Reply {
		if dropped.CompareAndSwap(false, true) {
			return st.Reply{Drop: true}
		}
		return headerNode(t)(method, params)
	})
	c := testRPC(t, node, 1<<20)
	if err := getHeader(t.Context(), c); err != nil {
		t.Fatalf("read not retried on the new connection: %v", err)
	}
}

func TestRPCGarbageFrames(t *testing.T) {
	var garbage atomic.Bool
	garbage.Store(true)
	node := st.NewNode(t, nil)
	node.SetHandler(func(method string, params []json.RawMessage) st.Reply {
		if garbage.Load() {
			return st.Reply{Raw: [][]byte{
				[]byte("not json"), []byte("{}"), []byte(`{"id":"1"}`), []byte(`{"jsonrpc":"2.0","id":1}`),
				[]byte(`[1,2,3]`), []byte(`{"id":1,"result":1}{"id":2}`), []byte(`{"method":"x","params":{}}`),
				[]byte(`{"id":18446744073709551616,"result":1}`), {0xff, 0xfe, 0x00},
			}}
		}
		return headerNode(t)(method, params)
	})
	c := testRPC(t, node, 1<<20)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := getHeader(ctx, c); subnet.ErrorCode(err) != subnet.EUNAVAILABLE || !strings.Contains(err.Error(), "chain_getHeader") {
		t.Fatalf("garbage answer: %v", err)
	}
	garbage.Store(false)
	if err := getHeader(t.Context(), c); err != nil {
		t.Fatalf("after garbage: %v", err)
	}
}

func TestRPCOversizedFrame(t *testing.T) {
	var big atomic.Bool
	big.Store(true)
	node := st.NewNode(t, nil)
	node.SetHandler(func(method string, params []json.RawMessage) st.Reply {
		if big.Load() {
			return st.Reply{Result: strings.Repeat("a", 100<<10)}
		}
		return headerNode(t)(method, params)
	})
	c := testRPC(t, node, 64<<10)
	// The answer is too large, and so is the retry's on the next connection.
	err := getHeader(t.Context(), c)
	if subnet.ErrorCode(err) != subnet.EUNAVAILABLE || !strings.Contains(err.Error(), "larger than") || !strings.Contains(err.Error(), "chain_getHeader") {
		t.Fatalf("oversized answer: %v", err)
	}
	big.Store(false)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := getHeader(ctx, c); err != nil {
		t.Fatalf("after oversized frame: %v", err)
	}
}

func TestRPCErrorAnswer(t *testing.T) {
	node := st.NewNode(t, func(string, []json.RawMessage) st.Reply {
		return st.Reply{Err: &st.WireError{Code: -32000, Message: "boom", Data: "details"}}
	})
	c := testRPC(t, node, 1<<20)
	err := getHeader(t.Context(), c)
	var re *rpcError
	if !errors.As(err, &re) || re.Code != -32000 || err.Error() != "chain_getHeader: rpc error -32000: boom: details" {
		t.Fatalf("err %v", err)
	}
	if subnet.ErrorCode(err) != subnet.EINTERNAL {
		t.Fatalf("code %s", subnet.ErrorCode(err))
	}
}

func TestSubscriptionEndsWhenConnectionDrops(t *testing.T) {
	node := st.NewNode(t, func(method string, params []json.RawMessage) st.Reply {
		return st.Reply{Notes: []any{"ready"}}
	})
	c := testRPC(t, node, 1<<20)
	sub, err := c.subscribe(t.Context(), "author_submitAndWatchExtrinsic", "0x00")
	if err != nil {
		t.Fatal(err)
	}
	if note := <-sub.ch; string(note) != `"ready"` {
		t.Fatalf("note %s", note)
	}
	node.DropAll()
	select {
	case _, ok := <-sub.ch:
		if ok {
			t.Fatal("unexpected notification")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscription still open after the connection dropped")
	}
	if !errors.Is(sub.Err(), errConnLost) {
		t.Fatalf("subscription error %v", sub.Err())
	}
}

func TestCloseStopsEverything(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	node := st.NewNode(t, headerNode(t))
	c, err := dialRPC(t.Context(), node.URL(), rpcConfig{readLimit: 1 << 20, pingInterval: 50 * time.Millisecond, dialTimeout: time.Second, maxBackoff: 50 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := getHeader(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	node.DropAll() // the client is reconnecting while it closes
	c.close()
	c.close()
	if err := getHeader(t.Context(), c); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("call after close: %v", err)
	}
	node.Close()
}
