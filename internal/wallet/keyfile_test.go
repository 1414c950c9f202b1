package wallet

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nicompute/nicompute/internal/keys"
)

const (
	aliceSS58 = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
	bobSS58   = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
	devSS58   = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"
	devPhrase = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
	// alicePriv is //Alice's 64-byte sr25519 secret key as Substrate tools
	// publish it (canonical scalar || nonce).
	alicePriv = "0x33a6f3093f158a7109f679410bef1a0c54168145e0cecb4df006c1c2fffb1f09925a225d97aa00682d6a59b95b18780c10d7032336e88f3442b42361f4a66011"
	// fixturePassword encrypts the coldkey_* fixtures.
	fixturePassword = "nicompute-test"
)

// The fixtures reproduce the structure of files written by btwallet (Rust,
// serde_json of a map: compact, any key order, absent fields omitted) and by
// Python Bittensor (json.dumps: every field, null when absent), with keys
// from Substrate's public development phrase.
func TestGoldenKeyfiles(t *testing.T) {
	tests := []struct {
		file       string
		ss58       string
		hasSecret  bool
		mnemonic   string
		seeded     bool
		secretHex0 string // expected SecretKey, "" to skip
	}{
		{"hotkey_btwallet_uri.json", aliceSS58, true, "", false, alicePriv},
		{"hotkey_btwallet_mnemonic.json", devSS58, true, devPhrase, true, ""},
		{"hotkey_python_seed.json", aliceSS58, true, "", true, alicePriv},
		{"hotkey_ed25519_private.json", aliceSS58, true, "", false, alicePriv},
		{"coldkeypub_btwallet.txt", bobSS58, false, "", false, ""},
		{"coldkeypub_python.txt", bobSS58, false, "", false, ""},
		{"coldkeypub_hex.txt", bobSS58, false, "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data := readFixture(t, tt.file)
			kf, err := ParseKeyfile(data)
			if err != nil {
				t.Fatal(err)
			}
			if kf.SS58 != tt.ss58 || keys.SS58Encode(kf.PublicKey) != tt.ss58 {
				t.Fatalf("address %s, want %s", kf.SS58, tt.ss58)
			}
			if (kf.Keypair != nil) != tt.hasSecret {
				t.Fatalf("has secret = %v, want %v", kf.Keypair != nil, tt.hasSecret)
			}
			if kf.Keypair == nil {
				return
			}
			kp := kf.Keypair
			if kp.Mnemonic() != tt.mnemonic {
				t.Errorf("mnemonic %q, want %q", kp.Mnemonic(), tt.mnemonic)
			}
			if (kp.Seed() != nil) != tt.seeded {
				t.Errorf("seeded = %v, want %v", kp.Seed() != nil, tt.seeded)
			}
			if tt.secretHex0 != "" && hex0x(kp.SecretKey()) != tt.secretHex0 {
				t.Errorf("secret key %s, want %s", hex0x(kp.SecretKey()), tt.secretHex0)
			}
			// What we write parses back to the same key.
			again, err := ParseKeyfile(MarshalKeyfile(kp))
			if err != nil || again.Keypair.SS58() != kp.SS58() || !bytes.Equal(again.Keypair.SecretKey(), kp.SecretKey()) {
				t.Fatalf("re-marshalled keyfile: %v", err)
			}
		})
	}
}

