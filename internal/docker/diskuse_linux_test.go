//go:build linux

package docker

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLayerUsage walks a layer the test builds: a file and its hard links
// count once, a sparse file only for its blocks, links are not followed
// (one to / would add the whole host), directories and empty files count
// at least the filesystem's bytes per inode, and a tree deeper than the
// walk goes is reported rather than left uncounted.
func TestLayerUsage(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("data", 1<<20)
	for _, l := range []string{"link1", "link2"} {
		if err := os.Link(filepath.Join(dir, "data"), filepath.Join(dir, l)); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, l := range []string{"/", "/usr"} {
		if err := os.Symlink(l, filepath.Join(dir, "to"+strings.ReplaceAll(l, "/", "_"))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		d := filepath.Join(dir, "d", strings.Repeat("x", i+1))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "empty"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const inodes = 1 + 1 + 1 + 2 + 1 + 50 + 50 // root, data, sparse, links, d, dirs, empties

	got, err := layerUsage(dir)
	if err != nil {
		t.Fatalf("layerUsage: %v", err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if got < 1<<20 || got >= 16<<20 {
		t.Errorf("layer holds %d KiB, want the 1 MiB file once, the sparse file's holes and what links point to not counted", got>>10)
	}
	if fs.Files > 0 {
		perInode := int64(fs.Blocks) * fs.Bsize / int64(fs.Files)
		if got < inodes*perInode {
			t.Errorf("layer of %d inodes holds %d KiB, want at least %d KiB (%d B per inode)", inodes, got>>10, inodes*perInode>>10, perInode)
		}
	}

	// A tree deeper than the walk goes.
	deep := t.TempDir()
	p := deep
	for range maxLayerDepth + 1 {
		p = filepath.Join(p, "a")
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := layerUsage(deep); !errors.Is(err, errTooDeep) {
		t.Errorf("layerUsage of a %d-level tree: %v, want errTooDeep", maxLayerDepth+1, err)
	}
}

// TestOpenDeleted: a file this process deletes while holding it open counts
// once (for the fd and the mapping of the same file), one on tmpfs does
// not; the runtime's own PID namespace is never counted, so a test process
// stands in through openDeleted's parts.
func TestOpenDeleted(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "gone")
	if err := os.WriteFile(p, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	seen := map[[2]uint64]bool{}
	got := (deletedIn("/proc/self/fd", seen) + deletedIn("/proc/self/map_files", seen)) * 512
	switch uint32(fs.Type) {
	case unix.TMPFS_MAGIC, unix.RAMFS_MAGIC:
		if got != 0 {
			t.Errorf("a deleted file on tmpfs counted %d bytes", got)
		}
	default:
		if got < 4<<20 || got >= 8<<20 {
			t.Errorf("a deleted 4 MiB file held open and mapped counted %d KiB, want 4 MiB once", got>>10)
		}
	}
	if n := pidNamespaces().openDeleted(os.Getpid()); n != 0 {
		t.Errorf("the runtime's own PID namespace counted %d bytes", n)
	}
}

// BenchmarkLayerUsage measures the walk of a layer of 10,000 small files
// in 100 directories: the miner walks every lease's layer each
// DiskCheckInterval, so its speed bounds how large a layer a measurement
// can cover in time.
func BenchmarkLayerUsage(b *testing.B) {
	dir := b.TempDir()
	const dirs, files = 100, 100
	for i := range dirs {
		d := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
		for j := range files {
			if err := os.WriteFile(filepath.Join(d, strconv.Itoa(j)), []byte("x"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	for b.Loop() {
		if _, err := layerUsage(dir); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(dirs*files+dirs+1)*float64(b.N)/b.Elapsed().Seconds(), "inodes/s")
}
