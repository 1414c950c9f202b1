package subtensor

import (
	"bytes"
	"encoding/hex"
	"math/big"
	"slices"
	"strings"
	"testing"

	"github.com/centrifuge/go-substrate-rpc-client/v4/types"
	"github.com/centrifuge/go-substrate-rpc-client/v4/types/codec"
	"golang.org/x/crypto/blake2b"

	"github.com/nicompute/nicompute/internal/keys"
)

func h(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		tb.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func TestMortalEra(t *testing.T) {
	tests := []struct {
		name          string
		period, block uint64
		want          string
	}{
		// sp_runtime's own vector: Era::mortal(64, 42) encodes as
		// [5 + 42 % 16 * 16, 42 / 16] = [0xa5, 0x02].
		{"substrate vector", 64, 42, "a502"},
		// log2(4)-1 = 1, phase 0.
		{"shortest", 4, 8, "0100"},
		// log2(4096)-1 = 11, phase 4095: 11 | 4095<<4 = 0xfffb.
		{"longest", 4096, 4095, "fbff"},
		// 6852690 % 64 = 18: 5 | 18<<4 = 0x0125.
		{"finney block", 64, 6852690, "2501"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mortalEra(tt.period, tt.block)
			if err != nil || hex.EncodeToString(got) != tt.want {
				t.Fatalf("mortalEra(%d, %d) = %x, %v; want %s", tt.period, tt.block, got, err, tt.want)
			}
		})
	}
	for _, p := range []uint64{0, 2, 3, 100, 8192} {
		if _, err := mortalEra(p, 1); err == nil {
			t.Errorf("period %d accepted", p)
		}
	}
}

func TestAppendCompact(t *testing.T) {
	tests := []struct {
		v    uint64
		want string
	}{
		{0, "00"}, {1, "04"}, {63, "fc"}, {64, "0101"}, {16383, "fdff"},
		{16384, "02000100"}, {1<<30 - 1, "feffffff"}, {1 << 30, "0300000040"},
		{1<<64 - 1, "13ffffffffffffffff"},
	}
	for _, tt := range tests {
		got := appendCompact(nil, tt.v)
		if hex.EncodeToString(got) != tt.want {
			t.Errorf("compact(%d) = %x, want %s", tt.v, got, tt.want)
		}
		r := newReader(got)
		back := r.compactU64()
		if err := r.done(); err != nil || back != tt.v {
			t.Errorf("decode compact %x = %d, %v", got, back, err)
		}
	}
}

// alice is Substrate's //Alice development key; its public key is the
// well-known d43593c7…a27d.
func alice(tb testing.TB) *keys.Keypair {
	tb.Helper()
	k, err := keys.FromURI("//Alice")
	if err != nil {
		tb.Fatal(err)
	}
	if hex.EncodeToString(k.PublicKey()) != "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d" {
		tb.Fatalf("//Alice public key %x", k.PublicKey())
	}
	return k
}

const alicePub = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"

