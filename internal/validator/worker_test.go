package validator

import (
	"context"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/protocol"
)

// recordCommands wraps script to record the command of every worker
// session.
func recordCommands(script workerScript) (workerScript, func() []string) {
	var mu sync.Mutex
	var cmds []string
	return func(ctx context.Context, cmd string, in io.Reader, out, errw io.Writer) int {
			mu.Lock()
			cmds = append(cmds, cmd)
			mu.Unlock()
			return script(ctx, cmd, in, out, errw)
		}, func() []string {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(cmds)
		}
}

// TestDriverWorkerCache: a miner with a worker cache gets the worker once;
// later tests run the cached copy after its hash checked out; a damaged
// copy is uploaded again (and old files leave the cache), never run; a
// miner whose hash helper fails, or that has no cache, gets the worker
// uploaded into each lease.
func TestDriverWorkerCache(t *testing.T) {
	t.Parallel()
	h100 := model(t, "NVIDIA H100 80GB HBM3")
	worker := smallWorker(t)
	fi, err := os.Stat(worker)
	if err != nil {
		t.Fatal(err)
	}
	size := fi.Size()
	cfg := testPoGConfig(t, worker)
	cfg.AllowSimulated = true
	d := newTestDriver(t, cfg)
	cached := path.Join(protocol.PoGCacheDir, d.static.cacheName())

	script, commands := recordCommands(simWorker(h100, 1))
	m := startFakeMiner(t, "", nil, minerBehavior{script: script, cache: true})
	run := func(wantUpload int64, wantFrom string) {
		t.Helper()
		before := m.fs.written.Load()
		if a := d.test(context.Background(), m.target()); a.outcome != OutcomePass {
			t.Fatalf("test: %s: %s", a.outcome, a.reason)
		}
		if got := m.fs.written.Load() - before; got != wantUpload {
			t.Errorf("uploaded %d bytes, want %d", got, wantUpload)
		}
		cmds := commands()
		if last := cmds[len(cmds)-1]; !strings.HasPrefix(last, wantFrom) {
			t.Errorf("ran %q, want it from %s", last, wantFrom)
		}
	}
	run(size, cached+" pog compute") // first test: uploaded into the cache
	run(0, cached+" pog compute")    // then run from it
	if sum, ok := m.fs.sum(cached); !ok || sum != d.static.sum {
		t.Fatalf("cached worker hashes to %q", sum)
	}

	// A damaged copy and leftovers of other versions.
	m.fs.spoil(cached)
	for _, name := range []string{"nicompute-0000", ".upload-1234", "renter-notes"} {
		w, err := m.fs.Filewrite(fakeRequest(path.Join(protocol.PoGCacheDir, name)))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.WriteAt([]byte("x"), 0)
	}
	run(size, cached+" pog compute")
	if names := m.fs.names(protocol.PoGCacheDir); !slices.Equal(names, []string{d.static.cacheName(), "renter-notes"}) {
		t.Errorf("cache holds %q after an upload, want the current worker (and what is not a worker)", names)
	}

	// The hash helper fails: the worker goes into the lease itself.
	script2, commands2 := recordCommands(simWorker(h100, 1))
	broken := startFakeMiner(t, "", nil, minerBehavior{script: script2, cache: true, noHashHelper: true})
	if a := d.test(context.Background(), broken.target()); a.outcome != OutcomePass {
		t.Fatalf("test with a broken hash helper: %s: %s", a.outcome, a.reason)
	}
	if cmds := commands2(); !strings.HasPrefix(cmds[len(cmds)-1], cfg.UploadDir+"/") {
		t.Errorf("with a broken hash helper ran %q, want it from %s", cmds, cfg.UploadDir)
	}

	// No cache: an upload per test.
	script3, commands3 := recordCommands(simWorker(h100, 1))
	plain := startFakeMiner(t, "", nil, minerBehavior{script: script3})
	for range 2 {
		before := plain.fs.written.Load()
		if a := d.test(context.Background(), plain.target()); a.outcome != OutcomePass {
			t.Fatalf("test without a cache: %s: %s", a.outcome, a.reason)
		}
		if got := plain.fs.written.Load() - before; got != size {
			t.Errorf("without a cache uploaded %d bytes, want %d", got, size)
		}
	}
	if cmds := commands3(); !strings.HasPrefix(cmds[1], cfg.UploadDir+"/") || cmds[0] == cmds[1] {
		t.Errorf("without a cache ran %q, want fresh directories of %s", cmds, cfg.UploadDir)
	}
}

// TestDriverRealWorkerCache runs the cache with nicompute's SSH server
// (real SFTP and posix-rename on a real directory), its `sshd sha256`
// helper and the real worker: uploaded once, run from the cache, and
// uploaded again after the cached file was truncated.
func TestDriverRealWorkerCache(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds nicompute")
	}
	bin := nictest.BuildNicompute(t)
	a100 := model(t, "NVIDIA A100-SXM4-80GB")
	m := startFakeMiner(t, "", nil, minerBehavior{simulate: a100.Name})
	cfg := testPoGConfig(t, bin)
	cfg.AllowSimulated = true
	cfg.CacheDir = t.TempDir()
	cfg.HashCommand = bin + " sshd sha256"
	cfg.SimTimeScale = 0.02 // the test is about the worker's copy, not its timing
	d := newTestDriver(t, cfg)
	cached := filepath.Join(cfg.CacheDir, d.static.cacheName())
	run := func(wantUpload int64) {
		t.Helper()
		before := d.uploaded.Load()
		if a := d.test(context.Background(), m.target()); a.outcome != OutcomePass || a.res.Model != a100.Name {
			t.Fatalf("test: %s: %s", a.outcome, a.reason)
		}
		if got := d.uploaded.Load() - before; got != wantUpload {
			t.Errorf("uploaded %d bytes, want %d", got, wantUpload)
		}
	}
	run(d.static.size)
	if fi, err := os.Stat(cached); err != nil || fi.Size() != d.static.size || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cached worker: %v, %v", fi, err)
	}
	run(0)
	if err := os.Truncate(cached, d.static.size/2); err != nil {
		t.Fatal(err)
	}
	run(d.static.size)
	if entries, _ := os.ReadDir(cfg.CacheDir); len(entries) != 1 {
		t.Errorf("cache holds %d entries, want the worker alone", len(entries))
	}
}
