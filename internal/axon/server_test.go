package axon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/keys"
)

// testAxon is an axon served on 127.0.0.1:0 whose hotkey is //Bob. Its
// "Echo" synapse counts runs and answers {"output": {"status": true}}.
type testAxon struct {
	srv    *Server
	addr   string
	target Target
	runs   atomic.Int64
}

type echoRequest struct {
	Timeline int  `json:"timeline"`
	Checking bool `json:"checking"`
	SleepMS  int  `json:"sleep_ms,omitempty"`
}

type echoResponse struct {
	Timeline int            `json:"timeline"`
	Checking bool           `json:"checking"`
	Output   map[string]any `json:"output"`
	Name     string         `json:"name"`
	Axon     TerminalInfo   `json:"axon"`
	Dendrite TerminalInfo   `json:"dendrite"`
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startAxon serves an axon with cfg (Hotkey defaults to //Bob) and the
// Echo synapse with hooks.
func startAxon(tb testing.TB, cfg Config, hooks Hooks) *testAxon {
	tb.Helper()
	if cfg.Hotkey == nil {
		cfg.Hotkey = mustKey(tb, "//Bob")
	}
	var log *slog.Logger
	if _, ok := tb.(*testing.B); !ok {
		log = testLogger(tb)
	}
	srv, err := NewServer(cfg, log)
	if err != nil {
		tb.Fatal(err)
	}
	ta := &testAxon{srv: srv}
	srv.Attach("Echo", func(ctx context.Context, call *Call) (any, error) {
		ta.runs.Add(1)
		var req echoRequest
		if err := call.Decode(&req); err != nil {
			return nil, err
		}
		if req.SleepMS > 0 {
			select {
			case <-time.After(time.Duration(req.SleepMS) * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return map[string]any{"output": map[string]any{"status": true, "caller": call.Caller.Hotkey}}, nil
	}, hooks)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ta.addr = ln.Addr().String()
	ta.target = Target{Addr: ta.addr, Hotkey: srv.Hotkey()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
		srv.Close()
	})
	return ta
}

// rawRequest is a signed request captured before sending, to be altered.
type rawRequest struct {
	name   string
	header http.Header
	body   []byte
}

func signedRequest(tb testing.TB, d *Dendrite, target Target, name string, req any, timeout time.Duration, uuid string, nonce int64) *rawRequest {
	tb.Helper()
	hreq, err := d.newRequest(context.Background(), target, name, req, timeout, uuid, nonce)
	if err != nil {
		tb.Fatal(err)
	}
	body, err := io.ReadAll(hreq.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return &rawRequest{name: name, header: hreq.Header.Clone(), body: body}
}

func (r *rawRequest) clone() *rawRequest {
	return &rawRequest{name: r.name, header: r.header.Clone(), body: bytes.Clone(r.body)}
}

// set replaces a header whatever the case it was stored under.
func (r *rawRequest) set(key, value string) {
	r.del(key)
	r.header[key] = []string{value}
}

func (r *rawRequest) del(key string) {
	delete(r.header, key)
	delete(r.header, http.CanonicalHeaderKey(key))
}

type reply struct {
	status  int
	message string
	header  http.Header
	body    []byte
}

func send(tb testing.TB, addr string, r *rawRequest) reply {
	tb.Helper()
	hreq, err := http.NewRequest(http.MethodPost, "http://"+addr+"/"+r.name, bytes.NewReader(r.body))
	if err != nil {
		tb.Fatal(err)
	}
	hreq.Header = r.header.Clone()
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	rep := reply{status: resp.StatusCode, header: resp.Header, body: body}
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &m) == nil {
		rep.message = m.Message
	}
	return rep
}

const testUUID = "6e696331-0000-8000-8000-0000000000aa"

// legacyUUID is what Bittensor's Python dendrite uses (uuid1): it does not
// announce body signing.
const legacyUUID = "5ecbd69c-1cec-11ee-b0dc-e29ce36fec1a"

// TestRefusals sends altered, replayed and malformed requests: each is
// refused with the expected status and the handler never runs.
func TestRefusals(t *testing.T) {
	alice, bob := mustKey(t, "//Alice"), mustKey(t, "//Bob")
	d := NewDendrite(alice)
	req := echoRequest{Timeline: 30, Checking: true}
	now := time.Now()
	fresh := func(uuid string) *rawRequest {
		return signedRequest(t, d, Target{Addr: "127.0.0.1:1", Hotkey: bobSS58}, "Echo", req, 5*time.Second, uuid, d.nextNonce())
	}
	// legacy strips nicompute's body signature: a Python dendrite's request.
	legacy := func() *rawRequest {
		r := fresh(legacyUUID)
		r.del(BodySignatureHeader)
		return r
	}
	resign := func(r *rawRequest, signer *keys.Keypair, msg string) {
		sig, err := signer.Sign([]byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		r.set("bt_header_dendrite_signature", formatSignature(sig))
	}
	otherUUID := "6e696331-0000-8000-8000-0000000000bb"

	tests := []struct {
		name       string
		cfg        Config
		build      func(ta *testAxon) []*rawRequest // all but the last must succeed
		wantStatus int
		wantMsg    string
		wantRuns   int64
	}{
		{"valid", Config{}, func(*testAxon) []*rawRequest { return []*rawRequest{fresh(testUUID)} }, 200, "", 1},
		{"valid legacy dendrite", Config{}, func(*testAxon) []*rawRequest { return []*rawRequest{legacy()} }, 200, "", 1},
		{"replay same request", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			return []*rawRequest{r, r.clone()}
		}, 401, "not newer", 1},
		{"older nonce after newer", Config{}, func(*testAxon) []*rawRequest {
			older := fresh(testUUID)
			newer := fresh(testUUID)
			return []*rawRequest{newer, older}
		}, 401, "not newer", 1},
		{"older nonce other uuid accepted", Config{}, func(*testAxon) []*rawRequest {
			older := fresh(otherUUID)
			newer := fresh(testUUID)
			return []*rawRequest{newer, older}
		}, 200, "", 2},
		{"nonce too old", Config{}, func(*testAxon) []*rawRequest {
			old := now.Add(-4*time.Second - 5*time.Second - time.Second).UnixNano()
			return []*rawRequest{signedRequest(t, d, Target{Addr: "127.0.0.1:1", Hotkey: bobSS58}, "Echo", req, 5*time.Second, testUUID, old)}
		}, 401, "too old", 0},
		{"nonce too old by server clock", Config{Now: func() time.Time { return time.Now().Add(time.Minute) }}, func(*testAxon) []*rawRequest {
			return []*rawRequest{fresh(testUUID)}
		}, 401, "too old", 0},
		{"nonce in the future", Config{}, func(*testAxon) []*rawRequest {
			future := now.Add(time.Minute).UnixNano()
			return []*rawRequest{signedRequest(t, d, Target{Addr: "127.0.0.1:1", Hotkey: bobSS58}, "Echo", req, 5*time.Second, testUUID, future)}
		}, 401, "future", 0},
		{"body altered", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			r.body = bytes.Replace(r.body, []byte(`"timeline":30`), []byte(`"timeline":31`), 1)
			return []*rawRequest{r}
		}, 401, "body signature mismatch", 0},
		{"body signature stripped", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			r.del(BodySignatureHeader)
			return []*rawRequest{r}
		}, 401, "missing body signature", 0},
		{"legacy refused when body signature required", Config{RequireBodySignature: true}, func(*testAxon) []*rawRequest {
			return []*rawRequest{legacy()}
		}, 401, "missing body signature", 0},
		{"body signature garbage", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			r.set(BodySignatureHeader, "0xzz")
			return []*rawRequest{r}
		}, 401, "body signature", 0},
		{"nonce header altered", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			n, _ := strconv.ParseInt(headerGet(r.header, "bt_header_dendrite_nonce"), 10, 64)
			r.set("bt_header_dendrite_nonce", strconv.FormatInt(n+1, 10))
			return []*rawRequest{r}
		}, 401, "signature mismatch", 0},
		{"dendrite hotkey altered", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			r.set("bt_header_dendrite_hotkey", bobSS58)
			return []*rawRequest{r}
		}, 401, "signature mismatch", 0},
		{"axon hotkey altered", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			r.set("bt_header_axon_hotkey", aliceSS58)
			return []*rawRequest{r}
		}, 401, "another axon", 0},
		{"signed for another axon", Config{}, func(*testAxon) []*rawRequest {
			r := signedRequest(t, d, Target{Addr: "127.0.0.1:1", Hotkey: aliceSS58}, "Echo", req, 5*time.Second, testUUID, d.nextNonce())
			r.del("bt_header_axon_hotkey")
			return []*rawRequest{r}
		}, 401, "signature mismatch", 0},
		{"uuid altered", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			r.set("bt_header_dendrite_uuid", otherUUID)
			return []*rawRequest{r}
		}, 401, "signature mismatch", 0},
		{"legacy uuid altered", Config{}, func(*testAxon) []*rawRequest {
			r := legacy()
			r.set("bt_header_dendrite_uuid", "5ecbd69c-1cec-11ee-b0dc-e29ce36fec1b")
			return []*rawRequest{r}
		}, 401, "signature mismatch", 0},
		{"body hash header altered", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			r.set("computed_body_hash", strings.Repeat("0", 64))
			return []*rawRequest{r}
		}, 400, "Hash mismatch", 0},
		{"body hash header missing", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			r.del("computed_body_hash")
			return []*rawRequest{r}
		}, 400, "computed_body_hash", 0},
		{"signed by another key", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			n, _ := strconv.ParseInt(headerGet(r.header, "bt_header_dendrite_nonce"), 10, 64)
			resign(r, bob, SignatureMessage(n, aliceSS58, bobSS58, testUUID, EmptyBodyHash))
			return []*rawRequest{r}
		}, 401, "signature mismatch", 0},
		{"empty signature", Config{}, func(*testAxon) []*rawRequest {
			r := legacy()
			r.set("bt_header_dendrite_signature", "")
			return []*rawRequest{r}
		}, 401, "empty signature", 0},
		{"missing signature", Config{}, func(*testAxon) []*rawRequest {
			r := legacy()
			r.del("bt_header_dendrite_signature")
			return []*rawRequest{r}
		}, 401, "empty signature", 0},
		{"non-hex signature", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			r.set("bt_header_dendrite_signature", "0x"+strings.Repeat("zz", 64))
			return []*rawRequest{r}
		}, 401, "not hex", 0},
		{"short signature", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			r.set("bt_header_dendrite_signature", "0x1234")
			return []*rawRequest{r}
		}, 401, "hex characters", 0},
		{"missing nonce", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			r.del("bt_header_dendrite_nonce")
			return []*rawRequest{r}
		}, 401, "Missing Nonce", 0},
		{"malformed nonce", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			r.set("bt_header_dendrite_nonce", "12x")
			return []*rawRequest{r}
		}, 400, "not an integer", 0},
		{"bad dendrite hotkey", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			r.set("bt_header_dendrite_hotkey", "5notakey")
			return []*rawRequest{r}
		}, 401, "SS58", 0},
		{"duplicate nonce header", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			r.header["Bt_header_dendrite_nonce"] = []string{"1"}
			return []*rawRequest{r}
		}, 400, "more than once", 0},
		{"body not an object", Config{}, func(*testAxon) []*rawRequest {
			r := legacy()
			r.body = []byte(`[1,2]`)
			return []*rawRequest{r}
		}, 400, "not a JSON object", 0},
		{"bad timeout header", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			r.set("timeout", "soon")
			return []*rawRequest{r}
		}, 400, "timeout", 0},
		{"blacklisted", Config{}, func(*testAxon) []*rawRequest { return []*rawRequest{fresh(testUUID)} }, 403, "Key is blacklisted: no validator permit.", 0},
		{"unknown synapse", Config{}, func(*testAxon) []*rawRequest {
			r := fresh(testUUID)
			r.name = "echo"
			return []*rawRequest{r}
		}, 404, "'echo' not found", 0},
		{"oversize body", Config{MaxBodyBytes: 512}, func(*testAxon) []*rawRequest {
			return []*rawRequest{signedRequest(t, d, Target{Addr: "127.0.0.1:1", Hotkey: bobSS58}, "Echo",
				map[string]string{"pad": strings.Repeat("x", 1024)}, 5*time.Second, testUUID, d.nextNonce())}
		}, 413, "exceeds 512 bytes", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hooks Hooks
			if tt.name == "blacklisted" {
				hooks.Blacklist = func(_ context.Context, c Caller, name string) (string, bool) {
					return "no validator permit", c.Hotkey == aliceSS58 && name == "Echo"
				}
			}
			ta := startAxon(t, tt.cfg, hooks)
			reqs := tt.build(ta)
			for i, r := range reqs {
				rep := send(t, ta.addr, r)
				if i < len(reqs)-1 {
					if rep.status != 200 {
						t.Fatalf("request %d: status %d (%s), want 200", i, rep.status, rep.message)
					}
					continue
				}
				if rep.status != tt.wantStatus {
					t.Errorf("status = %d (%s), want %d", rep.status, rep.message, tt.wantStatus)
				}
				if tt.wantStatus != 200 && !strings.Contains(rep.message, tt.wantMsg) {
					t.Errorf("message = %q, want it to contain %q", rep.message, tt.wantMsg)
				}
				if got := headerGet(rep.header, "bt_header_axon_status_code"); got != strconv.Itoa(tt.wantStatus) {
					t.Errorf("bt_header_axon_status_code = %q, want %d", got, tt.wantStatus)
				}
				if ct := rep.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q", ct)
				}
			}
			if got := ta.runs.Load(); got != tt.wantRuns {
				t.Errorf("handler ran %d times, want %d", got, tt.wantRuns)
			}
		})
	}
}