func TestEncodeCalls(t *testing.T) {
	m := metadataV15(t, loadRecordings(t))
	acct := h(t, alicePub)
	ip, ipType, err := ipToU128("192.222.59.109")
	if err != nil || ipType != 4 {
		t.Fatal(ip, ipType, err)
	}
	ip6, ip6Type, err := ipToU128("2001:db8::1")
	if err != nil || ip6Type != 6 {
		t.Fatal(ip6, ip6Type, err)
	}
	tests := []struct {
		name string
		call string
		args map[string]any
		want string
	}{
		{"set_weights", "set_weights", map[string]any{
			"netuid": uint64(1), "dests": []any{uint64(0), uint64(5)},
			"weights": []any{uint64(65535), uint64(32768)}, "version_key": uint64(21706),
		},
			// pallet 7, call 0 | netuid u16 1 | dests: compact 2, 0, 5 |
			// weights: compact 2, 0xffff, 0x8000 | version_key u64 0x54ca
			"07 00  0100  08 0000 0500  08 ffff 0080  ca54000000000000"},
		{"serve_axon v4", "serve_axon", map[string]any{
			"netuid": uint64(27), "version": uint64(9011001), "ip": ip, "port": uint64(6028),
			"ip_type": uint64(4), "protocol": uint64(4), "placeholder1": uint64(0), "placeholder2": uint64(0),
		},
			// pallet 7, call 4 | netuid 27 | version u32 0x00897f39 |
			// ip u128 0xc0de3b6d (192.222.59.109) little-endian | port
			// u16 0x178c | ip_type 4 | protocol 4 | placeholders 0, 0
			"07 04  1b00  397f8900  6d3bdec0 000000000000000000000000  8c17  04  04  00  00"},
		{"serve_axon v6", "serve_axon", map[string]any{
			"netuid": uint64(27), "version": uint64(1), "ip": ip6, "port": uint64(443),
			"ip_type": uint64(6), "protocol": uint64(4), "placeholder1": uint64(0), "placeholder2": uint64(0),
		},
			// ip u128 0x20010db8_00000000_00000000_00000001 little-endian
			"07 04  1b00  01000000  01000000 00000000 00000000 b80d0120  bb01  06  04  00  00"},
		{"burned_register", "burned_register", map[string]any{"netuid": uint64(27), "hotkey": acct},
			// pallet 7, call 7 | netuid 27 | AccountId32
			"07 07  1b00 " + alicePub},
		{"add_stake", "add_stake", map[string]any{"hotkey": acct, "netuid": uint64(27), "amount_staked": uint64(1e9)},
			// pallet 7, call 2 | AccountId32 | netuid 27 | u64 1e9 = 0x3b9aca00
			"07 02 " + alicePub + " 1b00  00ca9a3b00000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.encodeCall(subtensorPallet, tt.call, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if want := h(t, tt.want); !bytes.Equal(got, want) {
				t.Fatalf("\n got %x\nwant %x", got, want)
			}
		})
	}
	t.Run("unknown argument", func(t *testing.T) {
		_, err := m.encodeCall(subtensorPallet, "burned_register", map[string]any{"netuid": uint64(1), "hotkey": acct, "limit": uint64(3)})
		if err == nil {
			t.Fatal("extra argument accepted")
		}
		_, err = m.encodeCall(subtensorPallet, "burned_register", map[string]any{"netuid": uint64(1)})
		if err == nil || !strings.Contains(err.Error(), `"hotkey"`) {
			t.Fatalf("missing argument: %v", err)
		}
		_, err = m.encodeCall(subtensorPallet, "set_weights", map[string]any{"netuid": uint64(70000), "dests": []any{}, "weights": []any{}, "version_key": uint64(0)})
		if err == nil {
			t.Fatal("netuid 70000 encoded as u16")
		}
	})
}

// TestCallIndexesAgainstGsrpc checks the pallet and call indexes this
// package reads from V15 metadata against gsrpc's independent V14 decoder
// of the same runtime's metadata.
func TestCallIndexesAgainstGsrpc(t *testing.T) {
	rec := loadRecordings(t)
	m := metadataV15(t, rec)
	var gm types.Metadata
	if err := codec.DecodeFromHex(rec.Metadata, &gm); err != nil {
		t.Fatal(err)
	}
	for _, call := range []string{"burned_register", "serve_axon", "set_weights", "add_stake"} {
		want, err := gm.FindCallIndex(subtensorPallet + "." + call)
		if err != nil {
			t.Fatal(err)
		}
		pi, v, err := m.call(subtensorPallet, call)
		if err != nil {
			t.Fatal(err)
		}
		if pi != want.SectionIndex || v.index != want.MethodIndex {
			t.Errorf("%s: %d/%d, gsrpc says %d/%d", call, pi, v.index, want.SectionIndex, want.MethodIndex)
		}
	}
	var names []string
	for _, e := range gm.AsMetadataV14.Extrinsic.SignedExtensions {
		names = append(names, string(e.Identifier))
	}
	var ours []string
	for _, e := range m.extensions {
		ours = append(ours, e.name)
	}
	if !slices.Equal(names, ours) {
		t.Fatalf("extensions %v, gsrpc V14 says %v", ours, names)
	}
	// Our V14 decoder agrees with our V15 decoder on the same runtime.
	m14, err := decodeMetadata(mustHex(t, rec.Metadata))
	if err != nil {
		t.Fatal(err)
	}
	pi, v, _ := m14.call(subtensorPallet, "set_weights")
	if m14.Version != 14 || pi != 7 || v.index != 0 || len(m14.extensions) != len(m.extensions) {
		t.Fatalf("v14: version %d set_weights %d/%d", m14.Version, pi, v.index)
	}
}

