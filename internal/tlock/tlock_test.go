package tlock

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	bls "github.com/cloudflare/circl/ecc/bls12381"
)

// Public drand quicknet pulses (https://api.drand.sh/52db9ba7…/public/R).
const (
	sig1000   = "b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39"
	sig657413 = "b713718a38ae728dfd477991af2822e08d2f305e47718cef9f7848ce4050e7be41076862b98fad56e91a6b85b89cd97b"
	// randomness of round 657413: SHA-256 of its signature.
	rand657413 = "fc1873a13f3545aeade8401532ef5519920652eee6b0d2b19ca12643b87b3587"
)

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// seeded is a deterministic random source for tests.
func seeded(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

func TestQuicknetSignaturesVerify(t *testing.T) {
	t.Parallel()
	q := Quicknet()
	if err := q.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		round uint64
		sig   string
	}{{1000, sig1000}, {657413, sig657413}} {
		if err := q.Verify(tc.round, mustHex(t, tc.sig)); err != nil {
			t.Errorf("round %d: %v", tc.round, err)
		}
		if err := q.Verify(tc.round+1, mustHex(t, tc.sig)); err == nil {
			t.Errorf("round %d's signature verifies for round %d", tc.round, tc.round+1)
		}
	}
	if got := sha256.Sum256(mustHex(t, sig657413)); hex.EncodeToString(got[:]) != rand657413 {
		t.Errorf("randomness of round 657413 = %x", got)
	}
	// Round 1 is at genesis, one round every 3 s.
	if r := q.RoundAt(time.Unix(QuicknetGenesis, 0)); r != 1 {
		t.Errorf("round at genesis = %d", r)
	}
	if r := q.RoundAt(time.Unix(QuicknetGenesis+3*999+2, 0)); r != 1000 {
		t.Errorf("round at genesis+2999 s = %d, want 1000", r)
	}
	if got := q.TimeOf(1000); got.Unix() != QuicknetGenesis+3*999 {
		t.Errorf("time of round 1000 = %v", got)
	}
	if r := q.RoundAt(time.Unix(QuicknetGenesis-1, 0)); r != 0 {
		t.Errorf("round before genesis = %d", r)
	}
}

func TestVerifyRefusesBadSignatures(t *testing.T) {
	t.Parallel()
	q := Quicknet()
	sig := mustHex(t, sig1000)
	var inf bls.G1
	inf.SetIdentity()
	for name, bad := range map[string][]byte{
		"empty":        nil,
		"short":        sig[:47],
		"long":         append(bytes.Clone(sig), 0),
		"uncompressed": bls.G1Generator().Bytes(),
		"not on curve": append([]byte{0x80 | 0x1f}, bytes.Repeat([]byte{0xff}, 47)...),
		"infinity":     inf.BytesCompressed(),
		"other point":  bls.G1Generator().BytesCompressed(),
	} {
		if err := q.Verify(1000, bad); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
	if err := (Beacon{PublicKey: []byte{1, 2}, Period: time.Second}).Verify(1, sig); err == nil {
		t.Error("a malformed public key verified")
	}
}

// TestQuicknetRoundTrip encrypts to round 1000 under quicknet's key, as
// ideal-lab5/timelock's example does with the 32-byte secret 01020304×8
// and "Hello, Timelock!", and decrypts with drand's published signature.
func TestQuicknetRoundTrip(t *testing.T) {
	t.Parallel()
	q := Quicknet()
	msg := []byte("Hello, Timelock!")
	ct, err := Encrypt(q.PublicKey, 1000, msg, seeded(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) != Overhead+len(msg) {
		t.Fatalf("ciphertext of %d bytes, want %d", len(ct), Overhead+len(msg))
	}
	got, err := Decrypt(ct, mustHex(t, sig1000))
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("decrypt = %q, %v", got, err)
	}
	// Another round's signature does not open it, and nothing panics.
	if _, err := Decrypt(ct, mustHex(t, sig657413)); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("decrypt with round 657413's signature: %v", err)
	}
	// Tampering with any part of the body is detected.
	for _, i := range []int{PublicKeySize + 8, PublicKeySize + 8 + 32 + 8, len(ct) - len(CipherSuite) - 8 - 20} {
		bad := bytes.Clone(ct)
		bad[i] ^= 1
		if _, err := Decrypt(bad, mustHex(t, sig1000)); err == nil {
			t.Errorf("flipping byte %d still decrypts", i)
		}
	}
}

// TestLayout checks the bytes against tle's serialisation rules
// (ark-serialize 0.4, compressed): u as 96 bytes with the zcash flags,
// each Vec<u8> as a little-endian u64 length and its bytes.
func TestLayout(t *testing.T) {
	t.Parallel()
	msg := []byte("payload of nineteen")
	ct, err := Encrypt(Quicknet().PublicKey, 42, msg, seeded(2))
	if err != nil {
		t.Fatal(err)
	}
	u := ct[:96]
	if u[0]&0x80 == 0 || u[0]&0x40 != 0 {
		t.Fatalf("u flags %08b: want compressed, not infinity", u[0])
	}
	var p bls.G2
	if err := p.SetBytes(u); err != nil {
		t.Fatalf("u is not a compressed G2 point: %v", err)
	}
	off := 96
	vec := func(want int, what string) []byte {
		t.Helper()
		n := binary.LittleEndian.Uint64(ct[off:])
		if want >= 0 && n != uint64(want) {
			t.Fatalf("%s length %d at offset %d, want %d", what, n, off, want)
		}
		v := ct[off+8 : off+8+int(n)]
		off += 8 + int(n)
		return v
	}
	vec(32, "v")
	vec(32, "w")
	body := vec(8+len(msg)+16+8+12, "body")
	if suite := vec(8, "cipher suite"); string(suite) != "AES_GCM_" {
		t.Fatalf("suite %q", suite)
	}
	if off != len(ct) {
		t.Fatalf("%d trailing bytes", len(ct)-off)
	}
	if n := binary.LittleEndian.Uint64(body); n != uint64(len(msg)+16) {
		t.Fatalf("AES ciphertext length %d", n)
	}
	if n := binary.LittleEndian.Uint64(body[8+len(msg)+16:]); n != 12 {
		t.Fatalf("nonce length %d", n)
	}
	// The same rand gives the same bytes: nothing else is random.
	again, _ := Encrypt(Quicknet().PublicKey, 42, msg, seeded(2))
	if !bytes.Equal(ct, again) {
		t.Fatal("encryption is not a function of its random source")
	}
}

