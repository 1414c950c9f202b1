package local

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
)

// post sends a raw body to the node and decodes the answer.
func post(tb testing.TB, n *Node, body []byte) (int, rpcResponseRaw) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, n.Endpoint()+"/rpc", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Close = true // no idle connection outlives the test
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var r rpcResponseRaw
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		tb.Fatalf("answer is not JSON: %v", err)
	}
	return resp.StatusCode, r
}

type rpcResponseRaw struct {
	Result json.RawMessage `json:"result"`
	Error  *rpcError       `json:"error"`
}

func submitRaw(tb testing.TB, n *Node, x *extrinsic) rpcResponseRaw {
	tb.Helper()
	body, err := json.Marshal(rpcRequest{Method: "submit", Params: mustRaw(x)})
	if err != nil {
		tb.Fatal(err)
	}
	_, r := post(tb, n, body)
	return r
}

func TestSignedExtrinsics(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, nil)
	alice, bob := key(t, "//Alice"), key(t, "//Bob")
	nonce := must[uint64](t)(w.c.Nonce(ctx, alice.SS58()))
	head := w.n.Head()
	args := transferArgs{Dest: bob.SS58(), Amount: subnet.TAO(1)}
	x, err := sign(w.n.GenesisHash(), alice, callTransfer, args, nonce, head)
	if err != nil {
		t.Fatal(err)
	}
	if r := submitRaw(t, w.n, x); r.Error != nil {
		t.Fatalf("first submit: %+v", r.Error)
	}
	if got := must[uint64](t)(w.c.Nonce(ctx, alice.SS58())); got != nonce+1 {
		t.Fatalf("nonce = %d, want %d", got, nonce+1)
	}
	balance := func() subnet.Balance { return must[subnet.Balance](t)(w.c.Balance(ctx, bob.SS58())) }
	if balance() != subnet.TAO(1) {
		t.Fatal("transfer not applied")
	}

	other := make([]byte, 32)
	tamper := func(f func(x *extrinsic)) *extrinsic {
		y, err := sign(w.n.GenesisHash(), alice, callTransfer, args, nonce+1, head)
		if err != nil {
			t.Fatal(err)
		}
		f(y)
		return y
	}
	resign := func(genesis []byte, nonce, era uint64) *extrinsic {
		y, err := sign(genesis, alice, callTransfer, args, nonce, era)
		if err != nil {
			t.Fatal(err)
		}
		return y
	}
	for _, tc := range []struct {
		name string
		x    *extrinsic
		code string
	}{
		{"replay", x, subnet.EUNAUTHORIZED},
		{"future nonce", resign(w.n.GenesisHash(), nonce+5, head), subnet.EUNAUTHORIZED},
		{"other chain", resign(other, nonce+1, head), subnet.EUNAUTHORIZED},
		{"era ahead", resign(w.n.GenesisHash(), nonce+1, head+1), subnet.EUNAUTHORIZED},
		{"tampered amount", tamper(func(y *extrinsic) {
			y.Args = json.RawMessage(strings.Replace(string(y.Args), "1000000000", "9000000000", 1))
		}), subnet.EUNAUTHORIZED},
		{"tampered nonce", tamper(func(y *extrinsic) { y.Nonce++ }), subnet.EUNAUTHORIZED},
		{"other signer", tamper(func(y *extrinsic) { y.Signer = bob.SS58() }), subnet.EUNAUTHORIZED},
		{"signature not sr25519", tamper(func(y *extrinsic) { y.Signature = "0x" + strings.Repeat("00", 64) }), subnet.EUNAUTHORIZED},
		{"short signature", tamper(func(y *extrinsic) { y.Signature = "0x00" }), subnet.EUNAUTHORIZED},
		{"unknown call", tamper(func(y *extrinsic) { y.Call = "sudo" }), subnet.EINVALID},
		{"unknown argument", tamper(func(y *extrinsic) { y.Args = json.RawMessage(`{"dest":"x","amount":1,"extra":1}`) }), subnet.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := submitRaw(t, w.n, tc.x)
			if r.Error == nil || r.Error.Code != tc.code {
				t.Fatalf("error = %+v, want %s", r.Error, tc.code)
			}
			if balance() != subnet.TAO(1) || must[uint64](t)(w.c.Nonce(ctx, alice.SS58())) != nonce+1 {
				t.Fatal("refused extrinsic changed state")
			}
		})
	}

	t.Run("expired", func(t *testing.T) {
		y := resign(w.n.GenesisHash(), nonce+1, head)
		advance(t, w.n, Mortality+1)
		if r := submitRaw(t, w.n, y); r.Error == nil || r.Error.Code != subnet.EUNAUTHORIZED {
			t.Fatalf("expired extrinsic: %+v", r.Error)
		}
	})
}

func TestRPCErrors(t *testing.T) {
	n := testNode(t, nil)
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"not json", `{`, 200, subnet.EINVALID},
		{"unknown method", `{"method":"drop_tables"}`, 200, subnet.EINVALID},
		{"unknown field", `{"method":"block","x":1}`, 200, subnet.EINVALID},
		{"trailing data", `{"method":"block"} {}`, 200, subnet.EINVALID},
		{"bad params", `{"method":"metagraph","params":{"netuid":-1}}`, 200, subnet.EINVALID},
		{"no subnet", `{"method":"metagraph","params":{"netuid":3}}`, 200, subnet.ENOSUBNET},
		{"bad address", `{"method":"account","params":{"address":"abc"}}`, 200, subnet.EINVALID},
		{"too large", `{"method":"block","params":{"pad":"` + strings.Repeat("a", MaxRequestBytes) + `"}}`, 413, subnet.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, r := post(t, n, []byte(tc.body))
			if status != tc.status || r.Error == nil || r.Error.Code != tc.code {
				t.Fatalf("status %d error %+v; want %d %s", status, r.Error, tc.status, tc.code)
			}
		})
	}
	req, err := http.NewRequest(http.MethodGet, n.Endpoint()+"/rpc", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /rpc: %d", resp.StatusCode)
	}
}