func TestOversizeChunkedBody(t *testing.T) {
	ta := startAxon(t, Config{MaxBodyBytes: 512}, Hooks{})
	d := NewDendrite(mustKey(t, "//Alice"))
	r := signedRequest(t, d, ta.target, "Echo", map[string]string{"pad": strings.Repeat("x", 4096)}, 5*time.Second, testUUID, d.nextNonce())
	// No Content-Length: the limit must hold while reading.
	hreq, err := http.NewRequest(http.MethodPost, "http://"+ta.addr+"/Echo", io.MultiReader(bytes.NewReader(r.body)))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header = r.header
	hreq.ContentLength = -1
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || ta.runs.Load() != 0 {
		t.Errorf("status %d, runs %d; want 413, 0", resp.StatusCode, ta.runs.Load())
	}
}

func TestRoundTrip(t *testing.T) {
	var observed []string
	var mu sync.Mutex
	ta := startAxon(t, Config{ExternalIP: "203.0.113.7", ExternalPort: 8091, Observe: func(name string, status int, _ time.Duration) {
		mu.Lock()
		observed = append(observed, name+":"+strconv.Itoa(status))
		mu.Unlock()
	}}, Hooks{})
	alice := mustKey(t, "//Alice")
	d := NewDendrite(alice, WithRequireSignedResponse())
	for i := range 3 {
		var resp echoResponse
		res, err := d.Call(context.Background(), ta.target, "Echo", echoRequest{Timeline: 30 + i, Checking: true}, &resp, 5*time.Second)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if res.StatusCode != 200 || res.StatusMessage != "Success" || !res.Signed || res.ProcessTime <= 0 || res.Elapsed < res.ProcessTime {
			t.Errorf("result = %+v", res)
		}
		if resp.Timeline != 30+i || !resp.Checking || resp.Name != "Echo" || resp.Output["status"] != true || resp.Output["caller"] != aliceSS58 {
			t.Errorf("response synapse = %+v", resp)
		}
		ax := resp.Axon
		if ax.StatusCode != 200 || ax.Hotkey != bobSS58 || ax.IP != "203.0.113.7" || ax.Port != 8091 || ax.Version != BittensorVersion || ax.UUID == "" || ax.Nonce == 0 {
			t.Errorf("axon terminal = %+v", ax)
		}
		// The axon signs its terminal info as Bittensor's axon does.
		sig, err := parseSignature(ax.Signature)
		if err != nil {
			t.Fatal(err)
		}
		if ok, _ := keys.Verify(bobSS58, []byte(AxonSignatureMessage(ax.Nonce, aliceSS58, bobSS58, ax.UUID)), sig); !ok {
			t.Error("axon terminal signature does not verify")
		}
		if resp.Dendrite.Hotkey != aliceSS58 || resp.Dendrite.IP != "127.0.0.1" || resp.Dendrite.Port == 0 || resp.Dendrite.Nonce == 0 {
			t.Errorf("dendrite terminal = %+v", resp.Dendrite)
		}
	}
	if ta.runs.Load() != 3 {
		t.Errorf("runs = %d", ta.runs.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(observed, ",") != "Echo:200,Echo:200,Echo:200" {
		t.Errorf("observed %v", observed)
	}
}

// TestResponseHeadersOnTheWire reads the raw response: header keys must be
// lower case, because Bittensor's Python dendrite matches
// "bt_header_axon_" case-sensitively.
func TestResponseHeadersOnTheWire(t *testing.T) {
	ta := startAxon(t, Config{}, Hooks{})
	d := NewDendrite(mustKey(t, "//Alice"))
	r := signedRequest(t, d, ta.target, "Echo", echoRequest{Timeline: 1}, 5*time.Second, testUUID, d.nextNonce())
	conn, err := net.Dial("tcp", ta.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var b bytes.Buffer
	b.WriteString("POST /Echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(r.body)) + "\r\n")
	for k, vs := range r.header {
		b.WriteString(k + ": " + vs[0] + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(r.body)
	if _, err := conn.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	raw, err := io.ReadAll(bufio.NewReader(conn))
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := strings.Cut(string(raw), "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 200") {
		t.Fatalf("response head:\n%s", head)
	}
	for _, want := range []string{
		"\r\nbt_header_axon_status_code: 200\r\n", "\r\nbt_header_axon_status_message: Success\r\n",
		"\r\nbt_header_axon_hotkey: " + bobSS58 + "\r\n", "\r\nbt_header_dendrite_hotkey: " + aliceSS58 + "\r\n",
		"\r\nname: Echo\r\n", "\r\ntimeout: 5.0\r\n", "\r\ncomputed_body_hash: " + EmptyBodyHash + "\r\n",
		"\r\nbt_header_axon_process_time: ",
	} {
		if !strings.Contains(head, want) {
			t.Errorf("response head lacks %q:\n%s", strings.TrimSpace(want), head)
		}
	}
}

func TestHandlerErrors(t *testing.T) {
	srvKey := mustKey(t, "//Bob")
	srv, err := NewServer(Config{Hotkey: srvKey}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Attach("Conflict", func(context.Context, *Call) (any, error) {
		return nil, Errorf(http.StatusConflict, "lease held by another renter")
	}, Hooks{})
	srv.Attach("Broken", func(context.Context, *Call) (any, error) {
		return nil, errors.New("docker: secret detail")
	}, Hooks{})
	srv.Attach("Panics", func(context.Context, *Call) (any, error) { panic("boom") }, Hooks{})
	srv.Attach("Scalar", func(context.Context, *Call) (any, error) { return 42, nil }, Hooks{})
	srv.Attach("Slow", func(ctx context.Context, _ *Call) (any, error) {
		time.Sleep(1500 * time.Millisecond) // ignores ctx on purpose
		return nil, nil
	}, Hooks{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx, ln)
	target := Target{Addr: ln.Addr().String(), Hotkey: bobSS58}
	d := NewDendrite(mustKey(t, "//Alice"))

	tests := []struct {
		name       string
		timeout    time.Duration
		wantStatus int
		wantMsg    string
		notMsg     string
	}{
		{"Conflict", time.Second, 409, "lease held by another renter", ""},
		{"Broken", time.Second, 500, "Internal Server Error #", "secret"},
		{"Panics", time.Second, 500, "Internal Server Error #", "boom"},
		{"Scalar", time.Second, 500, "Internal Server Error #", ""},
		{"Slow", 150 * time.Millisecond, 408, "Response timeout after: 0.15s", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			res, err := d.Call(context.Background(), target, tt.name, nil, nil, tt.timeout)
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if ae.Status != tt.wantStatus || StatusCode(err) != tt.wantStatus || res == nil || res.StatusCode != tt.wantStatus {
				t.Errorf("status = %d (StatusCode %d, result %+v), want %d", ae.Status, StatusCode(err), res, tt.wantStatus)
			}
			if !strings.Contains(ae.Message, tt.wantMsg) || (tt.notMsg != "" && strings.Contains(ae.Message, tt.notMsg)) {
				t.Errorf("message = %q", ae.Message)
			}
			if !res.Signed {
				t.Error("error response to a verified request not signed")
			}
			if tt.wantStatus == 408 && time.Since(start) > time.Second {
				t.Errorf("408 after %v: the axon waited for the handler", time.Since(start))
			}
		})
	}
}

func TestDendriteTransportErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d := NewDendrite(mustKey(t, "//Alice"))
	_, err = d.Call(context.Background(), Target{Addr: addr, Hotkey: bobSS58}, "Echo", nil, nil, time.Second)
	if StatusCode(err) != http.StatusServiceUnavailable {
		t.Errorf("closed port: StatusCode(%v) = %d, want 503", err, StatusCode(err))
	}

	// An axon that never answers: the call gives up after timeout + grace.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	d = NewDendrite(mustKey(t, "//Alice"), WithTimeoutGrace(50*time.Millisecond))
	start := time.Now()
	_, err = d.Call(context.Background(), Target{Addr: silent.Addr().String(), Hotkey: bobSS58}, "Echo", nil, nil, 100*time.Millisecond)
	if StatusCode(err) != http.StatusRequestTimeout {
		t.Errorf("silent axon: StatusCode(%v) = %d, want 408", err, StatusCode(err))
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("call took %v", el)
	}
	if _, err := d.Call(context.Background(), Target{Addr: "no-port", Hotkey: bobSS58}, "Echo", nil, nil, time.Second); err == nil {
		t.Error("bad address: no error")
	}
	if _, err := d.Call(context.Background(), Target{Addr: "127.0.0.1:1", Hotkey: bobSS58}, "Echo", 5, nil, time.Second); err == nil {
		t.Error("scalar request: no error")
	}
}

// TestDendriteRefusesForgedResponse checks that a response signature made
// by another key, or over another body, is an error.
func TestDendriteRefusesForgedResponse(t *testing.T) {
	charlie := mustKey(t, "//Charlie")
	tests := []struct {
		name    string
		handler http.HandlerFunc
		opts    []DendriteOption
		wantErr string
	}{
		{"signed by another key", func(w http.ResponseWriter, r *http.Request) {
			body := []byte(`{"output":{}}`)
			n, _ := strconv.ParseInt(r.Header.Get("bt_header_dendrite_nonce"), 10, 64)
			sig, _ := charlie.Sign([]byte(ResponseSignatureMessage(5, n, aliceSS58, bobSS58, 200, body)))
			w.Header()["bt_header_axon_nonce"] = []string{"5"}
			w.Header()[BodySignatureHeader] = []string{formatSignature(sig)}
			w.Write(body)
		}, nil, "does not verify"},
		{"unsigned when required", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"output":{}}`))
		}, []DendriteOption{WithRequireSignedResponse()}, "not signed"},
		{"response too large", func(w http.ResponseWriter, r *http.Request) {
			w.Write(bytes.Repeat([]byte("x"), 2048))
		}, []DendriteOption{WithMaxResponseBytes(1024)}, "exceeds"},
		{"not json", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`<html>`))
		}, nil, "decode response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			hs := &http.Server{Handler: tt.handler}
			go hs.Serve(ln)
			defer hs.Close()
			d := NewDendrite(mustKey(t, "//Alice"), tt.opts...)
			_, err = d.Call(context.Background(), Target{Addr: ln.Addr().String(), Hotkey: bobSS58}, "Echo", nil, &struct{}{}, time.Second)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewServerAndAttachValidation(t *testing.T) {
	if _, err := NewServer(Config{}, nil); err == nil {
		t.Error("NewServer without hotkey: no error")
	}
	srv, err := NewServer(Config{Hotkey: mustKey(t, "//Bob")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	h := func(context.Context, *Call) (any, error) { return nil, nil }
	srv.Attach("Allocate", h, Hooks{})
	for _, tt := range []struct {
		name string
		h    Handler
	}{{"Allocate", h}, {"", h}, {"a/b", h}, {"Specs", nil}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Attach(%q) did not panic", tt.name)
				}
			}()
			srv.Attach(tt.name, tt.h, Hooks{})
		}()
	}
}

func TestServeStopsOnCloseAndContext(t *testing.T) {
	srv, err := NewServer(Config{Hotkey: mustKey(t, "//Bob")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv.Attach("Block", func(ctx context.Context, _ *Call) (any, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}, Hooks{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), ln) }()
	d := NewDendrite(mustKey(t, "//Alice"))
	callDone := make(chan error, 1)
	go func() {
		_, err := d.Call(context.Background(), Target{Addr: ln.Addr().String(), Hotkey: bobSS58}, "Block", nil, nil, 30*time.Second)
		callDone <- err
	}()
	<-started
	if err := srv.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	select {
	case err := <-callDone:
		if err == nil {
			t.Error("call to a closed axon succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("call did not end after Close")
	}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := srv.Serve(context.Background(), ln2); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve after Close = %v", err)
	}
}
