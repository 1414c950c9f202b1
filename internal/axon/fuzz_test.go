package axon

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/keys"
)

// fuzzSeed is a set of valid signed requests made at a fixed time.
type fuzzSeed struct {
	now   time.Time
	nonce int64
	uuids map[string]bool // the uuids of reqs
	reqs  []*rawRequest
}

func newFuzzSeed(tb testing.TB) *fuzzSeed {
	tb.Helper()
	now := time.Unix(1_700_000_000, 0)
	d := NewDendrite(mustKey(tb, "//Alice"))
	target := Target{Addr: "127.0.0.1:8091", Hotkey: bobSS58}
	s := &fuzzSeed{now: now, nonce: now.UnixNano(), uuids: map[string]bool{}}
	marked := signedRequest(tb, d, target, "Echo", echoRequest{Timeline: 30, Checking: true}, 12*time.Second, testUUID, s.nonce)
	legacy := signedRequest(tb, d, target, "Echo", echoRequest{Timeline: 1}, 12*time.Second, legacyUUID, s.nonce)
	legacy.del(BodySignatureHeader)
	hashed := signedRequest(tb, d, target, "Hashed", promptRequest{Prompt: "p", Messages: []map[string]string{{"a": "b'c"}}}, 12*time.Second,
		"6e696331-0000-8000-8000-0000000000cc", s.nonce)
	s.uuids[testUUID], s.uuids[legacyUUID], s.uuids["6e696331-0000-8000-8000-0000000000cc"] = true, true, true
	s.reqs = []*rawRequest{marked, legacy, hashed}
	return s
}

