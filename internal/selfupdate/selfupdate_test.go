package selfupdate

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// fakeBinary is an executable that answers `version --json` like
// nicompute of version v.
func fakeBinary(v, extra string) []byte {
	return []byte("#!/bin/sh\n# " + extra + "\nif [ \"$1 $2\" = \"version --json\" ]; then echo '{\"version\":\"" + v + "\"}'; else exit 3; fi\n")
}

// feed is a release server: manifest, signature and binaries.
type feed struct {
	t        *testing.T
	key      ed25519.PrivateKey
	srv      *httptest.Server
	mu       sync.Mutex
	files    map[string][]byte
	truncate string // path served short
}

func newFeed(t *testing.T) *feed {
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &feed{t: t, key: key, files: map[string][]byte{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		b, ok := f.files[r.URL.Path]
		short := r.URL.Path == f.truncate
		f.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		if short {
			// Announce the whole file, send half, and drop the connection.
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.Write(b[:len(b)/2])
			panic(http.ErrAbortHandler)
		}
		w.Write(b)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *feed) pub() ed25519.PublicKey { return f.key.Public().(ed25519.PublicKey) }

// release publishes version v with the given binaries (name → content),
// signed by signer (nil: the feed's key), and returns the manifest URL.
func (f *feed) release(v string, bins map[string][]byte, signer ed25519.PrivateKey) string {
	m := Manifest{Version: v, Binaries: map[string]map[string]Binary{"linux/amd64": {}}}
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, b := range bins {
		sum := sha256.Sum256(b)
		p := "/" + v + "/" + name
		f.files[p] = b
		m.Binaries["linux/amd64"][name] = Binary{URL: f.srv.URL + p, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b))}
	}
	raw, _ := json.Marshal(m)
	if signer == nil {
		signer = f.key
	}
	f.files["/manifest.json"] = raw
	f.files["/manifest.json.sig"] = Sign(signer, raw)
	return f.srv.URL + "/manifest.json"
}