func testTxParams() txParams {
	return txParams{
		specVersion: 343, txVersion: 1,
		genesis:   bytes.Repeat([]byte{0x2f}, 32),
		eraPeriod: 64, eraBlock: 6852690,
		eraHash: bytes.Repeat([]byte{0xdb}, 32),
		nonce:   5,
	}
}

func TestSignExtrinsic(t *testing.T) {
	m := metadataV15(t, loadRecordings(t))
	k := alice(t)
	p := testTxParams()
	call := h(t, "07 00  0100  08 0000 0500  08 ffff 0080  ca54000000000000")
	xt, err := m.signExtrinsic(call, p, k)
	if err != nil {
		t.Fatal(err)
	}
	// Runtime 343 lists CheckNonZeroSender, CheckSpecVersion,
	// CheckTxVersion, CheckGenesis, CheckMortality, CheckNonce, CheckWeight,
	// ChargeTransactionPayment, SubtensorTransactionExtension,
	// DrandPriority, CheckMetadataHash. Explicit values: era 2501 (period
	// 64, phase 18), nonce compact 5 = 14, tip compact 0 = 00, metadata
	// hash mode Disabled = 00; the others carry nothing.
	extra := h(t, "2501 14 00 00")
	// Implicit values: spec u32 343 = 57010000, tx version 01000000,
	// genesis hash, era birth block hash, metadata hash None = 00.
	implicit := slices.Concat(h(t, "57010000 01000000"), p.genesis, p.eraHash, []byte{0})
	// Body: 0x84 (signed, version 4), MultiAddress::Id 00 ++ account,
	// MultiSignature::Sr25519 01 ++ 64 bytes, extra, call; prefixed with
	// its compact length (1+33+65+4+23 = 126 → 0xf9 0x01).
	r := newReader(xt)
	n := r.compactU64()
	if err := r.err; err != nil || n != 126 || r.remaining() != 126 {
		t.Fatalf("length prefix %d (remaining %d): %v", n, r.remaining(), err)
	}
	if !bytes.Equal(xt[:2], h(t, "f901")) {
		t.Fatalf("length prefix %x", xt[:2])
	}
	body := xt[2:]
	if body[0] != 0x84 || body[1] != 0x00 || !bytes.Equal(body[2:34], k.PublicKey()) || body[34] != 0x01 {
		t.Fatalf("header %x", body[:35])
	}
	sig := body[35:99]
	if rest := body[99:]; !bytes.Equal(rest, slices.Concat(extra, call)) {
		t.Fatalf("extra and call\n got %x\nwant %x", rest, slices.Concat(extra, call))
	}
	// The signed payload is call ++ extra ++ implicit (under 256 bytes, so
	// not hashed).
	ok, err := keys.VerifyPublic(k.PublicKey(), slices.Concat(call, extra, implicit), sig)
	if err != nil || !ok {
		t.Fatalf("signature does not verify: %v", err)
	}
}

