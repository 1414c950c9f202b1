package subtensor

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/nicompute/nicompute/internal/subnet"
)

// neuronRegistry is a hand-built type registry for Vec<NeuronInfoLite> as
// subtensor declares it (pallets/subtensor/src/rpc_info/neuron_info.rs),
// so the decoding fuzzers need no recorded metadata.
func neuronRegistry() (*Metadata, uint32) {
	prim := func(p primKind) typeDef { return typeDef{kind: kindPrimitive, prim: p} }
	named := func(names []string, ids ...uint32) []field {
		fs := make([]field, len(ids))
		for i, id := range ids {
			fs[i] = field{name: names[i], typ: id}
		}
		return fs
	}
	types := []typeDef{
		0: prim(primU8),
		1: {kind: kindArray, length: 32, elem: 0},
		2: {kind: kindComposite, path: []string{"sp_core", "crypto", "AccountId32"}, fields: []field{{typ: 1}}},
		3: prim(primU16),
		4: {kind: kindCompact, elem: 3},
		5: prim(primBool),
		6: prim(primU64),
		7: prim(primU32),
		8: prim(primU128),
		9: {kind: kindComposite, path: []string{"AxonInfo"}, fields: named(
			[]string{"block", "version", "ip", "port", "ip_type", "protocol", "placeholder1", "placeholder2"},
			6, 7, 8, 3, 0, 0, 0, 0)},
		10: {kind: kindComposite, path: []string{"PrometheusInfo"}, fields: named(
			[]string{"block", "version", "ip", "port", "ip_type"}, 6, 7, 8, 3, 0)},
		11: {kind: kindCompact, elem: 6},
		12: {kind: kindTuple, tuple: []uint32{2, 11}},
		13: {kind: kindSequence, elem: 12},
		14: {kind: kindComposite, path: []string{"NeuronInfoLite"}, fields: named(
			[]string{"hotkey", "coldkey", "uid", "netuid", "active", "axon_info", "prometheus_info", "stake", "rank",
				"emission", "incentive", "consensus", "trust", "validator_trust", "dividends", "last_update",
				"validator_permit", "pruning_score"},
			2, 2, 4, 4, 5, 9, 10, 13, 4, 11, 4, 4, 4, 4, 4, 11, 5, 4)},
		15: {kind: kindSequence, elem: 14},
	}
	return &Metadata{types: types}, 15
}

// oneNeuron is a hand-encoded Vec<NeuronInfoLite> of one neuron.
const oneNeuron = "04" + // Vec length 1
	"1111111111111111111111111111111111111111111111111111111111111111" + // hotkey
	"2222222222222222222222222222222222222222222222222222222222222222" + // coldkey
	"0d01" + // uid: compact 2-byte mode, 0x010d >> 2 = 67
	"04" + // netuid compact 1
	"01" + // active
	"4000000000000000" + "e1b70d00" + // axon block 64, version 0x000db7e1 = 899041
	"0100000a000000000000000000000000" + // ip 0x0a000001 = 10.0.0.1
	"5000" + "04" + "04" + "00" + "00" + // port 80, ip_type 4, protocol 4, placeholders
	"0000000000000000" + "00000000" + "00000000000000000000000000000000" + "0000" + "00" + // prometheus
	"08" + // stake: 2 entries
	"2222222222222222222222222222222222222222222222222222222222222222" + "0700e8764817" + // compact big-integer mode (0x07: 5 bytes) 0x174876e800 = 100e9
	"3333333333333333333333333333333333333333333333333333333333333333" + "02286bee" + // compact 4-byte mode: 0xee6b2802 >> 2 = 1e9
	"00" + // rank 0
	"0284d717" + // emission: compact 4-byte mode, 0x17d78402 >> 2 = 100000000
	"fdff" + // incentive: 0xfffd >> 2 = 16383
	"00" + "00" + "00" + // consensus, trust, validator_trust
	"feff0300" + // dividends: 0x0003fffe >> 2 = 65535
	"02093d00" + // last_update: 0x003d0902 >> 2 = 1000000
	"01" + // validator_permit
	"00" // pruning_score

