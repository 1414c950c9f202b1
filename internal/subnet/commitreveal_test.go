package subnet

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

func TestWeightsPayloadSCALE(t *testing.T) {
	// WeightsTlockPayload { hotkey: [1,2,3], uids: [1,2], values: [11,22],
	// version_key: 50 } as parity-scale-codec encodes it: compact lengths
	// (n<<2), u16 and u64 little-endian.
	p := WeightsPayload{Hotkey: []byte{1, 2, 3}, UIDs: []UID{1, 2}, Values: []uint16{11, 22}, VersionKey: 50}
	want := "0c010203" + "0801000200" + "080b001600" + "3200000000000000"
	if got := hex.EncodeToString(p.Encode()); got != want {
		t.Fatalf("encode = %s, want %s", got, want)
	}
	back, err := DecodeWeightsPayload(p.Encode())
	if err != nil || !reflect.DeepEqual(back, p) {
		t.Fatalf("decode = %+v, %v", back, err)
	}
	// 70 uids need the two-byte compact length (70<<2|1 = 0x0119).
	big := WeightsPayload{Hotkey: bytes.Repeat([]byte{7}, 32), UIDs: make([]UID, 70), Values: make([]uint16, 70)}
	enc := big.Encode()
	if !bytes.Equal(enc[33:35], []byte{0x19, 0x01}) {
		t.Fatalf("compact 70 = %x", enc[33:35])
	}
	if back, err := DecodeWeightsPayload(enc); err != nil || len(back.UIDs) != 70 {
		t.Fatalf("decode 70 uids: %v", err)
	}
	for n, want := range map[uint64]string{0: "00", 63: "fc", 64: "0101", 16383: "fdff", 16384: "02000100",
		1<<30 - 1: "feffffff", 1 << 30: "0300000040", 1 << 40: "0b000000000001"} {
		if got := hex.EncodeToString(appendCompact(nil, n)); got != want {
			t.Errorf("compact %d = %s, want %s", n, got, want)
		}
	}
}

func TestDecodeWeightsPayloadRefusals(t *testing.T) {
	good := WeightsPayload{Hotkey: []byte{1, 2, 3}, UIDs: []UID{1, 2}, Values: []uint16{11, 22}, VersionKey: 50}.Encode()
	for name, b := range map[string][]byte{
		"empty":         nil,
		"truncated":     good[:len(good)-1],
		"trailing":      append(bytes.Clone(good), 0),
		"huge hotkey":   {0xff, 0xff, 0xff, 0xff, 0x0f},
		"huge uids":     append([]byte{0}, 0xfe, 0xff, 0xff, 0xff),
		"legacy layout": good[4:],
	} {
		if _, err := DecodeWeightsPayload(b); err == nil || !strings.Contains(err.Error(), "weights payload") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecodeWeightsPayload(f *testing.F) {
	f.Add(WeightsPayload{Hotkey: bytes.Repeat([]byte{9}, 32), UIDs: []UID{0, 5}, Values: []uint16{65535, 1}, VersionKey: 7}.Encode())
	f.Add([]byte{0x03, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeWeightsPayload(b)
		if err != nil {
			return
		}
		back, err := DecodeWeightsPayload(p.Encode())
		if err != nil || !reflect.DeepEqual(back, p) {
			t.Fatalf("re-encoding %+v does not decode to itself: %v", p, err)
		}
	})
}