// FuzzParseRequest feeds arbitrary bodies to the request decoder: it must
// never panic, and whatever it accepts must be a known method with typed
// parameters.
func FuzzParseRequest(f *testing.F) {
	alice, err := keys.FromURI("//Alice")
	if err != nil {
		f.Fatal(err)
	}
	x, err := sign(make([]byte, 32), alice, callSetWeights, setWeightsArgs{NetUID: 1, UIDs: []subnet.UID{0, 1}, Weights: []uint16{1, 2}}, 0, 0)
	if err != nil {
		f.Fatal(err)
	}
	sub, _ := json.Marshal(rpcRequest{Method: "submit", Params: mustRaw(x)})
	for _, s := range []string{
		`{"method":"block"}`,
		`{"method":"metagraph","params":{"netuid":1}}`,
		`{"method":"uid_for_hotkey","params":{"netuid":1,"hotkey":"` + alice.SS58() + `"}}`,
		`{"method":"wait_block","params":{"block":5,"timeout_ms":100}}`,
		`{"method":"faucet","params":{"address":"` + alice.SS58() + `","amount":5}}`,
		`{"method":"submit","params":{"call":"transfer","signer":"x","nonce":0,"era":0,"args":{},"signature":""}}`,
		string(sub),
		`{"method":"submit","params":{"call":"burned_register","args":null}}`,
		`[]`, `null`, `{"method":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := parseRequest(body)
		if err != nil {
			if subnet.ErrorCode(err) == subnet.EINTERNAL {
				t.Fatalf("unclassified parse error: %v", err)
			}
			return
		}
		if c.params == nil {
			t.Fatalf("accepted %q without parameters", c.method)
		}
		if x, ok := c.params.(*extrinsic); ok {
			if c.args == nil {
				t.Fatal("extrinsic accepted without decoded arguments")
			}
			// Verification of an arbitrary signature must not panic either.
			_ = x.verify(make([]byte, 32))
		}
	})
}

// A validly signed extrinsic that a rule refuses uses up its nonce (and
// changes nothing else), so whoever saw it cannot replay it once it would
// succeed; the client signs its next call with the following nonce.
func TestRefusedExtrinsicUsesItsNonce(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, nil)
	alice, bob := key(t, "//Alice"), key(t, "//Bob")
	nonce := must[uint64](t)(w.c.Nonce(ctx, alice.SS58()))
	have := must[subnet.Balance](t)(w.c.Balance(ctx, alice.SS58()))
	x, err := sign(w.n.GenesisHash(), alice, callTransfer, transferArgs{Dest: bob.SS58(), Amount: have}, nonce, w.n.Head())
	if err != nil {
		t.Fatal(err)
	}
	iss := checkIssuance(t, w.n)
	if r := submitRaw(t, w.n, x); r.Error == nil || r.Error.Code != subnet.EINSUFFICIENTBALANCE {
		t.Fatalf("transfer of the whole balance (fee not covered): %+v", r.Error)
	}
	if got := must[uint64](t)(w.c.Nonce(ctx, alice.SS58())); got != nonce+1 {
		t.Fatalf("nonce %d after a refused extrinsic, want %d", got, nonce+1)
	}
	if must[subnet.Balance](t)(w.c.Balance(ctx, alice.SS58())) != have || must[subnet.Balance](t)(w.c.Balance(ctx, bob.SS58())) != 0 ||
		checkIssuance(t, w.n) != iss {
		t.Fatal("a refused extrinsic changed balances")
	}

	// Alice receives enough to cover it: the observed extrinsic must not
	// apply now.
	must[subnet.Balance](t)(w.c.Faucet(ctx, alice.SS58(), subnet.TAO(1)))
	if r := submitRaw(t, w.n, x); r.Error == nil || r.Error.Code != subnet.EUNAUTHORIZED || !strings.Contains(r.Error.Message, "stale nonce") {
		t.Fatalf("replayed refused extrinsic: %+v", r.Error)
	}
	if got := must[subnet.Balance](t)(w.c.Balance(ctx, bob.SS58())); got != 0 {
		t.Fatalf("the replay moved %s", got)
	}
	// The client picks up the next nonce.
	if err := w.c.Transfer(ctx, alice, bob.SS58(), subnet.TAO(1)); err != nil {
		t.Fatal(err)
	}
	wantCode(t, w.c.Transfer(ctx, alice, bob.SS58(), subnet.TAO(1_000_000)), subnet.EINSUFFICIENTBALANCE)
	if err := w.c.Transfer(ctx, alice, bob.SS58(), subnet.TAO(1)); err != nil {
		t.Fatalf("after a refusal: %v", err)
	}
	if got := must[uint64](t)(w.c.Nonce(ctx, alice.SS58())); got != nonce+4 {
		t.Fatalf("nonce %d, want %d", got, nonce+4)
	}
}
