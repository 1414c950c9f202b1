package validator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"

	"github.com/nicompute/nicompute/internal/protocol"
)

// memFS is the file system of a fake miner's scripted leases: directories
// and files by path, each file kept as the SHA-256 of its bytes (hashed in
// order as concurrent SFTP writes arrive), never the bytes, so a sweep of
// hundreds of miners receiving a 27 MB worker each holds little memory.
// It counts the bytes written.
type memFS struct {
	written atomic.Int64

	mu    sync.Mutex
	dirs  map[string]bool
	files map[string]*memFile
}

func newMemFS() *memFS {
	return &memFS{dirs: map[string]bool{"/": true}, files: map[string]*memFile{}}
}

func (f *memFS) handlers() sftp.Handlers {
	return sftp.Handlers{FileGet: f, FilePut: f, FileCmd: f, FileList: f}
}

// mkdir creates p and its parents.
func (f *memFS) mkdir(p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ; p != "/"; p = path.Dir(p) {
		f.dirs[p] = true
	}
}

// sum returns the hash of the file at p, if it is complete.
func (f *memFS) sum(p string) (string, bool) {
	f.mu.Lock()
	file := f.files[p]
	f.mu.Unlock()
	if file == nil {
		return "", false
	}
	return file.digest()
}

// spoil makes the file at p hash to something else, as a damaged copy.
func (f *memFS) spoil(p string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	file := f.files[p]
	if file == nil {
		return false
	}
	file.mu.Lock()
	defer file.mu.Unlock()
	file.h.Write([]byte("damage"))
	return true
}

// names lists the files under dir.
func (f *memFS) names(dir string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for p := range f.files {
		if path.Dir(p) == dir {
			out = append(out, path.Base(p))
		}
	}
	sort.Strings(out)
	return out
}

func (f *memFS) Fileread(*sftp.Request) (io.ReaderAt, error) { return nil, os.ErrPermission }

func (f *memFS) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.dirs[path.Dir(r.Filepath)] {
		return nil, os.ErrNotExist
	}
	file := &memFile{fs: f, h: sha256.New(), pending: map[int64][]byte{}}
	f.files[r.Filepath] = file
	return file, nil
}

func (f *memFS) Filecmd(r *sftp.Request) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.Method {
	case "Mkdir":
		if !f.dirs[path.Dir(r.Filepath)] {
			return os.ErrNotExist
		}
		f.dirs[r.Filepath] = true
	case "Rename", "PosixRename":
		file := f.files[r.Filepath]
		if file == nil {
			return os.ErrNotExist
		}
		delete(f.files, r.Filepath)
		f.files[r.Target] = file
	case "Remove":
		if f.files[r.Filepath] == nil {
			return os.ErrNotExist
		}
		delete(f.files, r.Filepath)
	}
	return nil
}

func (f *memFS) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == "List":
		if !f.dirs[r.Filepath] {
			return nil, os.ErrNotExist
		}
		var out statLister
		for p := range f.files {
			if path.Dir(p) == r.Filepath {
				out = append(out, fakeInfo{name: path.Base(p)})
			}
		}
		return out, nil
	case f.dirs[r.Filepath]:
		return statLister{fakeInfo{name: path.Base(r.Filepath), dir: true}}, nil
	case f.files[r.Filepath] != nil:
		return statLister{fakeInfo{name: path.Base(r.Filepath)}}, nil
	}
	return nil, os.ErrNotExist
}

// memFile hashes what is written to it in order of offset.
type memFile struct {
	fs *memFS

	mu      sync.Mutex
	h       hash.Hash
	next    int64
	pending map[int64][]byte
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < m.next {
		return 0, fmt.Errorf("fake file system: rewrite at %d", off)
	}
	m.pending[off] = append([]byte(nil), p...)
	for {
		b, ok := m.pending[m.next]
		if !ok {
			break
		}
		delete(m.pending, m.next)
		m.h.Write(b)
		m.next += int64(len(b))
	}
	m.fs.written.Add(int64(len(p)))
	return len(p), nil
}

func (m *memFile) digest() (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.pending) > 0 {
		return "", false
	}
	return hex.EncodeToString(m.h.Sum(nil)), true
}

type statLister []os.FileInfo

func (l statLister) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if off+int64(n) >= int64(len(l)) {
		return n, io.EOF
	}
	return n, nil
}

type fakeInfo struct {
	name string
	dir  bool
}

func (i fakeInfo) Name() string { return i.name }
func (i fakeInfo) Size() int64  { return 0 }
func (i fakeInfo) Mode() os.FileMode {
	if i.dir {
		return os.ModeDir | 0o755
	}
	return 0o700
}
func (i fakeInfo) ModTime() time.Time { return time.Time{} }
func (i fakeInfo) IsDir() bool        { return i.dir }
func (i fakeInfo) Sys() any           { return nil }

// scriptedExec plays the exec sessions of m's scripted leases: the hash
// helper (protocol.HashCommand) on m's file system, anything else by the
// miner's script.
func (m *fakeMiner) scriptedExec() workerScript {
	return func(ctx context.Context, cmd string, in io.Reader, out, errw io.Writer) int {
		file, ok := strings.CutPrefix(cmd, protocol.HashCommand+" ")
		if !ok {
			return m.b.script(ctx, cmd, in, out, errw)
		}
		if m.b.noHashHelper {
			fmt.Fprintln(errw, "sh: nicompute: not found")
			return 127
		}
		sum, ok := m.fs.sum(file)
		if !ok {
			fmt.Fprintf(errw, "error: lstat %s: no such file or directory\n", file)
			return 1
		}
		fmt.Fprintln(out, sum)
		return 0
	}
}

// fakeRequest is an SFTP request for the file at p, to write into a memFS
// from a test.
func fakeRequest(p string) *sftp.Request { return sftp.NewRequest("Put", p) }
