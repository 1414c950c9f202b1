package wallet

import "testing"

// BenchmarkDecryptNaCl measures opening a "$NACL" coldkey with Bittensor's
// Argon2i costs (512 MiB, 8 passes): run with -benchtime=1x.
func BenchmarkDecryptNaCl(b *testing.B) {
	data := readFixture(b, "coldkey_nacl")
	for b.Loop() {
		if _, err := Decrypt(data, []byte(fixturePassword)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecryptFernet measures the legacy format's 10,000,000 PBKDF2
// rounds: run with -benchtime=1x.
func BenchmarkDecryptFernet(b *testing.B) {
	data := readFixture(b, "coldkey_fernet")
	for b.Loop() {
		if _, err := Decrypt(data, []byte(fixturePassword)); err != nil {
			b.Fatal(err)
		}
	}
}
