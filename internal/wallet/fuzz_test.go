package wallet

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nicompute/nicompute/internal/keys"
)

func addFixtures(f *testing.F) {
	names, err := filepath.Glob(filepath.Join("testdata", "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range names {
		if b, err := os.ReadFile(n); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"publicKey":null}`, `{"secretSeed":"0x00"}`,
		`{"privateKey":"0x` + string(bytes.Repeat([]byte("ff"), 64)) + `"}`,
		`0x8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48`,
		`{"secretPhrase":"` + devPhrase + `","ss58Address":"` + aliceSS58 + `"}`,
	} {
		f.Add([]byte(s))
	}
}

// FuzzParseKeyfile checks that any input either fails with a classified
// error or yields a self-consistent key that survives a write/read cycle.
func FuzzParseKeyfile(f *testing.F) {
	addFixtures(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		kf, err := ParseKeyfile(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrEncrypted) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if len(kf.PublicKey) != keys.PublicKeyLen || keys.SS58Encode(kf.PublicKey) != kf.SS58 {
			t.Fatalf("inconsistent result %+v", kf)
		}
		if kf.Keypair == nil {
			pub, err := MarshalPublicKeyfile(kf.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParseKeyfile(pub)
			if err != nil || again.SS58 != kf.SS58 || again.Keypair != nil {
				t.Fatalf("public keyfile round trip: %+v %v", again, err)
			}
			return
		}
		if kf.Keypair.SS58() != kf.SS58 {
			t.Fatalf("keypair %s, address %s", kf.Keypair.SS58(), kf.SS58)
		}
		again, err := ParseKeyfile(MarshalKeyfile(kf.Keypair))
		if err != nil || again.Keypair == nil || again.SS58 != kf.SS58 ||
			!bytes.Equal(again.Keypair.SecretKey(), kf.Keypair.SecretKey()) {
			t.Fatalf("keyfile round trip: %+v %v", again, err)
		}
	})
}

// FuzzDecrypt feeds arbitrary data to the decryption of every format (with
// cheap key derivation): no panics, and failures are classified.
func FuzzDecrypt(f *testing.F) {
	addFixtures(f)
	f.Add([]byte("$NACL"))
	f.Add([]byte("$ANSIBLE_VAULT;1.1;AES256\n6161"))
	f.Add([]byte("gAAAAABrBd5r"))
	fast := kdfParams{time: 1, memoryKiB: 8, fernetIter: 1, ansibleIter: 1}
	f.Fuzz(func(t *testing.T, data []byte) {
		plain, err := decrypt(data, []byte("pw"), fast)
		if err == nil {
			if EncryptionMethod(data) == "" {
				t.Fatal("plaintext decrypted")
			}
			_ = plain
			return
		}
		if EncryptionMethod(data) != "" && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrWrongPassword) {
			t.Fatalf("unclassified error: %v", err)
		}
	})
}
