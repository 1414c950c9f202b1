package tlock

import (
	"bytes"
	"testing"
)

// FuzzDecrypt feeds arbitrary ciphertexts and signatures to the decoder and
// the decryption: they must refuse cleanly, never panic, and whatever
// parses must encode back to the same bytes.
func FuzzDecrypt(f *testing.F) {
	k, err := GenerateKey(seeded(10))
	if err != nil {
		f.Fatal(err)
	}
	ct, err := Encrypt(k.PublicKey(), 3, []byte{0x04, 0x01, 0x02}, seeded(11))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ct, k.Sign(3))
	f.Add(ct, k.Sign(4))
	f.Add(ct[:100], k.Sign(3))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, b, sig []byte) {
		c, err := ParseCiphertext(b)
		if err != nil {
			return
		}
		if !bytes.Equal(c.Marshal(), b) {
			t.Fatalf("ciphertext does not re-encode to its bytes")
		}
		_, _ = c.Open(sig)
	})
}