func TestSignExtrinsicLongPayloadIsHashed(t *testing.T) {
	m := metadataV15(t, loadRecordings(t))
	k := alice(t)
	p := testTxParams()
	dests, weights := make([]any, 64), make([]any, 64)
	for i := range dests {
		dests[i], weights[i] = uint64(i), uint64(1000+i)
	}
	call, err := m.encodeCall(subtensorPallet, "set_weights", map[string]any{"netuid": uint64(1), "dests": dests, "weights": weights, "version_key": uint64(1)})
	if err != nil {
		t.Fatal(err)
	}
	xt, err := m.signExtrinsic(call, p, k)
	if err != nil {
		t.Fatal(err)
	}
	extra := h(t, "2501 14 00 00")
	implicit := slices.Concat(h(t, "57010000 01000000"), p.genesis, p.eraHash, []byte{0})
	payload := slices.Concat(call, extra, implicit)
	if len(payload) <= 256 {
		t.Fatalf("payload of %d bytes does not exercise hashing", len(payload))
	}
	sig := xt[len(xt)-len(call)-len(extra)-64 : len(xt)-len(call)-len(extra)]
	digest := blake2b.Sum256(payload)
	if ok, _ := keys.VerifyPublic(k.PublicKey(), digest[:], sig); !ok {
		t.Fatal("signature does not verify over blake2b-256(payload)")
	}
	if ok, _ := keys.VerifyPublic(k.PublicKey(), payload, sig); ok {
		t.Fatal("signature verifies over the unhashed payload")
	}
}

