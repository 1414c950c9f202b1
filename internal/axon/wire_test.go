package axon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/keys"
)

const (
	aliceSS58 = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
	bobSS58   = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
)

func mustKey(tb testing.TB, uri string) *keys.Keypair {
	tb.Helper()
	k, err := keys.FromURI(uri)
	if err != nil {
		tb.Fatalf("key %s: %v", uri, err)
	}
	return k
}

func TestPyFloatRepr(t *testing.T) {
	// Expected values are Python 3's repr(float).
	tests := []struct {
		in   float64
		want string
	}{
		{12, "12.0"}, {0.1, "0.1"}, {1e16, "1e+16"}, {1.5e16, "1.5e+16"}, {1e-5, "1e-05"},
		{0.0001, "0.0001"}, {1e15, "1000000000000000.0"}, {123456789012345678, "1.2345678901234568e+17"},
		{math.Copysign(0, -1), "-0.0"}, {1e22, "1e+22"}, {5e-324, "5e-324"},
		{1.7976931348623157e308, "1.7976931348623157e+308"}, {100000, "100000.0"}, {-2.5, "-2.5"},
		{math.Inf(1), "inf"}, {math.NaN(), "nan"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := pyFloatRepr(tt.in); got != tt.want {
				t.Errorf("pyFloatRepr(%v) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestPyStr(t *testing.T) {
	// Expected values are Python 3's str(json.loads(in)).
	tests := []struct {
		in, want string
	}{
		{`"hello"`, `hello`},
		{`"a'b"`, `a'b`},
		{`["a'b", "a\"b", "a'\"b"]`, `["a'b", 'a"b', 'a\'"b']`},
		{`"\u0000\u007f\u0080\u00a0\u200b😀\u2028é\\"`, "\x00\x7f\u0080\u00a0\u200b😀\u2028é\\"},
		{`["\u0000\u007f\u0080\u00a0\u200b😀\u2028é\\"]`, `['\x00\x7f\x80\xa0\u200b😀\u2028é\\']`},
		{`{"b": [1, 2.5, true, null, "x"], "a": {"c": "d"}}`, `{'b': [1, 2.5, True, None, 'x'], 'a': {'c': 'd'}}`},
		{`[1e5, 1E+2, -0, 1.0e0, 1E400]`, `[100000.0, 100.0, 0, 1.0, inf]`},
		{`123456789012345678901234567890`, `123456789012345678901234567890`},
		{`{}`, `{}`}, {`[]`, `[]`}, {`true`, `True`}, {`null`, `None`},
		{`"tab\there\nnl"`, "tab\there\nnl"}, {`["tab\there\nnl\r"]`, `['tab\there\nnl\r']`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := pyStr(json.RawMessage(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("pyStr(%s) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestBodyHash(t *testing.T) {
	body := []byte(`{"prompt": "hello", "messages": [{"role": "user", "content": "it's \"quoted\""}],` +
		` "n": 3, "t": 0.5, "big": 1e20, "ok": true, "none": null, "name": "X"}`)
	tests := []struct {
		name   string
		fields []string
		want   string
	}{
		// sha3_256("") as Python's hashlib computes it.
		{"no fields", nil, "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"},
		// Computed with Python: get_hash("".join(get_hash(str(json.loads(body)[f])) for f in fields)).
		{"all kinds", []string{"prompt", "messages", "n", "t", "big", "ok", "none"}, "18b14de149d1b1fd84189d9adbdfda482576721d7309e3f36d2916344c1b9a85"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BodyHash(body, tt.fields)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("BodyHash = %s, want %s", got, tt.want)
			}
		})
	}
	if _, err := BodyHash(body, []string{"missing"}); err == nil {
		t.Error("BodyHash with a missing field: no error")
	}
	if _, err := BodyHash([]byte(`[1]`), []string{"a"}); err == nil {
		t.Error("BodyHash of a non-object: no error")
	}
}

func TestTerminalInfoJSON(t *testing.T) {
	ti := TerminalInfo{StatusCode: 200, ProcessTime: 0.25, Port: 8091, Nonce: 1700000000000000001, Hotkey: aliceSS58}
	b, err := json.Marshal(ti)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"status_code":200,"status_message":null,"process_time":0.25,"ip":null,"port":8091,"version":null,` +
		`"nonce":1700000000000000001,"uuid":null,"hotkey":"` + aliceSS58 + `","signature":null}`
	if string(b) != want {
		t.Errorf("marshal:\n got %s\nwant %s", b, want)
	}
	var back TerminalInfo
	if err := json.Unmarshal(b, &back); err != nil || back != ti {
		t.Errorf("round trip = %+v, %v", back, err)
	}
	// The SDK may carry numbers as strings (header values, str(process_time)).
	if err := json.Unmarshal([]byte(`{"status_code":"408","process_time":"1.5","nonce":"7","extra":1}`), &back); err != nil {
		t.Fatal(err)
	}
	if back.StatusCode != 408 || back.ProcessTime != 1.5 || back.Nonce != 7 {
		t.Errorf("lenient decode = %+v", back)
	}
	if err := json.Unmarshal([]byte(`{"status_code":"x"}`), &back); err == nil {
		t.Error("bad status_code decoded without error")
	}
}

// TestGoldenRequest fixes the request a dendrite sends for a fixed nonce,
// uuid and key pair: headers, body, body hash and the signed message, as
// Bittensor's dendrite builds them (preprocess_synapse_for_request,
// Synapse.to_headers, model_dump).
func TestGoldenRequest(t *testing.T) {
	alice := mustKey(t, "//Alice")
	if alice.SS58() != aliceSS58 || mustKey(t, "//Bob").SS58() != bobSS58 {
		t.Fatal("development keys changed")
	}
	const (
		nonce = int64(1700000000000000000)
		uuid  = "6e696331-0000-8000-8000-000000000000"
	)
	d := NewDendrite(alice)
	req := struct {
		Timeline int  `json:"timeline"`
		Checking bool `json:"checking"`
	}{30, true}
	hreq, err := d.newRequest(context.Background(), Target{Addr: "127.0.0.1:8091", Hotkey: bobSS58}, "Allocate", req, 12*time.Second, uuid, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if hreq.Method != http.MethodPost || hreq.URL.String() != "http://127.0.0.1:8091/Allocate" {
		t.Errorf("request line = %s %s", hreq.Method, hreq.URL)
	}
	h := hreq.Header
	sig := headerGet(h, "bt_header_dendrite_signature")
	wantHeaders := map[string]string{
		"name":                         "Allocate",
		"timeout":                      "12.0",
		"bt_header_axon_ip":            "127.0.0.1",
		"bt_header_axon_port":          "8091",
		"bt_header_axon_hotkey":        bobSS58,
		"bt_header_dendrite_version":   "9012002",
		"bt_header_dendrite_nonce":     "1700000000000000000",
		"bt_header_dendrite_uuid":      uuid,
		"bt_header_dendrite_hotkey":    aliceSS58,
		"bt_header_dendrite_signature": sig,
		"computed_body_hash":           EmptyBodyHash,
		"Content-Type":                 "application/json",
	}
	for k, want := range wantHeaders {
		// Keys must be on the wire exactly as the SDK writes them.
		if k != "Content-Type" {
			if _, ok := h[k]; !ok {
				t.Errorf("header %q not set verbatim", k)
			}
		}
		if got := headerGet(h, k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"bt_header_dendrite_ip", "bt_header_axon_nonce", "bt_header_dendrite_status_code"} {
		if headerGet(h, k) != "" {
			t.Errorf("unset field sent as header %s", k)
		}
	}

	msg := "1700000000000000000." + aliceSS58 + "." + bobSS58 + "." + uuid + "." + EmptyBodyHash
	if got := SignatureMessage(nonce, aliceSS58, bobSS58, uuid, EmptyBodyHash); got != msg {
		t.Errorf("signature message = %q, want %q", got, msg)
	}
	sigBytes, err := parseSignature(sig)
	if err != nil {
		t.Fatalf("signature %q: %v", sig, err)
	}
	if ok, err := keys.Verify(aliceSS58, []byte(msg), sigBytes); !ok || err != nil {
		t.Errorf("signature does not verify over %q: %v", msg, err)
	}

	body, err := io.ReadAll(hreq.Body)
	if err != nil {
		t.Fatal(err)
	}
	wantBody := `{"axon":{"status_code":null,"status_message":null,"process_time":null,"ip":"127.0.0.1","port":8091,` +
		`"version":null,"nonce":null,"uuid":null,"hotkey":"` + bobSS58 + `","signature":null},` +
		`"checking":true,"computed_body_hash":"",` +
		`"dendrite":{"status_code":null,"status_message":null,"process_time":null,"ip":null,"port":null,` +
		`"version":9012002,"nonce":1700000000000000000,"uuid":"` + uuid + `","hotkey":"` + aliceSS58 + `","signature":"` + sig + `"},` +
		`"header_size":0,"name":"Allocate","timeline":30,"timeout":12.0,"total_size":0}`
	if string(body) != wantBody {
		t.Errorf("body:\n got %s\nwant %s", body, wantBody)
	}
	if got := headerGet(h, "total_size"); got != fmt.Sprint(len(body)) {
		t.Errorf("total_size = %s, want %d", got, len(body))
	}
	bodySig, err := parseSignature(headerGet(h, BodySignatureHeader))
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := keys.Verify(aliceSS58, []byte(BodySignatureMessage(nonce, aliceSS58, bobSS58, uuid, body)), bodySig); !ok {
		t.Error("body signature does not verify")
	}
	if !signsBody(uuid) || signsBody("5ecbd69c-1cec-11ee-b0dc-e29ce36fec1a") || !signsBody(newDendriteUUID()) {
		t.Error("signsBody misclassifies uuids")
	}
}

func TestParseSignature(t *testing.T) {
	good := "0x" + fmt.Sprintf("%0128x", 1)
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"0x prefixed", good, true},
		{"bare", good[2:], true},
		{"empty", "", false},
		{"only prefix", "0x", false},
		{"not hex", "0x" + fmt.Sprintf("%0127xg", 1), false},
		{"short", good[:100], false},
		{"long", good + "00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseSignature(tt.in); (err == nil) != tt.ok {
				t.Errorf("parseSignature(%q) err = %v, want ok=%v", tt.in, err, tt.ok)
			}
		})
	}
}

// promptRequest declares required_hash_fields, as some synapses do.
type promptRequest struct {
	Prompt   string              `json:"prompt"`
	Messages []map[string]string `json:"messages"`
	Seed     int                 `json:"seed"`
}

func (promptRequest) RequiredHashFields() []string { return []string{"prompt", "messages"} }

// TestHashFieldsRoundTrip: a synapse with required_hash_fields gets a body
// hash over them; the axon recomputes it and refuses a body whose hashed
// fields changed, even from a dendrite that does not sign the body.
func TestHashFieldsRoundTrip(t *testing.T) {
	ta := startAxon(t, Config{}, Hooks{})
	var runs int
	ta.srv.Attach("Prompt", func(context.Context, *Call) (any, error) {
		runs++
		return map[string]string{"completion": "ok"}, nil
	}, Hooks{HashFields: []string{"prompt", "messages"}})
	d := NewDendrite(mustKey(t, "//Alice"))
	req := promptRequest{Prompt: "hi", Messages: []map[string]string{{"role": "user", "content": "it's"}}, Seed: 1}
	var resp struct {
		Completion string `json:"completion"`
		Prompt     string `json:"prompt"`
	}
	if _, err := d.Call(context.Background(), ta.target, "Prompt", req, &resp, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if resp.Completion != "ok" || resp.Prompt != "hi" || runs != 1 {
		t.Errorf("response %+v, runs %d", resp, runs)
	}

	r := signedRequest(t, d, ta.target, "Prompt", req, 5*time.Second, legacyUUID, d.nextNonce())
	r.del(BodySignatureHeader)
	want, _ := BodyHash(r.body, req.RequiredHashFields())
	if got := headerGet(r.header, "computed_body_hash"); got != want || got == EmptyBodyHash {
		t.Errorf("computed_body_hash = %s, want %s", got, want)
	}
	r.body = bytes.Replace(r.body, []byte(`"prompt":"hi"`), []byte(`"prompt":"HI"`), 1)
	if rep := send(t, ta.addr, r); rep.status != http.StatusBadRequest || !strings.Contains(rep.message, "Hash mismatch") {
		t.Errorf("altered hashed field: %d %q", rep.status, rep.message)
	}
	if runs != 1 {
		t.Errorf("runs = %d", runs)
	}
}
