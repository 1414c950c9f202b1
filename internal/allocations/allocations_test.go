package allocations

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const (
	hotkeyA = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
	hotkeyB = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
)

func TestRecordsRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wallet", "allocations", "default")
	if recs, err := List(dir); err != nil || recs != nil {
		t.Fatalf("List of a missing dir = %v, %v", recs, err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := Record{NetUID: 27, UID: 5, Hotkey: hotkeyA, Validator: hotkeyB, Host: "10.0.0.1", Port: 4444, Username: "root",
		LeaseID: "l1", CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
	b := a
	b.NetUID, b.UID, b.Hotkey = 1, 9, hotkeyB
	for _, r := range []Record{a, b} {
		if err := Save(dir, r); err != nil {
			t.Fatal(err)
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveKey(dir, 27, hotkeyA, key); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir, 27, hotkeyA)
	if err != nil || got != a {
		t.Fatalf("Load = %+v, %v", got, err)
	}
	k2, err := Key(dir, 27, hotkeyA)
	if err != nil || !k2.Equal(key) {
		t.Fatalf("Key: %v", err)
	}
	recs, err := List(dir)
	if err != nil || len(recs) != 2 || recs[0].NetUID != 1 || recs[1].NetUID != 27 {
		t.Fatalf("List = %+v, %v", recs, err)
	}
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", e.Name(), info.Mode().Perm())
		}
	}
	if err := Remove(dir, 27, hotkeyA); err != nil {
		t.Fatal(err)
	}
	if err := Remove(dir, 27, hotkeyA); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if _, err := Load(dir, 27, hotkeyA); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after Remove: %v", err)
	}
	if _, err := Key(dir, 27, hotkeyA); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Key after Remove: %v", err)
	}
}

func TestHotkeyNamesArePaths(t *testing.T) {
	dir := t.TempDir()
	for _, hk := range []string{"../../etc/passwd", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHG/../x", "", "0OIl" + hotkeyA[4:]} {
		if err := Save(dir, Record{Hotkey: hk}); err == nil {
			t.Errorf("Save accepted hotkey %q", hk)
		}
		if _, err := Load(dir, 1, hk); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Load accepted hotkey %q: %v", hk, err)
		}
	}
}
