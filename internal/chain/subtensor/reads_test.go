package subtensor

import (
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	st "github.com/nicompute/nicompute/internal/chain/subtensor/subtensortest"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
)

// testConfig has short timeouts and logs through tb.
func testConfig(tb testing.TB) Config {
	return Config{
		CallTimeout:      5 * time.Second,
		InclusionTimeout: 5 * time.Second,
		DialTimeout:      2 * time.Second,
		MaxBackoff:       100 * time.Millisecond,
		PingInterval:     time.Second,
		Logger:           slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// ss58Hex is the SS58 address of a hex account id.
func ss58Hex(tb testing.TB, h string) string {
	tb.Helper()
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 {
		tb.Fatalf("account %s", h)
	}
	return keys.SS58Encode(b)
}

// The hotkey the SDK's registration sessions ask about. Its uid on netuid
// 14 is 29 in the Uids read (0x1d00, is_hotkey_registered_on_subnet), the
// SDK then asks get_neuron for "0e001d00" (netuid 14, uid 29; recorded in
// get_neuron_for_pubkey_and_subnet) and the neuron's answer starts with
// 0x01 (Some) and this account as hotkey.
const hotkey14 = "1a33474e4a857009da52aaa4080f176465f99c09763e03b9cd5ee038cec4093e"

func TestReplayCurrentBlock(t *testing.T) {
	c, _, _ := startReplay(t, "get_current_block")
	n, err := c.CurrentBlock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Header number 0x6384b6.
	if n != 0x6384b6 {
		t.Fatalf("block %d, want %d", n, 0x6384b6)
	}
	// Another session asked for the hash of that block number and got the
	// head hash of this session.
	c2, _, _ := startReplay(t, "get_block_hash")
	h, err := c2.BlockHash(t.Context(), n)
	if err != nil {
		t.Fatal(err)
	}
	if want := "0x4f0bbe5e96a78ca4cc1df9a7e757d335165d6d71c545cf6eb4794986424bcd29"; h != want {
		t.Fatalf("hash of block %d = %s, want get_current_block's head %s", n, h, want)
	}
}

func TestReplaySubnetworkN(t *testing.T) {
	c, _, _ := startReplay(t, "subnetwork_n")
	n, err := c.SubnetworkN(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	// SubnetworkN[1] = 0x0004: u16 little-endian 0x0400 = 1024, the size
	// of the netuid-1 metagraph in the metagraph session.
	if n != 1024 {
		t.Fatalf("SubnetworkN(1) = %d, want 1024", n)
	}
}

func TestReplayUIDForHotkey(t *testing.T) {
	c, _, _ := startReplay(t, "is_hotkey_registered_on_subnet")
	uid, ok, err := c.UIDForHotkey(t.Context(), 14, ss58Hex(t, hotkey14))
	if err != nil || !ok || uid != 29 {
		t.Fatalf("UIDForHotkey = %d, %v, %v; want 29, true", uid, ok, err)
	}
	// The recorded get_neuron answer for (14, 29) names the same hotkey.
	rec := loadRecordings(t)
	ans := string(rec.Sessions["get_neuron_for_pubkey_and_subnet"]["state_call"][`["NeuronInfoRuntimeApi_get_neuron", "0e001d00", null]`])
	if !strings.Contains(ans, `"0x01`+hotkey14) {
		t.Fatal("get_neuron(14, 29) does not start with Some(hotkey)")
	}
}

func TestReplayUIDForHotkeyNetuid23(t *testing.T) {
	c, _, _ := startReplay(t, "get_uid_for_hotkey_on_subnet")
	// Uids key …1700 ++ blake2_128(hk) ++ hk, answer 0x0500 = uid 5.
	hk := ss58Hex(t, "4af7598952f87683204a2a0c2266f941a74899bd69b0ce56e42a82820f689446")
	uid, ok, err := c.UIDForHotkey(t.Context(), 23, hk)
	if err != nil || !ok || uid != 5 {
		t.Fatalf("UIDForHotkey = %d, %v, %v; want 5, true", uid, ok, err)
	}
}

func TestReplayNetUIDsForHotkey(t *testing.T) {
	c, node, _ := startReplay(t, "get_netuids_for_hotkey")
	nets, err := c.NetUIDsForHotkey(t.Context(), ss58Hex(t, hotkey14))
	if err != nil {
		t.Fatal(err)
	}
	// IsNetworkMember over netuids 0..99: only key suffix 0e00 holds 0x01.
	// Consistent with the uid-29 registration on netuid 14 above.
	if len(nets) != 1 || nets[0] != 14 {
		t.Fatalf("NetUIDsForHotkey = %v, want [14]", nets)
	}
	// Two pages were listed: 100 keys, then none after key …6300.
	if n := len(node.Called("state_getKeysPaged")); n != 2 {
		t.Fatalf("%d key pages read, want 2", n)
	}
}

func TestReplayBalance(t *testing.T) {
	c, _, _ := startReplay(t, "get_balance")
	// System.Account key = twox128("System") ++ twox128("Account") ++
	// blake2_128(acct) ++ acct, with acct the last 32 bytes.
	acct := ss58Hex(t, "1257de87a71abb164403f7cb9ea65d0721f8bb89d8bd85754deceedd91e86053")
	b, err := c.Balance(t.Context(), acct)
	if err != nil {
		t.Fatal(err)
	}
	// AccountInfo: nonce 8d000000, consumers 01000000, providers 01000000,
	// sufficients 00000000, then data.free = d0c30fbc01000000 =
	// 0x01bc0fc3d0 = 7450117072 rao.
	if b != 7450117072 {
		t.Fatalf("balance %d rao, want 7450117072", b)
	}
}

func TestReplayBurnCost(t *testing.T) {
	c, _, _ := startReplay(t, "recycle")
	b, err := c.BurnCost(t.Context(), 23)
	if err != nil {
		t.Fatal(err)
	}
	// Burn[23] = 0x0100000000000000: u64 little-endian 1.
	if b != 1 {
		t.Fatalf("burn %d rao, want 1", b)
	}
}

func TestReplayHyperparameters(t *testing.T) {
	rec := loadRecordings(t)
	c, _, rp := startReplay(t, "tempo")
	// The SDK read netuid 23's parameters one by one in separate sessions;
	// this client reads them in one state_queryStorageAt. Answer it from
	// those recorded storage values, keyed by the SDK's own storage keys.
	values := map[string]string{}
	for _, s := range []string{"tempo", "immunity_period", "max_weight_limit", "min_allowed_weights", "recycle"} {
		for p, ans := range rec.Sessions[s]["state_getStorageAt"] {
			var key []any
			mustJSON(t, p, &key)
			var a struct{ Result string }
			mustJSON(t, string(ans), &a)
			values[key[0].(string)] = a.Result
		}
	}
	rp.SetExtra(st.QueryFrom(t, values))
	h, err := c.Hyperparameters(t.Context(), 23)
	if err != nil {
		t.Fatal(err)
	}
	// Recorded: Tempo 0xe803 = 1000, ImmunityPeriod 0x8813 = 5000,
	// MaxWeightsLimit 0xffff, MinAllowedWeights 0x0100 = 1, Burn 1 rao,
	// NetworksAdded 0x01. Not recorded, so the metadata default applies:
	// WeightsSetRateLimit 100 (0x6400…), Kappa 32767 (0xff7f),
	// CommitRevealWeightsEnabled true (0x01), RevealPeriodEpochs 1.
	want := subnet.Hyperparameters{
		Tempo: 1000, ImmunityPeriod: 5000, MaxWeightLimit: 65535, MinAllowedWeights: 1, Burn: 1,
		WeightsRateLimit: 100, Kappa: 32767, CommitRevealEnabled: true, RevealPeriodEpochs: 1,
	}
	got := h
	got.WeightsVersionKey, got.MaxAllowedUIDs, got.MaxAllowedValidators, got.ActivityCutoff = 0, 0, 0, 0
	got.BondsMovingAverage, got.ServingRateLimit, got.RegistrationAllowed = 0, 0, false
	if got != want {
		t.Fatalf("hyperparameters\n got %+v\nwant %+v", got, want)
	}
}

func TestReplayMetagraph(t *testing.T) {
	c, node, _ := startReplay(t, "metagraph")
	mg, err := c.Metagraph(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	// Head 0xdb13… is block 0x689052.
	if mg.NetUID != 1 || mg.Block != 0x689052 || len(mg.Neurons) != 1024 {
		t.Fatalf("metagraph netuid %d block %d with %d neurons", mg.NetUID, mg.Block, len(mg.Neurons))
	}
	// The get_neurons_lite answer begins 0x01 0x10 (compact 1024) and then
	// uid 0: hotkey 4a7a6c…0166, coldkey 74762d…c035, uid 0x00, netuid
	// 0x04 (compact 1), active 0x00, axon block 2257640000000000 =
	// 6575906, version 397f8900 = 9011001, ip 6d3bdec0 00…00 =
	// 0xc0de3b6d = 192.222.59.109, port 8c17 = 6028, ip_type 04, protocol
	// 04; after the empty prometheus info, stake = [(coldkey, 035c5a6b98)]:
	// compact 4-byte mode, 0x986b5a5c = 2557172316, which is also
	// get_subnet_state's total_stake[0] (alpha 2557172316, tao 0).
	n0, ok := mg.ByUID(0)
	if !ok {
		t.Fatal("no uid 0")
	}
	want := subnet.Neuron{
		UID:     0,
		Hotkey:  ss58Hex(t, "4a7a6cf22af0de8f0c3566ceb47c255da605cf9243f6c1a6433cc782fa610166"),
		Coldkey: ss58Hex(t, "74762d04a38847530ae54f185efda75989c6cb66eab33295ee5401af6e2ac035"),
		Stake:   2557172316,
		Axon:    subnet.AxonInfo{Block: 6575906, Version: 9011001, IP: "192.222.59.109", Port: 6028, IPType: 4, Protocol: 4},
	}
	got := n0
	got.LastUpdate, got.RegisteredAt = 0, 0
	if got != want {
		t.Fatalf("uid 0\n got %+v\nwant %+v", got, want)
	}
	if !n0.Axon.Served() || n0.Axon.Addr() != "192.222.59.109:6028" {
		t.Fatalf("axon %+v", n0.Axon)
	}
	// A second call at the same head is served from the cache.
	before := len(node.Called("state_call"))
	mg2, err := c.Metagraph(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if after := len(node.Called("state_call")); after != before {
		t.Fatalf("cached metagraph made %d more state calls", after-before)
	}
	mg2.Neurons[0].Hotkey = "mutated"
	if mg3, _ := c.Metagraph(t.Context(), 1); mg3.Neurons[0].Hotkey == "mutated" {
		t.Fatal("cache shares neurons with callers")
	}
}

// TestReplayMetagraphConsistency compares, for every uid, the fields that
// both runtime APIs report: get_neurons_lite and get_subnet_state are
// encoded differently (one struct per neuron vs one vector per field), so
// agreement checks both decodings.
func TestReplayMetagraphConsistency(t *testing.T) {
	rec := loadRecordings(t)
	m := metadataV15(t, rec)
	calls := rec.Sessions["metagraph"]["state_call"]
	decode := func(api string) any {
		for p, ans := range calls {
			if strings.Contains(p, api) {
				var a struct{ Result string }
				mustJSON(t, string(ans), &a)
				v, err := m.decodeAll(mustHex(t, a.Result), m.apis[api].output)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
		t.Fatalf("no %s call", api)
		return nil
	}
	lite := decode(apiNeuronsLite).([]any)
	state, some, err := optionValue(decode(apiSubnetState))
	if err != nil || !some {
		t.Fatal(err)
	}
	sf := &fieldReader{v: state}
	cols := map[string][]any{}
	for _, c := range []string{"hotkeys", "coldkeys", "active", "validator_permit", "last_update", "emission", "dividends", "incentives", "consensus"} {
		cols[c] = fieldAs[[]any](sf, c)
	}
	if sf.err != nil {
		t.Fatal(sf.err)
	}
	var permits, dividends int
	for i, v := range lite {
		n, err := neuronFromLite(v, 1)
		if err != nil {
			t.Fatal(err)
		}
		if int(n.UID) != i {
			t.Fatalf("neuron %d has uid %d", i, n.UID)
		}
		hk, _ := accountSS58(unwrap(cols["hotkeys"][i]).([]byte))
		ck, _ := accountSS58(unwrap(cols["coldkeys"][i]).([]byte))
		lu, _ := asUint64(unwrap(cols["last_update"][i]))
		em, _ := asUint64(unwrap(cols["emission"][i]))
		dv, _ := asUint64(unwrap(cols["dividends"][i]))
		in, _ := asUint64(unwrap(cols["incentives"][i]))
		if n.Hotkey != hk || n.Coldkey != ck || n.Active != cols["active"][i] || n.ValidatorPermit != cols["validator_permit"][i] ||
			n.LastUpdate != lu || uint64(n.Emission) != em || n.Dividends != float64(dv)/math.MaxUint16 || n.Incentive != float64(in)/math.MaxUint16 {
			t.Fatalf("uid %d differs between get_neurons_lite and get_subnet_state", i)
		}
		if n.ValidatorPermit {
			permits++
		}
		if n.Dividends > 0 {
			dividends++
		}
		if n.Dividends < 0 || n.Dividends > 1 || n.Incentive < 0 || n.Incentive > 1 {
			t.Fatalf("uid %d: fraction out of [0,1]", i)
		}
	}
	if permits == 0 || dividends == 0 {
		t.Fatalf("%d validator permits, %d neurons with dividends: comparison covered nothing", permits, dividends)
	}
}

// TestReplayMetagraphRuntimeMismatch replays a session recorded on runtime
// 208, whose runtime API answered SCALE bytes wrapped in a Vec<u8>, with
// the metadata of runtime 343: the answer does not match the metadata's
// output type, and the client must say so rather than return neurons.
func TestReplayMetagraphRuntimeMismatch(t *testing.T) {
	c, _, rp := startReplay(t, "neurons_lite")
	// Runtime 208 has no get_subnet_state; a node answers such calls with
	// an execution error.
	rp.SetExtra(func(method string, params []json.RawMessage) (st.Reply, bool) {
		if method == "state_call" && strings.Contains(string(params[0]), apiSubnetState) {
			return st.Reply{Err: &st.WireError{Code: 4003, Message: "Client error: Execution failed: Other: Exported method " + apiSubnetState + " is not found"}}, true
		}
		return st.Reply{}, false
	})
	mg, err := c.Metagraph(t.Context(), 23)
	if err == nil {
		t.Fatalf("got a metagraph of %d neurons from a mismatched answer", len(mg.Neurons))
	}
	if subnet.ErrorCode(err) != subnet.EINTERNAL || !strings.Contains(err.Error(), apiNeuronsLite) {
		t.Fatalf("error %v (code %s), want EINTERNAL naming %s", err, subnet.ErrorCode(err), apiNeuronsLite)
	}
}

// TestLegacyNeuronsLiteLayout decodes runtime 208's wrapped answer with
// today's NeuronInfoLite type: the struct layout did not change, and uid 5
// of netuid 23 is the hotkey another session (get_uid_for_hotkey_on_subnet,
// eight blocks earlier) found at uid 5.
func TestLegacyNeuronsLiteLayout(t *testing.T) {
	rec := loadRecordings(t)
	m := metadataV15(t, rec)
	var a struct{ Result string }
	mustJSON(t, string(rec.Sessions["neurons_lite"]["state_call"][`["NeuronInfoRuntimeApi_get_neurons_lite", "0x1700"]`]), &a)
	r := newReader(mustHex(t, a.Result))
	inner := r.bytes() // Vec<u8>: 0x3536 = compact 3469 bytes
	if err := r.done(); err != nil || len(inner) != 3469 {
		t.Fatalf("legacy wrapper: %d bytes, %v", len(inner), err)
	}
	v, err := m.decodeAll(inner, m.apis[apiNeuronsLite].output)
	if err != nil {
		t.Fatal(err)
	}
	list := v.([]any)
	if len(list) != 19 { // 0x4c = compact 19
		t.Fatalf("%d neurons, want 19", len(list))
	}
	n5, err := neuronFromLite(list[5], 23)
	if err != nil {
		t.Fatal(err)
	}
	if want := ss58Hex(t, "4af7598952f87683204a2a0c2266f941a74899bd69b0ce56e42a82820f689446"); n5.UID != 5 || n5.Hotkey != want {
		t.Fatalf("uid %d hotkey %s, want uid 5 %s", n5.UID, n5.Hotkey, want)
	}
}

// BenchmarkDecodeMetagraph decodes the recorded netuid-1 answers (1024
// neurons: get_neurons_lite, 186 KB, and get_subnet_state, 223 KB) into a
// metagraph, as Metagraph does after the two state calls.
func BenchmarkDecodeMetagraph(b *testing.B) {
	rec := loadRecordings(b)
	m := metadataV15(b, rec)
	raw := map[string][]byte{}
	for p, ans := range rec.Sessions["metagraph"]["state_call"] {
		var a struct{ Result string }
		mustJSON(b, string(ans), &a)
		for _, api := range []string{apiNeuronsLite, apiSubnetState} {
			if strings.Contains(p, api) {
				raw[api] = mustHex(b, a.Result)
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		lite, err := m.decodeAll(raw[apiNeuronsLite], m.apis[apiNeuronsLite].output)
		if err != nil {
			b.Fatal(err)
		}
		state, err := m.decodeAll(raw[apiSubnetState], m.apis[apiSubnetState].output)
		if err != nil {
			b.Fatal(err)
		}
		inner, _, _ := optionValue(state)
		ss, err := parseSubnetState(inner, 1)
		if err != nil {
			b.Fatal(err)
		}
		ns := make([]subnet.Neuron, 0, 1024)
		for _, v := range lite.([]any) {
			n, err := neuronFromLite(v, 1)
			if err != nil {
				b.Fatal(err)
			}
			ns = append(ns, n)
		}
		if err := mergeState(ns, ss); err != nil {
			b.Fatal(err)
		}
	}
}
