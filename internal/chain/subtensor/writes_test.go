package subtensor

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	st "github.com/nicompute/nicompute/internal/chain/subtensor/subtensortest"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
)

// scriptedNode plays a subtensor node of runtime 343 (the recorded
// metadata) for writes: it serves storage from maps, takes extrinsics,
// reports them in block inBlock and answers that block's events.
type scriptedNode struct {
	tb   testing.TB
	rec  *st.Recordings
	m    *Metadata
	node *st.Node

	mu        sync.Mutex
	storage   map[string]string // key → value at the best block
	after     map[string]string // key → value at the inclusion block
	submitted [][]byte
	notes     []any         // statuses after submission
	submitErr *st.WireError // refusal by the pool instead
	outcome   string        // dispatch outcome of every submitted extrinsic
}

const (
	genesisHex   = "0x2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f"
	finalizedHex = "0xdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdb"
	inBlockHex   = "0xb10cb10cb10cb10cb10cb10cb10cb10cb10cb10cb10cb10cb10cb10cb10cb10c"
	// timestamp is a stand-in for the block's first (inherent) extrinsic.
	timestampXt = "0x280403000b10a0c1b69001"
)

// eventsHex builds System.Events for 1+n extrinsics: index 0 (the
// inherent) succeeded, indexes 1..n (submitted) have outcome ("ok" or a
// DispatchError). EventRecord = phase ++ event ++ topics:
// phase ApplyExtrinsic(i) = 00 ++ u32 i; event System (RuntimeEvent
// variant 0) ExtrinsicSuccess (00) or ExtrinsicFailed (01, then the
// DispatchError); DispatchEventInfo = weight (compact ref_time 00, compact
// proof_size 00), class Normal 00, pays_fee Yes 00; topics empty 00.
func eventsHex(tb testing.TB, outcome string, n int) string {
	const info = "00 00 00 00"
	b := appendCompact(nil, uint64(n+1))
	b = append(b, h(tb, "00 00000000  00 00 "+info+" 00")...)
	for i := 1; i <= n; i++ {
		b = append(b, 0x00, byte(i), 0, 0, 0) // ApplyExtrinsic(i), i < 256
		if outcome == "ok" {
			b = append(b, h(tb, "00 00 "+info+" 00")...)
		} else {
			b = append(b, h(tb, "00 01 "+outcome+" "+info+" 00")...)
		}
	}
	return hexBytes(b)
}