// TestPairingOutputEncoding checks the rule the IBE hash depends on:
// arkworks writes an Fp12 as c0 before c1 down the tower with each Fp
// little-endian, so the identity (c0.c0.c0 = 1) starts with 01.
func TestPairingOutputEncoding(t *testing.T) {
	t.Parallel()
	var one bls.Gt
	one.SetIdentity()
	b, _ := one.MarshalBinary()
	ark := make([]byte, len(b))
	for i := range b {
		ark[i] = b[len(b)-1-i]
	}
	want := make([]byte, 576)
	want[0] = 1
	if !bytes.Equal(ark, want) {
		t.Fatalf("arkworks encoding of 1 in GT: %x…", ark[:8])
	}
	h := sha256.Sum256(want)
	if got := gtHash(&one); !bytes.Equal(got, h[:]) {
		t.Fatal("gtHash does not hash the arkworks encoding")
	}
}

func TestOwnBeacon(t *testing.T) {
	t.Parallel()
	k, err := GenerateKey(seeded(3))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParseSecretKey(k.Bytes())
	if err != nil || !bytes.Equal(k2.PublicKey(), k.PublicKey()) {
		t.Fatalf("key does not round-trip: %v", err)
	}
	b := Beacon{PublicKey: k.PublicKey(), Genesis: time.Unix(1_700_000_000, 0), Period: 250 * time.Millisecond}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	sig := k.Sign(7)
	if err := b.Verify(7, sig); err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(8, sig); err == nil {
		t.Fatal("round 7's signature verifies round 8")
	}
	ct, err := Encrypt(b.PublicKey, 7, []byte("weights"), seeded(4))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Decrypt(ct, sig); err != nil || string(got) != "weights" {
		t.Fatalf("decrypt = %q, %v", got, err)
	}
	if _, err := Decrypt(ct, k.Sign(6)); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("round 6's signature: %v", err)
	}
	if _, err := Decrypt(ct, mustHex(t, sig1000)); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("quicknet's signature: %v", err)
	}
	for _, bad := range [][]byte{nil, make([]byte, 32), bytes.Repeat([]byte{0xff}, 32)} {
		if _, err := ParseSecretKey(bad); err == nil {
			t.Errorf("ParseSecretKey(%x) accepted", bad)
		}
	}
}

func TestParseCiphertextRefusals(t *testing.T) {
	t.Parallel()
	good, err := Encrypt(Quicknet().PublicKey, 9, []byte("x"), seeded(5))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCiphertext(good); err != nil {
		t.Fatal(err)
	}
	c, _ := ParseCiphertext(good)
	mod := func(f func(c *Ciphertext)) []byte {
		d := *c
		f(&d)
		return d.Marshal()
	}
	var inf bls.G2
	inf.SetIdentity()
	cases := map[string][]byte{
		"empty":          nil,
		"truncated":      good[:len(good)-1],
		"trailing":       append(bytes.Clone(good), 0),
		"oversized":      make([]byte, MaxCiphertextSize+1),
		"huge length":    append(bytes.Clone(good[:96]), bytes.Repeat([]byte{0xff}, 8)...),
		"short v":        mod(func(c *Ciphertext) { c.V = c.V[:31] }),
		"long w":         mod(func(c *Ciphertext) { c.W = append(bytes.Clone(c.W), 0) }),
		"short nonce":    mod(func(c *Ciphertext) { c.Nonce = c.Nonce[:11] }),
		"no tag":         mod(func(c *Ciphertext) { c.Body = c.Body[:15] }),
		"other suite":    mod(func(c *Ciphertext) { c.Suite = []byte("CHACHA__") }),
		"u at infinity":  mod(func(c *Ciphertext) { c.U = inf.BytesCompressed() }),
		"u not on curve": mod(func(c *Ciphertext) { c.U = append([]byte{0x9f}, bytes.Repeat([]byte{0xff}, 95)...) }),
		"u uncompressed": append(bls.G2Generator().Bytes()[:96], good[96:]...),
	}
	for name, b := range cases {
		if _, err := ParseCiphertext(b); err == nil {
			t.Errorf("%s: parsed", name)
		} else if !strings.Contains(err.Error(), "ciphertext") {
			t.Errorf("%s: unclear error %q", name, err)
		}
	}
	if _, err := Encrypt(Quicknet().PublicKey, 1, make([]byte, MaxCiphertextSize), seeded(6)); err == nil {
		t.Error("an oversized message was encrypted")
	}
	if _, err := Encrypt([]byte{1}, 1, nil, seeded(6)); err == nil {
		t.Error("encrypted to a malformed public key")
	}
}
