package protocol

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
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

func FuzzParsePublicKey(f *testing.F) {
	_, pubPEM, _ := GenerateKey()
	f.Add(pubPEM)
	f.Add("-----BEGIN RSA PUBLIC KEY-----\nMAA=\n-----END RSA PUBLIC KEY-----")
	f.Fuzz(func(t *testing.T, s string) {
		pub, err := ParsePublicKey(s)
		if err == nil && (pub.N.BitLen() < MinRSABits || pub.N.BitLen() > MaxRSABits) {
			t.Fatalf("accepted a %d-bit key", pub.N.BitLen())
		}
	})
}