// TestMarshalFormat pins the exact bytes nicompute writes: btwallet's field
// names and encodings, in a fixed order.
func TestMarshalFormat(t *testing.T) {
	kp, err := keys.FromMnemonic(devPhrase, "")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"accountId":"0x46ebddef8cd9bb167dc30878d7113b7e168e6f0646beffd77d69d39bad76b47a",` +
		`"publicKey":"0x46ebddef8cd9bb167dc30878d7113b7e168e6f0646beffd77d69d39bad76b47a",` +
		`"privateKey":"0x05d65584630d16cd4af6d0bec10f34bb504a5dcb62dba2122d49f5a663763d0afd190cce74df356432b410bd64682309d6dedb27c76845daf388557cbac3ca34",` +
		`"secretPhrase":"bottom drive obey lake curtain smoke basket hold race lonely fit walk",` +
		`"secretSeed":"0xfac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e",` +
		`"ss58Address":"5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"}`
	if got := string(MarshalKeyfile(kp)); got != want {
		t.Fatalf("MarshalKeyfile =\n%s\nwant\n%s", got, want)
	}
	pub, err := MarshalPublicKeyfile(kp.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	wantPub := `{"accountId":"0x46ebddef8cd9bb167dc30878d7113b7e168e6f0646beffd77d69d39bad76b47a",` +
		`"publicKey":"0x46ebddef8cd9bb167dc30878d7113b7e168e6f0646beffd77d69d39bad76b47a",` +
		`"ss58Address":"5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"}`
	if string(pub) != wantPub {
		t.Fatalf("MarshalPublicKeyfile =\n%s\nwant\n%s", pub, wantPub)
	}
	// A key from a URI has no phrase and no seed field after a soft
	// junction, like btwallet's create_from_uri output.
	soft, err := keys.FromURI("//Alice/soft")
	if err != nil {
		t.Fatal(err)
	}
	s := string(MarshalKeyfile(soft))
	if strings.Contains(s, "secretPhrase") || strings.Contains(s, "secretSeed") {
		t.Fatalf("soft-derived keyfile has phrase or seed: %s", s)
	}
}

func TestParseKeyfileErrors(t *testing.T) {
	alice := string(readFixture(t, "hotkey_btwallet_uri.json"))
	dev := string(readFixture(t, "hotkey_btwallet_mnemonic.json"))
	bobPub := "0x8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48"
	tests := []struct {
		name, data string
		want       error
	}{
		{"empty", "", ErrCorrupt},
		{"not JSON", "hello", ErrCorrupt},
		{"truncated", alice[:len(alice)/2], ErrCorrupt},
		{"array", `["a"]`, ErrCorrupt},
		{"number field", `{"publicKey": 5}`, ErrCorrupt},
		{"no key material", `{}`, ErrCorrupt},
		{"null document", `null`, ErrCorrupt},
		{"trailing data", alice + `{}`, ErrCorrupt},
		{"trailing brace", alice + `}`, ErrCorrupt},
		{"not UTF-8", "{\"ss58Address\":\"\xff\"}", ErrCorrupt},
		{"public key mismatch", strings.Replace(alice, `"publicKey":"0xd435`, `"publicKey":"0x8eaf`, 1), ErrCorrupt},
		{"secret for another address", `{"privateKey":"` + alicePriv + `","ss58Address":"` + bobSS58 + `"}`, ErrCorrupt},
		{"accountId differs", `{"publicKey":"` + bobPub + `","accountId":"0x` + strings.Repeat("11", 32) + `"}`, ErrCorrupt},
		{"bad ss58 checksum", `{"ss58Address":"5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ"}`, ErrCorrupt},
		{"short public key", `{"publicKey":"0x8eaf"}`, ErrCorrupt},
		{"bad mnemonic checksum", `{"secretPhrase":"bottom drive obey lake curtain smoke basket hold race lonely fit fit"}`, ErrCorrupt},
		{"phrase and seed disagree", strings.Replace(dev, `"secretSeed":"0xfac7`, `"secretSeed":"0xfac8`, 1), ErrCorrupt},
		{"private key wrong length", `{"privateKey":"0x1234"}`, ErrCorrupt},
		{"private key not hex", `{"privateKey":"0x` + strings.Repeat("zz", 64) + `"}`, ErrCorrupt},
		{"private key not a scalar", `{"privateKey":"0x` + strings.Repeat("ff", 64) + `"}`, ErrCorrupt},
		{"nacl", "$NACL" + strings.Repeat("x", 60), ErrEncrypted},
		{"ansible", "$ANSIBLE_VAULT;1.1;AES256\n00", ErrEncrypted},
		{"fernet", "gAAAAAB", ErrEncrypted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kf, err := ParseKeyfile([]byte(tt.data))
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseKeyfile = %+v, %v; want %v", kf, err, tt.want)
			}
		})
	}
}

func TestParseKeyfileNoSecretInErrors(t *testing.T) {
	// A keyfile whose phrase fails its checksum: the words must not be echoed.
	data := `{"secretPhrase":"zebra drive obey lake curtain smoke basket hold race lonely fit walk"}`
	_, err := ParseKeyfile([]byte(data))
	if err == nil || strings.Contains(err.Error(), "zebra") {
		t.Fatalf("error leaks the phrase: %v", err)
	}
	_, err = ParseKeyfile([]byte(`{"privateKey":"` + alicePriv[:100] + `"}`))
	if err == nil || strings.Contains(err.Error(), alicePriv[2:20]) {
		t.Fatalf("error leaks the private key: %v", err)
	}
}

// btwallet writes secretSeed as "0x" + the raw seed bytes when those happen
// to be valid UTF-8; such a file still loads from its other secrets.
func TestGarbledSecretSeedTolerated(t *testing.T) {
	data := `{"privateKey":"` + alicePriv + `","secretSeed":"0xabc\u00e9","ss58Address":"` + aliceSS58 + `"}`
	kf, err := ParseKeyfile([]byte(data))
	if err != nil || kf.Keypair == nil || kf.SS58 != aliceSS58 {
		t.Fatalf("ParseKeyfile = %+v, %v", kf, err)
	}
	// privateKey is a fallback: with a usable seed, Bittensor never reads it.
	seeded := strings.Replace(string(readFixture(t, "hotkey_python_seed.json")), alicePriv[:10], "0x00", 1)
	if kf, err := ParseKeyfile([]byte(seeded)); err != nil || kf.SS58 != aliceSS58 {
		t.Fatalf("seed with a damaged privateKey: %+v, %v", kf, err)
	}
	if _, err := ParseKeyfile([]byte(`{"secretSeed":"0xabc"}`)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a malformed seed alone: %v", err)
	}
}

func TestDecryptFixtures(t *testing.T) {
	if testing.Short() {
		t.Skip("key derivations take seconds each")
	}
	tests := []struct {
		file   string
		method string
	}{
		{"coldkey_nacl", MethodNaCl},
		{"coldkey_ansible", MethodAnsible},
		{"coldkey_fernet", MethodFernet},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data := readFixture(t, tt.file)
			if m := EncryptionMethod(data); m != tt.method {
				t.Fatalf("EncryptionMethod = %q, want %q", m, tt.method)
			}
			plain, err := Decrypt(data, []byte(fixturePassword))
			if err != nil {
				t.Fatal(err)
			}
			kf, err := ParseKeyfile(plain)
			if err != nil || kf.Keypair == nil || kf.SS58 != aliceSS58 {
				t.Fatalf("decrypted keyfile: %+v, %v", kf, err)
			}
			if _, err := Decrypt(data, []byte("wrong")); !errors.Is(err, ErrWrongPassword) {
				t.Fatalf("wrong password: %v", err)
			}
		})
	}
}

func TestDecryptMalformed(t *testing.T) {
	fast := kdfParams{time: 1, memoryKiB: 8, fernetIter: 1, ansibleIter: 1}
	for _, data := range []string{
		"$NACL",
		"$NACLshort",
		"$ANSIBLE_VAULT;1.1;AES256\nzz",
		"$ANSIBLE_VAULT;1.2\n00",
		"$ANSIBLE_VAULT;1.1;AES256\n" + hexString("a\nb"),
		"gAAAAA!!!",
		"gAAAAAAA",
		"plain",
	} {
		if _, err := decrypt([]byte(data), []byte("pw"), fast); err == nil {
			t.Errorf("decrypt(%q) succeeded", data)
		}
	}
}

func hexString(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		b.WriteString("0123456789abcdef"[c>>4 : c>>4+1])
		b.WriteString("0123456789abcdef"[c&15 : c&15+1])
	}
	return b.String()
}

func TestEncryptRoundTripFast(t *testing.T) {
	fast := kdfParams{time: 1, memoryKiB: 64, fernetIter: 1, ansibleIter: 1}
	plain := readFixture(t, "hotkey_btwallet_mnemonic.json")
	enc, err := encrypt(plain, []byte("pw"), fast)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(enc, []byte("$NACL")) || len(enc) != 5+24+16+len(plain) {
		t.Fatalf("layout: %d bytes", len(enc))
	}
	again, err := encrypt(plain, []byte("pw"), fast)
	if err != nil || bytes.Equal(again, enc) {
		t.Fatal("nonce not random")
	}
	got, err := decrypt(enc, []byte("pw"), fast)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := decrypt(enc, []byte("pW"), fast); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	enc[len(enc)-1] ^= 1
	if _, err := decrypt(enc, []byte("pw"), fast); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("tampered: %v", err)
	}
	if _, err := encrypt(plain, []byte{}, fast); err == nil {
		t.Fatal("empty password accepted")
	}
}

func readFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
