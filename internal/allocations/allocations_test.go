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

// TestCreateExclusive checks that Create claims a record only when none
// exists — also when many claim it at once — and never replaces one.
func TestCreateExclusive(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "allocations")
	pending := Record{NetUID: 27, UID: 5, Hotkey: hotkeyA, Validator: hotkeyB, Pending: true, CreatedAt: time.Unix(1, 0).UTC()}
	if err := Create(dir, pending); err != nil {
		t.Fatalf("Create: %v", err)
	}
	other := pending
	other.LeaseID = "someone-else"
	if err := Create(dir, other); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create = %v, want ErrExists", err)
	}
	if got, err := Load(dir, 27, hotkeyA); err != nil || got.LeaseID != "" || !got.Pending {
		t.Fatalf("record after a refused Create: %+v, %v", got, err)
	}

	// Concurrent claims of a fresh record: exactly one wins.
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			r := pending
			r.NetUID, r.UID = 1, uint16(i)
			errs <- Create(dir, r)
		}()
	}
	won := 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			won++
		case !errors.Is(err, ErrExists):
			t.Errorf("concurrent Create: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d concurrent Creates won, want 1", won, n)
	}
	if recs, err := List(dir); err != nil || len(recs) != 2 {
		t.Fatalf("records %+v, %v", recs, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("%d files in the directory, want the 2 records (no temporary files)", len(entries))
	}
	for _, e := range entries {
		if info, _ := e.Info(); info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", e.Name(), info.Mode().Perm())
		}
	}
}