func newScriptedNode(tb testing.TB) (*Client, *scriptedNode) {
	tb.Helper()
	rec := loadRecordings(tb)
	s := &scriptedNode{tb: tb, rec: rec, m: metadataV15(tb, rec), storage: map[string]string{}, after: map[string]string{},
		notes: []any{"ready", map[string]any{"inBlock": inBlockHex}}, outcome: "ok"}
	s.node = st.NewNode(tb, s.handle)
	c, err := Dial(tb.Context(), s.node.URL(), testConfig(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c, s
}

// set stores a SubtensorModule value at the best block.
func (s *scriptedNode) set(entry string, value string, keys ...any) {
	k, _, err := s.m.storageKey(subtensorPallet, entry, keys...)
	if err != nil {
		s.tb.Fatal(err)
	}
	s.mu.Lock()
	s.storage[hexBytes(k)] = value
	s.mu.Unlock()
}

// setAfter stores a value seen at the inclusion block only.
func (s *scriptedNode) setAfter(entry string, value string, keys ...any) {
	k, _, err := s.m.storageKey(subtensorPallet, entry, keys...)
	if err != nil {
		s.tb.Fatal(err)
	}
	s.mu.Lock()
	s.after[hexBytes(k)] = value
	s.mu.Unlock()
}

func (s *scriptedNode) handle(method string, params []json.RawMessage) st.Reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	str := func(i int) string {
		var v string
		if i < len(params) {
			json.Unmarshal(params[i], &v)
		}
		return v
	}
	switch method {
	case "state_getRuntimeVersion":
		return st.Reply{Result: map[string]any{"specName": "node-subtensor", "specVersion": 343, "transactionVersion": 1}}
	case "state_call":
		if str(0) == "Metadata_metadata_at_version" {
			return st.Reply{Result: s.rec.MetadataAtVersion}
		}
	case "chain_getBlockHash":
		return st.Reply{Result: genesisHex}
	case "chain_getFinalizedHead", "chain_getHead":
		return st.Reply{Result: finalizedHex}
	case "chain_getHeader":
		return st.Reply{Result: map[string]any{"number": "0x689052", "parentHash": genesisHex}}
	case "system_accountNextIndex":
		return st.Reply{Result: 7}
	case "state_getStorageAt":
		key := str(0)
		if str(1) == inBlockHex {
			if v, ok := s.after[key]; ok {
				return st.Reply{Result: v}
			}
			if strings.HasPrefix(key, "0x26aa394eea5630e07c48ae0c9558cef780d41e5e16056765bc8461851072c9d7") { // System.Events
				return st.Reply{Result: eventsHex(s.tb, s.outcome, len(s.submitted))}
			}
		}
		if v, ok := s.storage[key]; ok {
			return st.Reply{Result: v}
		}
		return st.Reply{Result: nil}
	case "state_queryStorageAt":
		rep, _ := st.QueryFrom(s.tb, s.storage)(method, params)
		return rep
	case "author_submitAndWatchExtrinsic":
		b, err := parseHex(str(0))
		if err != nil {
			s.tb.Errorf("submitted %q", str(0))
		}
		s.submitted = append(s.submitted, b)
		if s.submitErr != nil {
			return st.Reply{Err: s.submitErr}
		}
		return st.Reply{Notes: s.notes}
	case "author_unwatchExtrinsic":
		return st.Reply{Result: true}
	case "chain_getBlock":
		if str(0) == inBlockHex {
			xts := []string{timestampXt}
			for _, x := range s.submitted {
				xts = append(xts, hexBytes(x))
			}
			return st.Reply{Result: map[string]any{"block": map[string]any{"header": map[string]any{}, "extrinsics": xts}}}
		}
	}
	s.tb.Errorf("scripted node: unexpected %s %s", method, params)
	return st.Reply{Err: &st.WireError{Code: -32601, Message: "unexpected"}}
}

func (s *scriptedNode) lastSubmitted() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.submitted) == 0 {
		return nil
	}
	return s.submitted[len(s.submitted)-1]
}

// checkSubmitted verifies the submitted extrinsic carries call, nonce 7
// and an era from the finalized block, signed by signer.
func (s *scriptedNode) checkSubmitted(tb testing.TB, signer *keys.Keypair, call []byte) {
	tb.Helper()
	xt := s.lastSubmitted()
	if xt == nil {
		tb.Fatal("nothing submitted")
	}
	// Era 2501 (block 0x689052 = 6852690, phase 18 of 64), nonce compact 7
	// = 1c, tip 00, metadata hash mode 00.
	extra := h(tb, "2501 1c 00 00")
	implicit := slices.Concat(h(tb, "57010000 01000000"), mustHex(tb, genesisHex), mustHex(tb, finalizedHex), []byte{0})
	tail := slices.Concat(extra, call)
	if !bytes.HasSuffix(xt, tail) {
		tb.Fatalf("extrinsic %x does not end with extra ++ call %x", xt, tail)
	}
	sig := xt[len(xt)-len(tail)-64 : len(xt)-len(tail)]
	if !bytes.Equal(xt[len(xt)-len(tail)-64-34:len(xt)-len(tail)-65], append([]byte{0}, signer.PublicKey()...)) {
		tb.Fatal("signer address missing")
	}
	payload := slices.Concat(call, extra, implicit)
	if ok, err := keys.VerifyPublic(signer.PublicKey(), signingPayload(payload, nil, nil), sig); !ok || err != nil {
		tb.Fatalf("signature does not verify: %v", err)
	}
}

