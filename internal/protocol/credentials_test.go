package protocol

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"

	"github.com/nicompute/nicompute/internal/market"
)

func TestCredentialsRoundTrip(t *testing.T) {
	priv, pubPEM, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	want := Credentials{Username: "root", Password: strings.Repeat("x", 32), Port: 4444, Version: 190}
	info, err := EncryptCredentials(pub, want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecryptCredentials(priv, info)
	if err != nil || got != want {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	other, _, _ := GenerateKey()
	if _, err := DecryptCredentials(other, info); err == nil {
		t.Fatal("decrypted with the wrong key")
	}
	if PublicKeyFingerprint(pub) != PublicKeyFingerprint(&priv.PublicKey) || len(PublicKeyFingerprint(pub)) != 64 {
		t.Fatal("fingerprint unstable")
	}
}

func TestParsePublicKeyRefusals(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallPEM, _ := PublicKeyPEM(&small.PublicKey)
	priv, pubPEM, _ := GenerateKey()
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&priv.PublicKey)}))
	if _, err := ParsePublicKey(pkcs1); err != nil {
		t.Fatalf("PKCS#1 key refused: %v", err)
	}
	tests := map[string]string{
		"empty":      "",
		"not pem":    "ssh-rsa AAAA",
		"small":      smallPEM,
		"trailing":   pubPEM + "junk",
		"wrong type": strings.ReplaceAll(pubPEM, "PUBLIC KEY", "CERTIFICATE"),
		"garbage":    "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParsePublicKey(in); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestParsePublicKeyExponent refuses, in both encodings, keys that
// crypto/rsa cannot encrypt to (even exponent or modulus, exponent 1 or
// beyond 31 bits) or that would not hide anything (exponent 1): the miner
// must refuse them before it creates a container, not fail afterwards.
func TestParsePublicKeyExponent(t *testing.T) {
	priv, _, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	n := priv.N
	evenN := new(big.Int).Add(n, big.NewInt(1))
	tests := []struct {
		name string
		n    *big.Int
		e    int
		ok   bool
	}{
		{"65537", n, 65537, true},
		{"3", n, 3, true},
		{"largest", n, MaxRSAExponent, true},
		{"1", n, 1, false},
		{"2", n, 2, false},
		{"even", n, 65536, false},
		{"beyond 31 bits", n, 1<<33 + 1, false},
		{"even modulus", evenN, 65537, false},
	}
	for _, tt := range tests {
		pub := &rsa.PublicKey{N: tt.n, E: tt.e}
		spki, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		for enc, text := range map[string]string{
			"spki":  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})),
			"pkcs1": string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)})),
		} {
			t.Run(tt.name+"/"+enc, func(t *testing.T) {
				got, err := ParsePublicKey(text)
				if !tt.ok {
					if market.ErrorCode(err) != market.EINVALID {
						t.Fatalf("ParsePublicKey = %v, want EINVALID", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("ParsePublicKey: %v", err)
				}
				if _, err := EncryptCredentials(got, Credentials{Username: "root", Port: 1}); err != nil {
					t.Fatalf("accepted key cannot be encrypted to: %v", err)
				}
			})
		}
	}
}

func FuzzParsePublicKey(f *testing.F) {
	_, pubPEM, _ := GenerateKey()
	f.Add(pubPEM)
	f.Add("-----BEGIN RSA PUBLIC KEY-----\nMAA=\n-----END RSA PUBLIC KEY-----")
	f.Fuzz(func(t *testing.T, s string) {
		pub, err := ParsePublicKey(s)
		if err != nil {
			return
		}
		if pub.N.BitLen() < MinRSABits || pub.N.BitLen() > MaxRSABits {
			t.Fatalf("accepted a %d-bit key", pub.N.BitLen())
		}
		// Every accepted key can be encrypted to.
		if _, err := EncryptCredentials(pub, Credentials{Username: "root"}); err != nil {
			t.Fatalf("accepted key (e=%d) cannot be encrypted to: %v", pub.E, err)
		}
	})
}
