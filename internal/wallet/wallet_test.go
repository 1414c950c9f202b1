package wallet

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nicompute/nicompute/internal/keys"
)

// openFast opens a wallet whose encryption uses cheap Argon2 costs, so tests
// that are not about the costs run fast. The file format is unchanged.
func openFast(tb testing.TB, dir, name string) *Wallet {
	tb.Helper()
	w := Open(dir, name)
	w.kdf = kdfParams{time: 1, memoryKiB: 64, fernetIter: 1, ansibleIter: 1}
	return w
}

func mustURI(tb testing.TB, uri string) *keys.Keypair {
	tb.Helper()
	kp, err := keys.FromURI(uri)
	if err != nil {
		tb.Fatal(err)
	}
	return kp
}

func TestHotkeyRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wallets")
	w := openFast(t, dir, "miner")
	tests := []struct {
		hotkey string
		kp     *keys.Keypair
	}{
		{"default", mustURI(t, "//Alice")},
		{"soft", mustURI(t, "//Alice/soft")},
		{"mnemonic", mustURI(t, devPhrase)},
	}
	for _, tt := range tests {
		t.Run(tt.hotkey, func(t *testing.T) {
			if err := w.WriteHotkey(tt.hotkey, tt.kp, false); err != nil {
				t.Fatal(err)
			}
			got, err := w.Hotkey(tt.hotkey)
			if err != nil {
				t.Fatal(err)
			}
			if got.SS58() != tt.kp.SS58() || !bytes.Equal(got.SecretKey(), tt.kp.SecretKey()) ||
				!bytes.Equal(got.Seed(), tt.kp.Seed()) || got.Mnemonic() != tt.kp.Mnemonic() {
				t.Fatalf("loaded %s, wrote %s", got, tt.kp)
			}
			addr, err := w.HotkeyAddress(tt.hotkey)
			if err != nil || addr != tt.kp.SS58() {
				t.Fatalf("HotkeyAddress = %s, %v", addr, err)
			}
			enc, err := w.HotkeyEncrypted(tt.hotkey)
			if err != nil || enc {
				t.Fatalf("HotkeyEncrypted = %v, %v", enc, err)
			}
			pub, err := os.ReadFile(w.hotkeypubPath(tt.hotkey))
			if err != nil {
				t.Fatal(err)
			}
			if kf, err := ParseKeyfile(pub); err != nil || kf.SS58 != tt.kp.SS58() || kf.Keypair != nil {
				t.Fatalf("hotkey pub file: %+v %v", kf, err)
			}
		})
	}
	assertModes(t, dir)
}

// assertModes checks Bittensor's modes: 0700 directories, 0600 files.
func assertModes(tb testing.TB, root string) {
	tb.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			tb.Errorf("%s has mode %v, want %v", path, info.Mode().Perm(), want)
		}
		if strings.Contains(d.Name(), ".tmp-") {
			tb.Errorf("temporary file left behind: %s", path)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

func TestColdkeyUnencrypted(t *testing.T) {
	dir := t.TempDir()
	w := openFast(t, dir, "owner")
	bob := mustURI(t, "//Bob")
	if err := w.WriteColdkey(bob, nil, false); err != nil {
		t.Fatal(err)
	}
	enc, err := w.ColdkeyEncrypted()
	if err != nil || enc {
		t.Fatalf("ColdkeyEncrypted = %v, %v", enc, err)
	}
	got, err := w.Coldkey(nil)
	if err != nil || got.SS58() != bob.SS58() {
		t.Fatalf("Coldkey = %v, %v", got, err)
	}
	if got, err := w.Coldkey([]byte("ignored")); err != nil || got.SS58() != bob.SS58() {
		t.Fatalf("Coldkey with a needless password = %v, %v", got, err)
	}
	addr, err := w.ColdkeyAddress()
	if err != nil || addr != bobSS58 {
		t.Fatalf("ColdkeyAddress = %s, %v", addr, err)
	}
	// coldkeypub.txt is the public-only keyfile.
	pub, err := os.ReadFile(w.ColdkeypubPath())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(pub, []byte("privateKey")) {
		t.Fatalf("coldkeypub.txt holds a secret: %s", pub)
	}
	assertModes(t, dir)
}

func TestColdkeyEncrypted(t *testing.T) {
	dir := t.TempDir()
	w := openFast(t, dir, "owner")
	bob := mustURI(t, "//Bob")
	if err := w.WriteColdkey(bob, []byte("correct horse"), false); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(w.ColdkeyPath())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte("$NACL")) || bytes.Contains(raw, []byte(bob.SS58())) {
		t.Fatal("coldkey not encrypted")
	}
	enc, err := w.ColdkeyEncrypted()
	if err != nil || !enc {
		t.Fatalf("ColdkeyEncrypted = %v, %v", enc, err)
	}
	if _, err := w.Coldkey(nil); !errors.Is(err, ErrEncrypted) {
		t.Fatalf("no password: %v", err)
	}
	if _, err := w.Coldkey([]byte("wrong horse")); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	got, err := w.Coldkey([]byte("correct horse"))
	if err != nil || got.SS58() != bob.SS58() || !bytes.Equal(got.SecretKey(), bob.SecretKey()) {
		t.Fatalf("Coldkey = %v, %v", got, err)
	}
	// The address needs no password.
	if addr, err := w.ColdkeyAddress(); err != nil || addr != bobSS58 {
		t.Fatalf("ColdkeyAddress = %s, %v", addr, err)
	}
	if err := w.WriteColdkey(bob, []byte{}, true); err == nil {
		t.Fatal("empty password accepted")
	}
}

