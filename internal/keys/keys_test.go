package keys

import (
	"encoding/hex"
	"testing"
)

func TestDevAccounts(t *testing.T) {
	tests := []struct {
		uri, want string
	}{
		{"//Alice", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"},
		{"//Bob", "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			kp, err := FromURI(tt.uri)
			if err != nil {
				t.Fatal(err)
			}
			if kp.SS58() != tt.want {
				t.Fatalf("FromURI(%q) = %s, want %s", tt.uri, kp.SS58(), tt.want)
			}
		})
	}
}

func TestSignVerify(t *testing.T) {
	kp, err := FromURI("//Alice")
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("1.a.b.c.d")
	sig, err := kp.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := Verify(kp.SS58(), msg, sig)
	if err != nil || !ok {
		t.Fatalf("Verify = %v, %v; want true", ok, err)
	}
	msg[0] = '2'
	if ok, _ := Verify(kp.SS58(), msg, sig); ok {
		t.Fatal("altered message verified")
	}
	if _, err := Verify(kp.SS58(), msg, sig[:10]); err == nil {
		t.Fatal("short signature accepted")
	}
	if _, err := Verify("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ", msg, sig); err == nil {
		t.Fatal("address with bad checksum accepted")
	}
}

func TestMnemonic(t *testing.T) {
	m, err := NewMnemonic(12)
	if err != nil {
		t.Fatal(err)
	}
	a, err := FromMnemonic(m, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := FromURI(m)
	if err != nil {
		t.Fatal(err)
	}
	if a.SS58() != b.SS58() {
		t.Fatalf("mnemonic and URI disagree: %s vs %s", a.SS58(), b.SS58())
	}
	seeded, err := FromSeedHex("0x" + hex.EncodeToString(a.Seed()))
	if err != nil || seeded.SS58() != a.SS58() {
		t.Fatalf("seed round trip: %v %v", seeded, err)
	}
	// Substrate's development phrase is a fixed, well-known account.
	dev, err := FromMnemonic("bottom drive obey lake curtain smoke basket hold race lonely fit walk", "")
	if err != nil {
		t.Fatal(err)
	}
	if dev.SS58() != "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV" {
		t.Fatalf("dev phrase = %s", dev.SS58())
	}
	if _, err := FromMnemonic("bottom drive obey lake curtain smoke basket hold race lonely fit fit", ""); err == nil {
		t.Fatal("bad checksum accepted")
	}
}