func TestExtensionData(t *testing.T) {
	m := metadataV15(t, loadRecordings(t))
	var u32 uint32
	for i, ty := range m.types {
		if ty.kind == kindPrimitive && ty.prim == primU32 {
			u32 = uint32(i)
			break
		}
	}
	empty := m.extensions[0].typ // CheckNonZeroSender: nothing
	tests := []struct {
		name    string
		ext     extension
		wantErr string
	}{
		{"unknown without data", extension{name: "FutureCheck", typ: empty, additional: empty}, ""},
		{"unknown with data", extension{name: "FutureCheck", typ: u32, additional: empty}, "FutureCheck"},
		{"unknown with implicit data", extension{name: "FutureCheck", typ: empty, additional: u32}, "FutureCheck"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mm := *m
			mm.extensions = append(slices.Clone(m.extensions), tt.ext)
			extra, implicit, err := mm.extensionData(testTxParams())
			if tt.wantErr == "" {
				if err != nil || !bytes.Equal(extra, h(t, "2501 14 00 00")) || len(implicit) != 73 {
					t.Fatalf("extra %x implicit %d bytes: %v", extra, len(implicit), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestIPToU128(t *testing.T) {
	tests := []struct {
		ip     string
		want   string
		ipType uint8
	}{
		{"192.222.59.109", "c0de3b6d", 4},
		{"::ffff:10.0.0.1", "0a000001", 4},
		{"2001:db8::1", "20010db8000000000000000000000001", 6},
	}
	for _, tt := range tests {
		v, ty, err := ipToU128(tt.ip)
		want, _ := new(big.Int).SetString(tt.want, 16)
		if err != nil || ty != tt.ipType || v.Cmp(want) != 0 {
			t.Errorf("ipToU128(%s) = %x, %d, %v", tt.ip, v, ty, err)
		}
		back, err := axonIP(v, uint64(ty))
		if err != nil {
			t.Errorf("axonIP: %v", err)
		}
		if tt.ipType == 6 && back != tt.ip {
			t.Errorf("round trip %s → %s", tt.ip, back)
		}
	}
	for _, bad := range []string{"", "example.com", "1.2.3"} {
		if _, _, err := ipToU128(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := axonIP(new(big.Int).Lsh(big.NewInt(1), 40), 4); err == nil {
		t.Error("40-bit IPv4 accepted")
	}
	if _, err := axonIP(big.NewInt(1), 5); err == nil {
		t.Error("ip_type 5 accepted")
	}
}

// An IPv4-mapped IPv6 axon (ip_type 6, ::ffff:a.b.c.d) reaches the IPv4
// host and is rendered as it, so the one-uid-per-IP rule sees one address.
func TestAxonIPMappedIPv4(t *testing.T) {
	mapped := func(a, b, c, d byte) *big.Int {
		return new(big.Int).SetBytes([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d})
	}
	tests := []struct {
		ip     *big.Int
		ipType uint64
		want   string
	}{
		{mapped(127, 0, 0, 1), 6, "127.0.0.1"},
		{mapped(1, 2, 3, 4), 6, "1.2.3.4"},
		{mapped(0, 0, 0, 0), 6, "0.0.0.0"},
		{big.NewInt(0x01020304), 4, "1.2.3.4"},
		{new(big.Int).SetBytes([]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}), 6, "2001:db8::1"},
	}
	for _, tt := range tests {
		got, err := axonIP(tt.ip, tt.ipType)
		if err != nil || got != tt.want {
			t.Errorf("axonIP(%x, %d) = %q, %v; want %q", tt.ip, tt.ipType, got, err, tt.want)
		}
	}
}

// TestExtensionsOfNewerRuntime rebuilds the extension list of subtensor's
// current source (runtime/src/lib.rs TxExtension), which the recorded
// runtime 343 predates: CheckMortality becomes a struct of (Era,
// PhantomData), the payment extension is wrapped as
// ChargeTransactionPaymentWrapper { inner }, and SudoTransactionExtension
// and CheckShieldedTxValidity (PhantomData only) appear. The encoding
// must not change.
func TestExtensionsOfNewerRuntime(t *testing.T) {
	m := metadataV15(t, loadRecordings(t))
	mm := *m
	mm.types = slices.Clone(m.types)
	add := func(td typeDef) uint32 {
		mm.types = append(mm.types, td)
		return uint32(len(mm.types) - 1)
	}
	byName := map[string]extension{}
	for _, e := range m.extensions {
		byName[e.name] = e
	}
	unit := add(typeDef{kind: kindTuple})
	era := m.types[byName["CheckMortality"].typ].fields[0].typ
	mortality := add(typeDef{kind: kindComposite, path: []string{"CheckMortality"}, fields: []field{{typ: era}, {typ: unit}}})
	wrapper := add(typeDef{kind: kindComposite, path: []string{"ChargeTransactionPaymentWrapper"},
		fields: []field{{name: "inner", typ: byName["ChargeTransactionPayment"].typ}}})
	phantom := add(typeDef{kind: kindComposite, path: []string{"SudoTransactionExtension"}})
	mm.extensions = nil
	for _, name := range []string{"CheckNonZeroSender", "CheckSpecVersion", "CheckTxVersion", "CheckGenesis", "CheckMortality",
		"CheckNonce", "CheckWeight", "ChargeTransactionPaymentWrapper", "SudoTransactionExtension",
		"CheckShieldedTxValidity", "SubtensorTransactionExtension", "DrandPriority", "CheckMetadataHash"} {
		e, ok := byName[name]
		switch name {
		case "CheckMortality":
			e.typ = mortality
		case "ChargeTransactionPaymentWrapper":
			e = extension{name: name, typ: wrapper, additional: unit}
		case "SudoTransactionExtension", "CheckShieldedTxValidity":
			e = extension{name: name, typ: phantom, additional: unit}
		default:
			if !ok {
				t.Fatalf("runtime 343 has no %s", name)
			}
		}
		mm.extensions = append(mm.extensions, e)
	}
	extra, implicit, err := mm.extensionData(testTxParams())
	if err != nil {
		t.Fatal(err)
	}
	p := testTxParams()
	if !bytes.Equal(extra, h(t, "2501 14 00 00")) || !bytes.Equal(implicit, slices.Concat(h(t, "57010000 01000000"), p.genesis, p.eraHash, []byte{0})) {
		t.Fatalf("extra %x implicit %x", extra, implicit)
	}
}