// TestColdkeyEncryptedRealCost writes and reads a coldkey with Bittensor's
// Argon2i costs (512 MiB, 8 passes).
func TestColdkeyEncryptedRealCost(t *testing.T) {
	if testing.Short() {
		t.Skip("two Argon2i derivations of 512 MiB")
	}
	w := Open(t.TempDir(), "real")
	alice := mustURI(t, "//Alice")
	if err := w.WriteColdkey(alice, []byte(fixturePassword), false); err != nil {
		t.Fatal(err)
	}
	// Readable with the plain Decrypt that the fixtures use.
	raw, err := os.ReadFile(w.ColdkeyPath())
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Decrypt(raw, []byte(fixturePassword))
	if err != nil {
		t.Fatal(err)
	}
	if kf, err := ParseKeyfile(plain); err != nil || kf.SS58 != aliceSS58 {
		t.Fatalf("%+v %v", kf, err)
	}
}

func TestOverwriteRefusal(t *testing.T) {
	dir := t.TempDir()
	w := openFast(t, dir, "w")
	alice, bob := mustURI(t, "//Alice"), mustURI(t, "//Bob")

	if err := w.WriteHotkey("h", alice, false); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteColdkey(alice, []byte("pw"), false); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)

	if err := w.WriteHotkey("h", bob, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteHotkey over existing: %v", err)
	}
	if err := w.WriteColdkey(bob, nil, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteColdkey over existing: %v", err)
	}
	if err := w.WriteColdkeypub(bob.PublicKey(), false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteColdkeypub over existing: %v", err)
	}
	if err := w.CheckNewColdkey(); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("CheckNewColdkey: %v", err)
	}
	if after := snapshot(t, dir); !reflect.DeepEqual(before, after) {
		t.Fatal("a refused write changed files")
	}

	// Only coldkeypub.txt present still blocks a new coldkey.
	w2 := openFast(t, dir, "pubonly")
	if err := w2.WriteColdkeypub(bob.PublicKey(), false); err != nil {
		t.Fatal(err)
	}
	if err := w2.WriteColdkey(alice, nil, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteColdkey with coldkeypub.txt present: %v", err)
	}
	if _, err := os.Stat(w2.ColdkeyPath()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("coldkey written despite refusal")
	}

	// With overwrite the files are replaced.
	if err := w.WriteHotkey("h", bob, true); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteColdkey(bob, nil, true); err != nil {
		t.Fatal(err)
	}
	if kp, err := w.Hotkey("h"); err != nil || kp.SS58() != bobSS58 {
		t.Fatalf("hotkey after overwrite: %v %v", kp, err)
	}
	if kp, err := w.Coldkey(nil); err != nil || kp.SS58() != bobSS58 {
		t.Fatalf("coldkey after overwrite: %v %v", kp, err)
	}
	assertModes(t, dir)
}

// snapshot maps every file under root to its content.
func snapshot(tb testing.TB, root string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		out[path] = string(b)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestCorruptAndMissing(t *testing.T) {
	dir := t.TempDir()
	w := openFast(t, dir, "w")
	if _, err := w.Hotkey("default"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing hotkey: %v", err)
	}
	if _, err := w.Coldkey(nil); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing coldkey: %v", err)
	}
	if _, err := w.ColdkeyAddress(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing coldkeypub: %v", err)
	}
	if _, err := w.ColdkeyEncrypted(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing coldkey: %v", err)
	}

	writeRaw(t, w.HotkeyPath("broken"), `{"publicKey": `)
	if _, err := w.Hotkey("broken"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt hotkey: %v", err)
	}
	// A hotkey whose secret does not match its publicKey.
	alice := string(MarshalKeyfile(mustURI(t, "//Alice")))
	mismatch := strings.Replace(alice, "0xd43593c7", "0x8eaf0415", 2)
	mismatch = strings.Replace(mismatch, aliceSS58, bobSS58, 1)
	writeRaw(t, w.HotkeyPath("mismatch"), mismatch)
	if _, err := w.Hotkey("mismatch"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("publicKey mismatch: %v", err)
	}
	// A public-only file in the hotkey's place cannot sign.
	writeRaw(t, w.HotkeyPath("pubonly"), string(readFixture(t, "coldkeypub_btwallet.txt")))
	if _, err := w.Hotkey("pubonly"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("public-only hotkey: %v", err)
	}
	writeRaw(t, w.ColdkeyPath(), "$NACL"+strings.Repeat("\x00", 30))
	if _, err := w.Coldkey([]byte("pw")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short NaCl coldkey: %v", err)
	}
	writeRaw(t, w.ColdkeypubPath(), "garbage")
	if _, err := w.ColdkeyAddress(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt coldkeypub: %v", err)
	}
}