// install lays out an installed nicompute (and nicompute-pog) of version
// cur and returns the binary's path.
func install(t *testing.T, cur string, pog bool) string {
	dir := t.TempDir()
	exe := filepath.Join(dir, "nicompute")
	if err := os.WriteFile(exe, fakeBinary(cur, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	if pog {
		if err := os.WriteFile(filepath.Join(dir, "nicompute-pog"), []byte("old pog"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return exe
}

// snapshot lists a directory's files and contents.
func snapshot(t *testing.T, dir string) string {
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		out = append(out, e.Name()+"="+fmt.Sprintf("%x", sha256.Sum256(b))[:12])
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func newUpdater(t *testing.T, url string, key ed25519.PublicKey, exe, cur string, log *bytes.Buffer) *Updater {
	u, err := New(Config{URL: url, Keys: []ed25519.PublicKey{key}, Current: cur, Exe: exe, Platform: "linux/amd64",
		Companions: []string{"nicompute-pog"}, Log: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestGoodReleaseInstalledAndRolledBack(t *testing.T) {
	f := newFeed(t)
	exe := install(t, "0.1.0", true)
	newBin := fakeBinary("0.2.0", "new")
	url := f.release("0.2.0", map[string][]byte{"nicompute": newBin, "nicompute-pog": []byte("new pog")}, nil)
	var log bytes.Buffer
	u := newUpdater(t, url, f.pub(), exe, "0.1.0", &log)

	var applied *Staged
	var last string
	u.poll(context.Background(), &last, func(_ context.Context, s *Staged) error {
		applied = s
		return Install(s, "0.1.0")
	})
	if applied == nil || applied.Version != "0.2.0" {
		t.Fatalf("staged %+v; log:\n%s", applied, &log)
	}
	if b, _ := os.ReadFile(exe); !bytes.Equal(b, newBin) {
		t.Fatal("the binary was not replaced")
	}
	if b, _ := os.ReadFile(exe + ".prev"); !bytes.Equal(b, fakeBinary("0.1.0", "old")) {
		t.Fatal("the previous binary was not kept")
	}
	pog := filepath.Join(filepath.Dir(exe), "nicompute-pog")
	if b, _ := os.ReadFile(pog); string(b) != "new pog" {
		t.Fatalf("companion not replaced: %q", b)
	}
	if st, _ := os.Stat(exe); st.Mode().Perm() != 0o755 {
		t.Fatalf("mode %v", st.Mode())
	}

	// First start of the new binary: counted. Second without a commit:
	// the previous binaries come back.
	if p, rolled, err := Boot(exe); err != nil || rolled || p == nil || p.To != "0.2.0" || p.From != "0.1.0" {
		t.Fatalf("first boot: %+v %v %v", p, rolled, err)
	}
	if _, rolled, err := Boot(exe); err != nil || !rolled {
		t.Fatalf("second boot: rolled back %v, %v", rolled, err)
	}
	if b, _ := os.ReadFile(exe); !bytes.Equal(b, fakeBinary("0.1.0", "old")) {
		t.Fatal("rollback did not restore the binary")
	}
	if b, _ := os.ReadFile(pog); string(b) != "old pog" {
		t.Fatal("rollback did not restore the companion")
	}
	if p, rolled, err := Boot(exe); p != nil || rolled || err != nil {
		t.Fatalf("boot after rollback: %+v %v %v", p, rolled, err)
	}

	// A committed update stays.
	s, err := u.Check(context.Background())
	if err != nil || s == nil {
		t.Fatalf("check again: %v", err)
	}
	if err := Install(s, "0.1.0"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Boot(exe); err != nil {
		t.Fatal(err)
	}
	if err := Commit(exe); err != nil {
		t.Fatal(err)
	}
	if _, rolled, _ := Boot(exe); rolled {
		t.Fatal("a committed release was rolled back")
	}
	if b, _ := os.ReadFile(exe); !bytes.Equal(b, newBin) {
		t.Fatal("committed release lost")
	}
}

func TestRefusedReleasesChangeNothing(t *testing.T) {
	_, stranger, _ := ed25519.GenerateKey(nil)
	for _, tc := range []struct {
		name, want string
		setup      func(f *feed) string
	}{
		{"tampered binary", "tampered or corrupted", func(f *feed) string {
			url := f.release("0.2.0", map[string][]byte{"nicompute": fakeBinary("0.2.0", "new")}, nil)
			f.files["/0.2.0/nicompute"] = fakeBinary("0.2.0", "nEw")
			return url
		}},
		{"bad signature", "signature does not verify", func(f *feed) string {
			return f.release("0.2.0", map[string][]byte{"nicompute": fakeBinary("0.2.0", "new")}, stranger)
		}},
		{"altered manifest", "signature does not verify", func(f *feed) string {
			url := f.release("0.2.0", map[string][]byte{"nicompute": fakeBinary("0.2.0", "new")}, nil)
			f.files["/manifest.json"] = bytes.Replace(f.files["/manifest.json"], []byte("0.2.0"), []byte("0.3.0"), 1)
			return url
		}},
		{"downgrade", "older than the running version", func(f *feed) string {
			return f.release("0.0.9", map[string][]byte{"nicompute": fakeBinary("0.0.9", "old")}, nil)
		}},
		{"truncated download", "truncated", func(f *feed) string {
			url := f.release("0.2.0", map[string][]byte{"nicompute": fakeBinary("0.2.0", strings.Repeat("x", 4096))}, nil)
			f.truncate = "/0.2.0/nicompute"
			return url
		}},
		{"binary that does not run", "health check", func(f *feed) string {
			return f.release("0.2.0", map[string][]byte{"nicompute": []byte("#!/bin/sh\nexit 1\n")}, nil)
		}},
		{"binary of another version", "health check", func(f *feed) string {
			return f.release("0.2.0", map[string][]byte{"nicompute": fakeBinary("0.1.5", "liar")}, nil)
		}},
		{"no binary for this platform", "has no nicompute for linux/amd64", func(f *feed) string {
			return f.release("0.2.0", map[string][]byte{"nicompute-pog": []byte("x")}, nil)
		}},
		{"missing signature", "fetch signature", func(f *feed) string {
			url := f.release("0.2.0", map[string][]byte{"nicompute": fakeBinary("0.2.0", "new")}, nil)
			delete(f.files, "/manifest.json.sig")
			return url
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFeed(t)
			url := tc.setup(f)
			exe := install(t, "0.1.0", true)
			before := snapshot(t, filepath.Dir(exe))
			var log bytes.Buffer
			u := newUpdater(t, url, f.pub(), exe, "0.1.0", &log)
			applied := false
			var last string
			u.poll(context.Background(), &last, func(context.Context, *Staged) error { applied = true; return nil })
			if applied {
				t.Fatal("a refused release reached apply")
			}
			if after := snapshot(t, filepath.Dir(exe)); after != before {
				t.Fatalf("files changed:\nbefore %s\nafter  %s", before, after)
			}
			text := log.String()
			if !strings.Contains(text, "update refused; nothing changed") || !strings.Contains(text, tc.want) {
				t.Fatalf("log lacks a clear refusal with %q:\n%s", tc.want, text)
			}
		})
	}
}

func TestSameVersionIsQuiet(t *testing.T) {
	f := newFeed(t)
	exe := install(t, "0.2.0", false)
	url := f.release("0.2.0", map[string][]byte{"nicompute": fakeBinary("0.2.0", "same")}, nil)
	var log bytes.Buffer
	u := newUpdater(t, url, f.pub(), exe, "0.2.0", &log)
	if s, err := u.Check(context.Background()); s != nil || err != nil {
		t.Fatalf("same version: %+v %v", s, err)
	}
}

func TestParseManifestAndKeys(t *testing.T) {
	good := `{"version":"1.2.3","binaries":{"linux/amd64":{"nicompute":{"url":"https://x/y","sha256":"` + strings.Repeat("ab", 32) + `","size":10}}}}`
	if _, err := ParseManifest([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`{"version":"1.2","binaries":{}}`,
		strings.Replace(good, `"version"`, `"extra":1,"version"`, 1),
		strings.Replace(good, "https://x/y", "file:///etc/passwd", 1),
		strings.Replace(good, `"size":10`, `"size":0`, 1),
		strings.Replace(good, "linux/amd64", "linux", 1),
		strings.Replace(good, `"nicompute"`, `"../evil"`, 1),
		strings.Replace(good, strings.Repeat("ab", 32), "zz", 1),
		good + "{}",
	} {
		if _, err := ParseManifest([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	ks, err := ParseKeys("", base64.StdEncoding.EncodeToString(pub))
	if err != nil || len(ks) != 1 {
		t.Fatalf("keys %v %v", ks, err)
	}
	if _, err := ParseKeys("c2hvcnQ="); err == nil {
		t.Fatal("short key accepted")
	}
	if _, err := Verify([]byte(good), []byte("!!"), ks); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("garbage signature: %v", err)
	}
}

func TestVersionCompare(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"0.1.0", "0.1.0", 0}, {"v0.2.0", "0.1.9", 1}, {"0.1.0-dev", "0.1.0", -1}, {"1.0.0", "0.99.99", 1},
		{"0.1.0-rc.2", "0.1.0-rc.1", 1}, {"0.1.0+build", "0.1.0", 0},
	} {
		a, err := ParseVersion(tc.a)
		b, err2 := ParseVersion(tc.b)
		if err != nil || err2 != nil || a.Compare(b) != tc.want {
			t.Errorf("%s vs %s: %d (%v %v), want %d", tc.a, tc.b, a.Compare(b), err, err2, tc.want)
		}
	}
	for _, bad := range []string{"", "1", "1.2.x", "1.2.3.4"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"version":"1.2.3","binaries":{"linux/amd64":{"nicompute":{"url":"https://x/y","sha256":"` + strings.Repeat("ab", 32) + `","size":10}}}}`))
	f.Add([]byte(`{"version":"v0.0.1-rc","binaries":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		for _, bins := range m.Binaries {
			for name, bin := range bins {
				if strings.ContainsAny(name, "/.") || bin.Size <= 0 || len(bin.SHA256) != 64 {
					t.Fatalf("accepted %q %+v", name, bin)
				}
			}
		}
	})
}