// headerBlob serialises headers as "key: value" lines, sorted.
func headerBlob(h http.Header) string {
	var lines []string
	for k, vs := range h {
		for _, v := range vs {
			lines = append(lines, k+": "+v)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func parseHeaderBlob(blob string) http.Header {
	h := http.Header{}
	for line := range strings.SplitSeq(blob, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if len(k)%2 == 0 { // both storage forms: canonical and verbatim
			h.Add(k, strings.TrimSpace(v))
		} else {
			h[k] = append(h[k], strings.TrimSpace(v))
		}
	}
	return h
}

// FuzzParseHeaders feeds arbitrary synapse names, headers and bodies to the
// axon. It must never panic, and a request may only reach a handler if it
// carries the seed's signed nonce, hotkeys and uuid (signatures cannot be
// forged), with the signed body for dendrites that sign bodies.
func FuzzParseHeaders(f *testing.F) {
	seed := newFuzzSeed(f)
	for _, r := range seed.reqs {
		f.Add(r.name, headerBlob(r.header), r.body)
	}
	f.Add("Echo", "bt_header_dendrite_nonce: 1\nbt_header_dendrite_hotkey: "+aliceSS58+"\nbt_header_dendrite_uuid: x\nbt_header_dendrite_signature: 0x00\ncomputed_body_hash: ", []byte(`{}`))
	f.Add("Hashed", "timeout: nan\nbt_header_dendrite_nonce: -9223372036854775808", []byte(`{"prompt": [[[[[[[]]]]]]], "messages": {"\ud800": 1e999}}`))
	f.Add("", "", []byte(nil))
	bob := mustKey(f, "//Bob")

	f.Fuzz(func(t *testing.T, name, blob string, body []byte) {
		srv, err := NewServer(Config{Hotkey: bob, Now: func() time.Time { return seed.now }, MaxBodyBytes: 4096}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		var ran atomic.Bool
		h := func(ctx context.Context, call *Call) (any, error) {
			ran.Store(true)
			return map[string]bool{"ok": true}, nil
		}
		srv.Attach("Echo", h, Hooks{})
		srv.Attach("Hashed", h, Hooks{HashFields: []string{"prompt", "messages"}})

		header := parseHeaderBlob(blob)
		req := &http.Request{
			Method: http.MethodPost, URL: &url.URL{Path: "/" + name}, Header: header,
			Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
			RemoteAddr: "127.0.0.1:40000", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)

		if rec.Code != http.StatusOK {
			if ran.Load() {
				t.Fatalf("handler ran for a refused request (status %d)", rec.Code)
			}
			return
		}
		if !ran.Load() {
			t.Fatal("200 without running the handler")
		}
		in, aerr := parseInbound(header, DefaultMaxTimeout)
		if aerr != nil {
			t.Fatalf("accepted request does not parse: %v", aerr)
		}
		// Signatures cannot be forged: an accepted request carries the seed's
		// signed values, and a body-signing dendrite's body is one Alice signed
		// (checked here with keys.Verify directly, not the axon's code).
		d := in.dendrite
		if _, known := seed.uuids[d.UUID]; !known || d.Nonce != seed.nonce || d.Hotkey != aliceSS58 {
			t.Fatalf("accepted a request the seed never signed: %+v", d)
		}
		if ok, _ := keys.Verify(aliceSS58, []byte(SignatureMessage(d.Nonce, d.Hotkey, bobSS58, d.UUID, in.bodyHash)), in.sig); !ok {
			t.Fatal("accepted a request whose signature does not verify")
		}
		if signsBody(d.UUID) {
			msg := BodySignatureMessage(d.Nonce, d.Hotkey, bobSS58, d.UUID, body)
			if ok, _ := keys.Verify(aliceSS58, []byte(msg), in.bodySig); !ok {
				t.Fatalf("accepted an altered body for uuid %s:\n%s", d.UUID, body)
			}
		}
	})
}

// FuzzDecodeResponse feeds arbitrary responses to the dendrite's response
// reader: it must never panic nor report a forged response as signed.
func FuzzDecodeResponse(f *testing.F) {
	seed := newFuzzSeed(f)
	bob := mustKey(f, "//Bob")
	srv, err := NewServer(Config{Hotkey: bob, Now: func() time.Time { return seed.now }}, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	srv.Attach("Echo", func(context.Context, *Call) (any, error) { return map[string]int{"output": 1}, nil }, Hooks{})
	r := seed.reqs[0]
	hreq := &http.Request{Method: http.MethodPost, URL: &url.URL{Path: "/Echo"}, Header: r.header.Clone(),
		Body: io.NopCloser(bytes.NewReader(r.body)), ContentLength: int64(len(r.body)), RemoteAddr: "127.0.0.1:40000"}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, hreq)
	if rec.Code != 200 {
		f.Fatalf("seed request refused: %d %s", rec.Code, rec.Body)
	}
	f.Add(200, headerBlob(rec.Header()), rec.Body.Bytes())
	f.Add(403, "bt_header_axon_status_code: 403\nbt_header_axon_process_time: 1e308", []byte(`{"message":"no"}`))
	f.Add(200, "bt_header_axon_nonce: x", []byte(`{"axon":{"status_code":"2e3","process_time":"-1"}}`))

	d := NewDendrite(mustKey(f, "//Alice"))
	target := Target{Addr: "127.0.0.1:8091", Hotkey: bobSS58}
	f.Fuzz(func(t *testing.T, status int, blob string, body []byte) {
		resp := &http.Response{StatusCode: status, Header: parseHeaderBlob(blob)}
		res, err := d.readResponse(resp, body, target, hreq)
		if res == nil {
			t.Fatal("nil result")
		}
		if err != nil || !res.Signed {
			return
		}
		// Checked with keys.Verify directly, not the dendrite's code.
		sig, perr := parseSignature(headerGet(resp.Header, BodySignatureHeader))
		msg := ResponseSignatureMessage(res.Axon.Nonce, seed.nonce, aliceSS58, bobSS58, status, body)
		if ok, _ := keys.Verify(bobSS58, []byte(msg), sig); perr != nil || !ok {
			t.Fatalf("forged response reported as signed: %d %s", status, body)
		}
	})
}
