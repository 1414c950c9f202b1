package keys

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const (
	devPhrase   = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
	crowdPhrase = "crowd swamp sniff machine grid pretty client emotion banana cricket flush soap"
)

// Vectors published by Substrate's `subkey inspect` (via go-subkey's tests),
// sp_core's tests and btwallet's tests.
func TestDeriveVectors(t *testing.T) {
	tests := []struct {
		name, uri string
		seed      string // "" when the key has no seed (soft junction last)
		pub       string
		ss58      string
	}{
		{"phrase", crowdPhrase, "18446f2d685492c3086391aabe8f5e235c3c2e02521985650f0c97052237e717",
			"88af895626c47cf1235ec3898d238baeb41adca3117b9a77bc2f6b78eca0771b", "5F9vWoiazEhfxSxCG8nUuDhh5fqNtPnSxp2BrhPsuLqEQASi"},
		{"hex seed", "0x18446f2d685492c3086391aabe8f5e235c3c2e02521985650f0c97052237e717", "18446f2d685492c3086391aabe8f5e235c3c2e02521985650f0c97052237e717",
			"88af895626c47cf1235ec3898d238baeb41adca3117b9a77bc2f6b78eca0771b", "5F9vWoiazEhfxSxCG8nUuDhh5fqNtPnSxp2BrhPsuLqEQASi"},
		{"phrase with password", crowdPhrase + "///password", "d2dbfa26295528f3893430047b773e5bc5457b02c520c5d80bb83366d42de032",
			"5c2d57c4cfa7df7a9d0e9546bb575045f5ec14e9771de8bc907910c84cd5de2a", "5E9ZjRM9VdqES5JhbABVpvgCstaE7J5x3cE7sTKMGG5TF8tZ"},
		{"soft", crowdPhrase + "/foo", "",
			"287061f5973551d070ccc62fb4563a0be2e6324ce183c456850e342aa021f94d", "5CyjA4yQrQtJBs7jC4D6S672y3Ez4Shd3se6VXB4JBkdGwUZ"},
		{"hard", crowdPhrase + "//foo", "5e42b0ed6e2e5f415ff7b40aeda2c7d620c48b680483340866d0b413af33c2ee",
			"04bd4f94429371e044509d22f8a6d33ab9c336bf54ef6b38eba0cc3a4f125e5a", "5CAvHXaqNRwbbL4B3MoQJdam8JmotCGAF8kTpgWhR9ahhJYS"},
		{"hard numeric", crowdPhrase + "//foo//42", "ec3cea90f177012d75ed1ec96372567777a5615c96cc85462152f8007c7f4205",
			"de4255b281cda3580a7aad6d2c7efd990e6b31569ab1a0a8adc18b32e4fa510f", "5H68C9rPXxtbsAZMznJaLJWfg1GXDuf3yAgjZoMYcfGxZ6Db"},
		{"hard then soft", crowdPhrase + "//foo/bar", "",
			"0c6febc87c461f8ddceb295d90c3ba999b1e93c2bdd13145b265512d06729449", "5CM1gMJkyRoE7txkdHv31y6H4yPMKCALSDpaeaE8BpDVwrht"},
		{"soft then hard", crowdPhrase + "/foo//bar", "",
			"e4535b3b8e259badc3c78128bfafe0b50df625862edaff7c9d68999a0811865b", "5HE5Y6MDZvy9QJsmgjrnJHiSqsYRTrfBLrzLvHQC3f9PM6TR"},
		{"mixed", crowdPhrase + "//foo/bar//42/69", "",
			"68a5a8f7e29ffcae1d15518b180f6e4f1132b45ffd565cb7953045faf07c8809", "5ERv3mLP7CX1CViNc6NUQaePBJMkf6BELffpMfXjXjj28SNo"},
		{"mixed with password", crowdPhrase + "//foo/bar//42/69///password", "",
			"4055514cd4ddcc7b23024839b68190f3f71bc262eb038145262bfe087bbb5429", "5DX4GQQm9rSHVcqaG9CgxdZLsj8buBxcRWEYYcHrRXe4epZg"},
		{"dev soft Alice", devPhrase + "/Alice", "",
			"d6c71059dbbe9ad2b0ed3f289738b800836eb425544ce694825285b958ca755e", ""},
		{"dev hard Alice", devPhrase + "//Alice", "",
			"d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"},
		{"//Alice", "//Alice", "",
			"d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"},
		{"//Bob", "//Bob", "", "", "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"},
		{"btwallet phrase", "old leopard transfer rib spatial phone calm indicate online fire caution review", "",
			"e4359ad3e2716c539a1d663ebd0a51bdc5c98a12e663bb4c4402db47828c9446", "5HDvhV6WDCjCKyrXqGQSDYqQAzkzabNhctmiDYEqgBC66BsX"},
		{"dev phrase", devPhrase, "", "", "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := FromURI(tt.uri)
			if err != nil {
				t.Fatal(err)
			}
			if tt.pub != "" {
				if got := hex.EncodeToString(kp.PublicKey()); got != tt.pub {
					t.Errorf("public key = %s, want %s", got, tt.pub)
				}
			}
			if tt.ss58 != "" && kp.SS58() != tt.ss58 {
				t.Errorf("SS58 = %s, want %s", kp.SS58(), tt.ss58)
			}
			if tt.seed != "" {
				if got := hex.EncodeToString(kp.Seed()); got != tt.seed {
					t.Errorf("seed = %s, want %s", got, tt.seed)
				}
			}
			soft := strings.Contains(strings.TrimSuffix(tt.uri, "///password"), "/") &&
				!strings.Contains(lastJunction(tt.uri), "//")
			if soft && kp.Seed() != nil {
				t.Errorf("soft-derived key has a seed")
			}
			// Every key round-trips through its secret key and its seed.
			again, err := FromSecretKey(kp.SecretKey())
			if err != nil || again.SS58() != kp.SS58() {
				t.Fatalf("FromSecretKey round trip: %v, %v", again, err)
			}
			if s := kp.Seed(); s != nil {
				again, err := FromSeed(s)
				if err != nil || again.SS58() != kp.SS58() || !bytes.Equal(again.SecretKey(), kp.SecretKey()) {
					t.Fatalf("FromSeed round trip: %v, %v", again, err)
				}
			}
			msg := []byte("nicompute " + tt.name)
			sig, err := kp.Sign(msg)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := Verify(kp.SS58(), msg, sig); !ok || err != nil {
				t.Fatalf("signature does not verify: %v %v", ok, err)
			}
		})
	}
}