func TestEncryptedHotkey(t *testing.T) {
	dir := t.TempDir()
	w := openFast(t, dir, "w")
	alice := mustURI(t, "//Alice")
	enc, err := encrypt(MarshalKeyfile(alice), []byte("hotpw"), w.kdf)
	if err != nil {
		t.Fatal(err)
	}
	writeRaw(t, w.HotkeyPath("locked"), string(enc))
	if _, err := w.Hotkey("locked"); !errors.Is(err, ErrEncrypted) {
		t.Fatalf("Hotkey on encrypted file: %v", err)
	}
	if kp, err := w.HotkeyWithPassword("locked", []byte("hotpw")); err != nil || kp.SS58() != aliceSS58 {
		t.Fatalf("HotkeyWithPassword = %v, %v", kp, err)
	}
	// The address comes from lockedpub.txt; without it there is none.
	if _, err := w.HotkeyAddress("locked"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("HotkeyAddress without pub file: %v", err)
	}
	pub, _ := MarshalPublicKeyfile(alice.PublicKey())
	writeRaw(t, w.hotkeypubPath("locked"), string(pub))
	if addr, err := w.HotkeyAddress("locked"); err != nil || addr != aliceSS58 {
		t.Fatalf("HotkeyAddress = %s, %v", addr, err)
	}
}

func TestBadNames(t *testing.T) {
	dir := t.TempDir()
	kp := mustURI(t, "//Alice")
	for _, name := range []string{"", ".", "..", "../x", "a/b", `a\b`, ".hidden", "x\x00y"} {
		w := openFast(t, dir, name)
		if err := w.WriteColdkey(kp, nil, false); err == nil {
			t.Errorf("wallet name %q accepted", name)
		}
		ok := openFast(t, dir, "ok")
		if err := ok.WriteHotkey(name, kp, false); err == nil {
			t.Errorf("hotkey name %q accepted", name)
		}
		if _, err := ok.Hotkey(name); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Hotkey(%q) = %v, want a name error", name, err)
		}
	}
	if got := snapshot(t, dir); len(got) != 0 {
		t.Fatalf("files written for bad names: %v", got)
	}
}

func TestColdkeyAddressFallback(t *testing.T) {
	w := openFast(t, t.TempDir(), "w")
	writeRaw(t, w.ColdkeyPath(), string(MarshalKeyfile(mustURI(t, "//Bob"))))
	if addr, err := w.ColdkeyAddress(); err != nil || addr != bobSS58 {
		t.Fatalf("ColdkeyAddress from an unencrypted coldkey = %s, %v", addr, err)
	}
}

func TestList(t *testing.T) {
	dir := t.TempDir()
	if _, err := List(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("List(missing) error = %v", err)
	}
	alice, bob := mustURI(t, "//Alice"), mustURI(t, "//Bob")
	a := openFast(t, dir, "alpha")
	if err := a.WriteColdkey(bob, []byte("pw"), false); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h2", "h1"} {
		if err := a.WriteHotkey(h, alice, false); err != nil {
			t.Fatal(err)
		}
	}
	writeRaw(t, a.HotkeyPath("bad"), "{")
	writeRaw(t, a.HotkeyPath(".h1.tmp-123"), "partial")
	// A hotkey written by old Bittensor, without a pub.txt companion.
	writeRaw(t, a.HotkeyPath("old"), string(readFixture(t, "hotkey_python_seed.json")))

	b := openFast(t, dir, "beta")
	if err := b.WriteHotkey("only", bob, false); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "not-a-wallet", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeRaw(t, filepath.Join(dir, "stray-file"), "x")

	got, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Info{
		{Name: "alpha", Coldkey: bobSS58, ColdkeyEncrypted: true, Hotkeys: []HotkeyInfo{
			{Name: "bad", Error: "hotkey bad: corrupt keyfile: not a JSON keyfile: truncated JSON"},
			{Name: "h1", SS58: aliceSS58},
			{Name: "h2", SS58: aliceSS58},
			{Name: "old", SS58: aliceSS58},
		}},
		{Name: "beta", Hotkeys: []HotkeyInfo{{Name: "only", SS58: bobSS58}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List =\n%+v\nwant\n%+v", got, want)
	}
}

func writeRaw(tb testing.TB, path, data string) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		tb.Fatal(err)
	}
}