func TestDecodeNeuronInfoLiteHandEncoded(t *testing.T) {
	m, vec := neuronRegistry()
	v, err := m.decodeAll(h(t, oneNeuron), vec)
	if err != nil {
		t.Fatal(err)
	}
	n, err := neuronFromLite(v.([]any)[0], 1)
	if err != nil {
		t.Fatal(err)
	}
	want := subnet.Neuron{
		UID: 67, Hotkey: ss58Hex(t, "1111111111111111111111111111111111111111111111111111111111111111"),
		Coldkey: ss58Hex(t, "2222222222222222222222222222222222222222222222222222222222222222"),
		Active:  true, Stake: 101_000_000_000,
		Axon:            subnet.AxonInfo{Block: 64, Version: 899041, IP: "10.0.0.1", Port: 80, IPType: 4, Protocol: 4},
		ValidatorPermit: true, Incentive: 16383.0 / 65535, Dividends: 1, Emission: 100_000_000, LastUpdate: 1_000_000,
	}
	if n != want {
		t.Fatalf("\n got %+v\nwant %+v", n, want)
	}
	if _, err := neuronFromLite(v.([]any)[0], 2); err == nil {
		t.Fatal("neuron of netuid 1 accepted for netuid 2")
	}
	// Every truncation fails cleanly.
	full := h(t, oneNeuron)
	for i := range full {
		if _, err := m.decodeAll(full[:i], vec); err == nil {
			t.Fatalf("truncated to %d bytes decoded", i)
		}
	}
}

// bigIncentive is oneNeuron with an incentive of 0x30303032 >> 2 in
// compact 4-byte mode ("2000" in ASCII): 3084.09 as a fraction. The fuzzer
// found it; testdata/fuzz keeps it in the corpus.
var bigIncentive = strings.Replace(oneNeuron, "fdff", "32303030", 1)

// TestNeuronFractionsBounded checks that a fraction above 1 is an error
// naming its field, both where the type says Compact<u16> (malformed
// SCALE) and where a runtime declared a wider type.
func TestNeuronFractionsBounded(t *testing.T) {
	m, vec := neuronRegistry()
	_, err := m.decodeAll(h(t, bigIncentive), vec)
	if err == nil || !strings.Contains(err.Error(), "incentive") {
		t.Fatalf("Compact<u16> of 202116108 decoded: %v", err)
	}
	// A runtime whose incentive is a Compact<u64> decodes, and the value
	// is refused as a fraction.
	m.types[14].fields[10].typ = 11
	v, err := m.decodeAll(h(t, bigIncentive), vec)
	if err != nil {
		t.Fatal(err)
	}
	n, err := neuronFromLite(v.([]any)[0], 1)
	if err == nil || !strings.Contains(err.Error(), "incentive") {
		t.Fatalf("incentive %v accepted (err %v)", n.Incentive, err)
	}
}

func FuzzDecodeNeuronInfoLite(f *testing.F) {
	m, vec := neuronRegistry()
	seed := h(f, oneNeuron)
	f.Add(seed)
	f.Add(seed[:100])
	f.Add([]byte{0x00})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(append([]byte{0x08}, seed[1:]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := m.decodeAll(b, vec)
		if err != nil {
			return
		}
		list, ok := v.([]any)
		if !ok {
			t.Fatalf("decoded %T", v)
		}
		for _, e := range list {
			n, err := neuronFromLite(e, 1)
			if err != nil {
				continue
			}
			for _, x := range []float64{n.Incentive, n.Dividends, n.Rank, n.Trust, n.Consensus, n.ValidatorTrust} {
				if x < 0 || x > 1 || math.IsNaN(x) {
					t.Fatalf("fraction %v", x)
				}
			}
		}
	})
}