func TestSetWeights(t *testing.T) {
	k := alice(t)
	call := h(t, "07 00  0100  08 0000 0500  08 ffff 0080  ca54000000000000")
	tests := []struct {
		name     string
		cr       string // CommitRevealWeightsEnabled[1]
		outcome  string // events outcome of our extrinsic
		poolErr  *st.WireError
		notes    []any
		wantCode string
		wantMsg  string
		submits  int
	}{
		{name: "included", cr: "0x00", outcome: "ok", submits: 1},
		// DispatchError::Module (03) { index 7 (SubtensorModule), error
		// [28, 0, 0, 0] }: variant 28 of the pallet's Error enum in
		// runtime 343 is SettingWeightsTooFast.
		{name: "rate limited in block", cr: "0x00", outcome: "03 07 1c000000", submits: 1,
			wantCode: subnet.ERATELIMITED, wantMsg: "SubtensorModule.SettingWeightsTooFast"},
		// Variant 4: HotKeyNotRegisteredInSubNet.
		{name: "not registered", cr: "0x00", outcome: "03 07 04000000", submits: 1,
			wantCode: subnet.ENOTREGISTERED, wantMsg: "HotKeyNotRegisteredInSubNet"},
		// DispatchError::BadOrigin (02).
		{name: "bad origin", cr: "0x00", outcome: "02", submits: 1, wantCode: subnet.EUNAUTHORIZED, wantMsg: "bad origin"},
		{name: "commit-reveal", cr: "0x01", wantCode: subnet.ECOMMITREVEAL,
			wantMsg: "weights must be committed"},
		{name: "commit-reveal by default", cr: "", wantCode: subnet.ECOMMITREVEAL, wantMsg: "commit-reveal"},
		{name: "pool rate limit", cr: "0x00", submits: 1,
			poolErr:  &st.WireError{Code: 1010, Message: "Invalid Transaction", Data: "Custom error: 6"},
			wantCode: subnet.ERATELIMITED, wantMsg: "RateLimitExceeded"},
		{name: "pool bad signature", cr: "0x00", submits: 1,
			poolErr:  &st.WireError{Code: 1010, Message: "Invalid Transaction", Data: "Transaction has a bad signature"},
			wantCode: subnet.EUNAUTHORIZED, wantMsg: "bad signature"},
		{name: "invalid before inclusion", cr: "0x00", submits: 1, notes: []any{"ready", "invalid"},
			wantCode: subnet.EUNAUTHORIZED, wantMsg: "invalid"},
		{name: "never included", cr: "0x00", submits: 1, notes: []any{"ready"},
			wantCode: subnet.EUNAVAILABLE, wantMsg: "not included within"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := newScriptedNode(t)
			c.cfg.InclusionTimeout = 300 * time.Millisecond
			s.set("NetworksAdded", "0x01", uint64(1))
			if tt.cr != "" {
				s.set("CommitRevealWeightsEnabled", tt.cr, uint64(1))
			}
			if tt.outcome != "" {
				s.outcome = tt.outcome
			}
			s.submitErr = tt.poolErr
			if tt.notes != nil {
				s.notes = tt.notes
			}
			err := c.SetWeights(t.Context(), k, 1, []subnet.UID{0, 5}, []uint16{65535, 32768}, 21706)
			if n := len(s.node.Called("author_submitAndWatchExtrinsic")); n != tt.submits {
				t.Fatalf("%d submissions, want %d", n, tt.submits)
			}
			if tt.wantCode == "" {
				if err != nil {
					t.Fatal(err)
				}
				s.checkSubmitted(t, k, call)
				return
			}
			if subnet.ErrorCode(err) != tt.wantCode || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("err %v (code %s), want %s with %q", err, subnet.ErrorCode(err), tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestSetWeightsNoSubnet(t *testing.T) {
	c, s := newScriptedNode(t)
	err := c.SetWeights(t.Context(), alice(t), 9, []subnet.UID{0}, []uint16{1}, 0)
	if subnet.ErrorCode(err) != subnet.ENOSUBNET || len(s.node.Called("author_submitAndWatchExtrinsic")) != 0 {
		t.Fatalf("err %v", err)
	}
	if err := c.SetWeights(t.Context(), alice(t), 1, []subnet.UID{0, 1}, []uint16{1}, 0); subnet.ErrorCode(err) != subnet.EINVALIDWEIGHTS {
		t.Fatalf("length mismatch: %v", err)
	}
}

func TestBurnedRegister(t *testing.T) {
	cold := alice(t)
	hot, err := keys.FromURI("//Bob")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("registers", func(t *testing.T) {
		c, s := newScriptedNode(t)
		s.set("NetworksAdded", "0x01", uint64(27))
		s.setAfter("Uids", "0x2a00", uint64(27), hot.PublicKey()) // uid 42 once included
		uid, err := c.BurnedRegister(t.Context(), cold, 27, hot.SS58())
		if err != nil || uid != 42 {
			t.Fatalf("uid %d, %v; want 42", uid, err)
		}
		// pallet 7, call 7 | netuid 27 | hotkey account
		s.checkSubmitted(t, cold, slices.Concat(h(t, "07 07 1b00"), hot.PublicKey()))
	})
	t.Run("already registered", func(t *testing.T) {
		c, s := newScriptedNode(t)
		s.set("Uids", "0x0300", uint64(27), hot.PublicKey())
		uid, err := c.BurnedRegister(t.Context(), cold, 27, hot.SS58())
		if uid != 3 || subnet.ErrorCode(err) != subnet.EALREADY || len(s.node.Called("author_submitAndWatchExtrinsic")) != 0 {
			t.Fatalf("uid %d, %v", uid, err)
		}
	})
	t.Run("no subnet", func(t *testing.T) {
		c, _ := newScriptedNode(t)
		if _, err := c.BurnedRegister(t.Context(), cold, 99, hot.SS58()); subnet.ErrorCode(err) != subnet.ENOSUBNET {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("bad hotkey", func(t *testing.T) {
		c, _ := newScriptedNode(t)
		if _, err := c.BurnedRegister(t.Context(), cold, 27, "5notanaddress"); subnet.ErrorCode(err) != subnet.EINVALID {
			t.Fatalf("err %v", err)
		}
	})
}

func TestServeAxon(t *testing.T) {
	k := alice(t)
	c, s := newScriptedNode(t)
	err := c.ServeAxon(t.Context(), k, 27, subnet.AxonInfo{IP: "192.222.59.109", Port: 6028, Version: 9011001})
	if err != nil {
		t.Fatal(err)
	}
	s.checkSubmitted(t, k, h(t, "07 04  1b00  397f8900  6d3bdec0 000000000000000000000000  8c17  04  04  00  00"))
	for _, bad := range []subnet.AxonInfo{{IP: "example.com", Port: 1}, {IP: "1.2.3.4"}, {IP: "1.2.3.4", Port: 1, IPType: 6}} {
		if err := c.ServeAxon(t.Context(), k, 27, bad); subnet.ErrorCode(err) != subnet.EINVALID {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	if n := len(s.node.Called("author_submitAndWatchExtrinsic")); n != 1 {
		t.Fatalf("%d submissions", n)
	}
}

func TestAddStake(t *testing.T) {
	cold := alice(t)
	hot, _ := keys.FromURI("//Bob")
	c, s := newScriptedNode(t)
	if err := c.AddStake(t.Context(), cold, 27, hot.SS58(), subnet.TAO(1)); err != nil {
		t.Fatal(err)
	}
	// pallet 7, call 2 | hotkey | netuid 27 | amount u64 1e9
	s.checkSubmitted(t, cold, slices.Concat(h(t, "07 02"), hot.PublicKey(), h(t, "1b00 00ca9a3b00000000")))
	if err := c.AddStake(t.Context(), cold, 27, hot.SS58(), 0); subnet.ErrorCode(err) != subnet.EINVALID {
		t.Fatalf("zero stake: %v", err)
	}
}

// TestConcurrentWritesSerialiseNonces checks one account's writes do not
// interleave between nonce and submission.
func TestConcurrentWritesSerialiseNonces(t *testing.T) {
	k := alice(t)
	c, s := newScriptedNode(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			errs <- c.ServeAxon(t.Context(), k, 27, subnet.AxonInfo{IP: "10.0.0.1", Port: 80})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var order []string
	for _, r := range s.node.Called("") {
		if strings.HasPrefix(r, "system_accountNextIndex") || strings.HasPrefix(r, "author_submitAndWatchExtrinsic") {
			order = append(order, r[:6])
		}
	}
	for i := 0; i+1 < len(order); i += 2 {
		if order[i] != "system" || order[i+1] != "author" {
			t.Fatalf("nonce reads and submissions interleave: %v", order)
		}
	}
}