func lastJunction(uri string) string {
	uri = strings.TrimSuffix(uri, "///password")
	i := strings.LastIndex(uri, "/")
	if i > 0 && uri[i-1] == '/' {
		return uri[i-1:]
	}
	return uri[i:]
}

func TestPasswordVariants(t *testing.T) {
	// sp_core: "//Alice///password" is the dev phrase, derived //Alice, with
	// the mnemonic password "password".
	a, err := FromURI("//Alice///password")
	if err != nil {
		t.Fatal(err)
	}
	b, err := FromURI(devPhrase + "//Alice///password")
	if err != nil {
		t.Fatal(err)
	}
	if a.SS58() != b.SS58() {
		t.Fatalf("%s != %s", a.SS58(), b.SS58())
	}
	alice, _ := FromURI("//Alice")
	if a.SS58() == alice.SS58() {
		t.Fatal("password ignored")
	}
	// FromMnemonic with a password equals the ///password URI.
	m, err := FromMnemonic(crowdPhrase, "password")
	if err != nil {
		t.Fatal(err)
	}
	if m.SS58() != "5E9ZjRM9VdqES5JhbABVpvgCstaE7J5x3cE7sTKMGG5TF8tZ" {
		t.Fatalf("mnemonic+password = %s", m.SS58())
	}
	if m.Mnemonic() != "" {
		t.Fatal("a key from mnemonic+password must not claim the bare phrase reproduces it")
	}
}

