//go:build linux

package docker

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxLayerDepth bounds how deep the walk of a writable layer descends: it
// holds one open directory per level. Real trees are far shallower (a path
// of PATH_MAX characters has at most 2,048 levels).
const maxLayerDepth = 1024

// errTooDeep reports a writable layer deeper than maxLayerDepth.
var errTooDeep = errors.New("directory tree deeper than the measurement walks")

// layerUsage returns what the writable layer in dir takes: the blocks of
// its inodes (hard links once) or, when more, its inodes at the
// filesystem's bytes per inode.
func layerUsage(dir string) (int64, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open layer %s: %w", dir, err)
	}
	var root unix.Stat_t
	if err := unix.Fstat(fd, &root); err != nil {
		unix.Close(fd)
		return 0, fmt.Errorf("stat layer %s: %w", dir, err)
	}
	w := layerWalk{dev: root.Dev, links: map[uint64]bool{}}
	w.add(&root)
	if err := w.dir(fd, 0); err != nil {
		return 0, err
	}
	used := w.blocks * 512
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err == nil && fs.Files > 0 {
		perInode := int64(fs.Blocks) * fs.Bsize / int64(fs.Files)
		used = max(used, w.inodes*perInode)
	}
	return used, nil
}

// layerWalk counts a layer's inodes and blocks.
type layerWalk struct {
	dev    uint64
	blocks int64 // 512-byte blocks
	inodes int64
	links  map[uint64]bool // inodes with several links, once counted
}

func (w *layerWalk) add(st *unix.Stat_t) {
	if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if w.links[st.Ino] {
			return
		}
		w.links[st.Ino] = true
	}
	w.inodes++
	w.blocks += st.Blocks
}

// dir counts the entries of the directory open as fd, depth levels below
// the layer's root, and what lies below them; it closes fd. Entries are
// examined relative to fd and never followed if they are links, so a
// tenant moving directories under the walk cannot send it outside the
// layer; an entry that vanished or changed in the meantime is skipped
// (the next measurement finds it where it went).
func (w *layerWalk) dir(fd, depth int) error {
	f := os.NewFile(uintptr(fd), "layer directory")
	defer f.Close()
	for {
		names, rerr := f.Readdirnames(256)
		for _, name := range names {
			var st unix.Stat_t
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue
				}
				return fmt.Errorf("stat in layer: %w", err)
			}
			if st.Dev != w.dev {
				continue // not the layer's filesystem
			}
			w.add(&st)
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				continue
			}
			if depth+1 >= maxLayerDepth {
				return errTooDeep
			}
			sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOATIME, 0)
			if err != nil {
				if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
					continue
				}
				return fmt.Errorf("open directory in layer: %w", err)
			}
			var opened unix.Stat_t
			if err := unix.Fstat(sub, &opened); err != nil || opened.Dev != st.Dev || opened.Ino != st.Ino {
				unix.Close(sub)
				continue
			}
			if err := w.dir(sub, depth+1); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read layer directory: %w", rerr)
		}
	}
}

// procTable maps PID namespaces (as /proc/<pid>/ns/pid names them) to the
// host processes in them.
type procTable struct {
	self  string // this process's namespace
	byNS  map[string][]int
	valid bool
}

// pidNamespaces reads the host's processes; it is empty where /proc does
// not show them (the runtime runs in another PID namespace than the
// engine's containers' parents).
func pidNamespaces() procTable {
	t := procTable{byNS: map[string][]int{}}
	self, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return t
	}
	d, err := os.Open("/proc")
	if err != nil {
		return t
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			pid, perr := strconv.Atoi(n)
			if perr != nil {
				continue
			}
			if ns, err := os.Readlink("/proc/" + n + "/ns/pid"); err == nil {
				t.byNS[ns] = append(t.byNS[ns], pid)
			}
		}
		if err != nil {
			break
		}
	}
	t.self, t.valid = self, true
	return t
}

// openDeleted returns the bytes of the regular files on disk-backed
// filesystems that the processes of pid's PID namespace hold open or
// mapped after they were deleted, each file once.
func (t procTable) openDeleted(pid int) int64 {
	if !t.valid {
		return 0
	}
	ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
	if err != nil || ns == t.self {
		return 0 // gone, or not a container of its own: nothing to count
	}
	seen := map[[2]uint64]bool{}
	var blocks int64
	for _, p := range t.byNS[ns] {
		for _, sub := range []string{"fd", "map_files"} {
			dir := "/proc/" + strconv.Itoa(p) + "/" + sub
			blocks += deletedIn(dir, seen)
		}
	}
	return blocks * 512
}

// deletedIn adds up the blocks of the deleted regular files dir's links
// (a /proc fd or map_files directory) lead to, skipping those in seen.
func deletedIn(dir string, seen map[[2]uint64]bool) int64 {
	d, err := os.Open(dir)
	if err != nil {
		return 0
	}
	defer d.Close()
	var blocks int64
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			p := dir + "/" + n
			target, lerr := os.Readlink(p)
			if lerr != nil || !strings.HasSuffix(target, " (deleted)") {
				continue
			}
			var st unix.Stat_t
			var fs unix.Statfs_t
			if unix.Stat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || unix.Statfs(p, &fs) != nil {
				continue
			}
			switch uint32(fs.Type) {
			case unix.TMPFS_MAGIC, unix.RAMFS_MAGIC, unix.HUGETLBFS_MAGIC:
				continue // memory, held to the lease's memory limit
			}
			key := [2]uint64{st.Dev, st.Ino}
			if seen[key] {
				continue
			}
			seen[key] = true
			blocks += st.Blocks
		}
		if err != nil {
			return blocks
		}
	}
}

// filesUsage returns the bytes the blocks of files take.
func filesUsage(paths []string) int64 {
	var blocks int64
	for _, p := range paths {
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			blocks += st.Blocks
		}
	}
	return blocks * 512
}