func FuzzRPCFrame(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":"0x00"}`,
		`{"jsonrpc":"2.0","id":1,"error":{"code":1010,"message":"Invalid Transaction","data":"Custom error: 6"}}`,
		`{"jsonrpc":"2.0","method":"author_extrinsicUpdate","params":{"subscription":"s1","result":{"inBlock":"0x00"}}}`,
		`{"jsonrpc":"2.0","method":"x","params":{"subscription":7,"result":"ready"}}`,
		`{"id":2,"result":null}`, `{}`, `[]`, `null`, `{"id":-1,"result":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := parseFrame(b)
		if err != nil {
			return
		}
		// Dispatch to a connection waiting for id 1 and subscribed to s1.
		sub := &subscription{ch: make(chan json.RawMessage, 1), id: "s1"}
		p := &pendingCall{method: "m", ch: make(chan rpcResult, 1), sub: &subscription{ch: make(chan json.RawMessage, 1)}}
		conn := &wsConn{pending: map[uint64]*pendingCall{1: p}, subs: map[string]*subscription{"s1": sub}}
		sub.conn = conn
		conn.dispatch(fr)
		if fr.Method != "" {
			parseTxStatus(fr.Params.Result)
		}
	})
}

func FuzzDecodeMetadata(f *testing.F) {
	// "meta", v14: one type (id 0, no path, no params, primitive u8, no
	// docs), no pallets, extrinsic type 0 version 4 without extensions,
	// runtime type 0.
	v14 := []byte("meta\x0e\x04\x00\x00\x00\x05\x03\x00\x00\x00\x04\x00\x00")
	// v15: same, extrinsic version 4, address/call/signature/extra types
	// 0, no extensions, runtime type 0, no APIs, outer enums 0 0 0, no
	// custom values.
	v15 := []byte("meta\x0f\x04\x00\x00\x00\x05\x03\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	for _, b := range [][]byte{v14, v15} {
		if _, err := decodeMetadata(b); err != nil {
			f.Fatalf("seed %x: %v", b, err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMetadata(b)
		if err != nil {
			return
		}
		// Whatever decoded must be safe to use.
		for id := range m.types {
			m.decodeAll(b, uint32(id))
			m.zeroValue(uint32(id), true)
		}
		m.extensionData(testTxParams())
		if bytes.HasPrefix(b, []byte("meta")) && m.Version != 14 && m.Version != 15 {
			t.Fatalf("version %d accepted", m.Version)
		}
	})
}

// TestHostileRegistry feeds types that refer to themselves: decoding and
// encoding must stop with an error, not recurse or loop without end.
func TestHostileRegistry(t *testing.T) {
	m := &Metadata{types: []typeDef{
		0: {kind: kindComposite, fields: []field{{typ: 0}, {typ: 0}}}, // two fields of itself, zero-sized
		1: {kind: kindComposite, fields: []field{{typ: 1}}},           // newtype of itself
		2: {kind: kindSequence, elem: 3},
		3: {kind: kindTuple}, // ()
	}}
	for id := range uint32(3) {
		if _, err := m.decodeAll([]byte{0, 0, 0, 0}, id); err == nil {
			t.Errorf("type %d decoded", id)
		}
		if _, err := m.zeroValue(id, true); err == nil && id != 2 {
			t.Errorf("type %d zero-encoded", id)
		}
		if _, err := m.encodeValue(nil, id, []any{uint64(1), uint64(2)}); err == nil {
			t.Errorf("type %d encoded", id)
		}
		if _, err := m.eraValue(id, testTxParams()); err == nil {
			t.Errorf("type %d taken for an era", id)
		}
		if _, err := m.metadataHashMode(id); err == nil {
			t.Errorf("type %d taken for a mode", id)
		}
	}
	// A billion zero-sized elements claimed by 5 bytes.
	if _, err := m.decodeAll([]byte{0x03, 0x00, 0xca, 0x9a, 0x3b}, 2); err == nil {
		t.Error("huge sequence of () decoded")
	}
}