func TestMnemonicRemembered(t *testing.T) {
	tests := []struct {
		name, uri, want string
	}{
		{"plain", crowdPhrase, crowdPhrase},
		{"messy spacing and case", "  CROWD swamp  sniff machine grid pretty client emotion banana cricket flush soap ", crowdPhrase},
		{"derived", crowdPhrase + "//foo", ""},
		{"password", crowdPhrase + "///x", ""},
		{"seed", "0x18446f2d685492c3086391aabe8f5e235c3c2e02521985650f0c97052237e717", ""},
		{"dev", "//Alice", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := FromURI(tt.uri)
			if err != nil {
				t.Fatal(err)
			}
			if kp.Mnemonic() != tt.want {
				t.Fatalf("Mnemonic() = %q, want %q", kp.Mnemonic(), tt.want)
			}
		})
	}
}

func TestSecretKeyForms(t *testing.T) {
	kp, err := FromMnemonic(crowdPhrase, "")
	if err != nil {
		t.Fatal(err)
	}
	sk := kp.SecretKey()
	if len(sk) != SecretKeyLen {
		t.Fatalf("secret key is %d bytes", len(sk))
	}
	// The ed25519 form multiplies the scalar by 8; it is not canonical.
	ed := bytes.Clone(sk)
	timesCofactor((*[32]byte)(ed[:32]))
	if _, err := FromSecretKey(ed); err == nil {
		t.Fatal("ed25519-form secret accepted as canonical")
	}
	fromEd, err := FromEd25519SecretKey(ed)
	if err != nil {
		t.Fatal(err)
	}
	if fromEd.SS58() != kp.SS58() || !bytes.Equal(fromEd.SecretKey(), sk) {
		t.Fatalf("ed25519 form gives %s, want %s", fromEd.SS58(), kp.SS58())
	}
	// A 64-byte hex secret is also a valid URI phrase, as in sp_core.
	viaURI, err := FromURI("0x" + hex.EncodeToString(sk))
	if err != nil || viaURI.SS58() != kp.SS58() {
		t.Fatalf("64-byte hex URI: %v %v", viaURI, err)
	}
	for _, bad := range [][]byte{nil, sk[:63], make([]byte, 64)} {
		if _, err := FromSecretKey(bad); err == nil {
			t.Errorf("FromSecretKey(%x) accepted", bad)
		}
	}
}

func timesCofactor(s *[32]byte) {
	var carry byte
	for i := range s {
		v := s[i]
		s[i] = v<<3 | carry
		carry = v >> 5
	}
}

func TestNoSecretsInFormatting(t *testing.T) {
	kp, err := FromURI("//Alice")
	if err != nil {
		t.Fatal(err)
	}
	secretHex := hex.EncodeToString(kp.SecretKey())
	var logBuf strings.Builder
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("key", "kp", kp)
	for _, s := range []string{fmt.Sprint(kp), fmt.Sprintf("%v %+v %#v %s", kp, kp, kp, kp), logBuf.String()} {
		if strings.Contains(s, secretHex[:16]) || strings.Contains(strings.ToLower(s), "secret") {
			t.Fatalf("formatting leaks secret material: %q", s)
		}
		if !strings.Contains(s, kp.SS58()) {
			t.Fatalf("formatting lacks the address: %q", s)
		}
	}
}

func TestBadURIs(t *testing.T) {
	for _, uri := range []string{
		"",
		"bottom drive obey lake curtain smoke basket hold race lonely fit fit//Alice",
		"0x1234",
		"0xzz",
		"not a mnemonic at all",
	} {
		if kp, err := FromURI(uri); err == nil {
			t.Errorf("FromURI(%q) = %s, want error", uri, kp.SS58())
		}
	}
}
