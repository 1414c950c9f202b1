package wallet

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File and directory modes Bittensor uses for key material.
const (
	fileMode = 0o600
	dirMode  = 0o700
)

// pendingFile is a file written to a temporary name in its final directory,
// waiting to be moved into place.
type pendingFile struct {
	tmp, path string
	overwrite bool
}

// stage writes data to a new temporary file next to path, creating the
// directory (mode 0700) when needed.
func stage(path string, data []byte, overwrite bool) (*pendingFile, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("create directory: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create temporary file: %w", err)
	}
	p := &pendingFile{tmp: f.Name(), path: path, overwrite: overwrite}
	err = f.Chmod(fileMode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		p.discard()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return p, nil
}

// commit moves the file into place. Without overwrite it links the file
// under its final name, which fails if that name exists, so a file that
// appeared since the caller's check is never replaced.
func (p *pendingFile) commit() error {
	defer p.discard()
	if p.overwrite {
		if err := os.Rename(p.tmp, p.path); err != nil {
			return fmt.Errorf("replace %s: %w", p.path, err)
		}
	} else if err := os.Link(p.tmp, p.path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return existsError(p.path)
		}
		// Filesystems without hard links: check, then rename.
		if _, serr := os.Lstat(p.path); serr == nil {
			return existsError(p.path)
		}
		if err := os.Rename(p.tmp, p.path); err != nil {
			return fmt.Errorf("create %s: %w", p.path, err)
		}
	}
	syncDir(filepath.Dir(p.path))
	return nil
}

// discard removes the temporary file if it is still there.
func (p *pendingFile) discard() { _ = os.Remove(p.tmp) }

// writeFiles writes a set of files: it checks that none exists (unless
// overwrite), stages all, then moves all into place, so a failure before
// the last step leaves every existing file untouched.
func writeFiles(files map[string][]byte, order []string, overwrite bool) error {
	if !overwrite {
		for _, path := range order {
			if _, err := os.Lstat(path); err == nil {
				return existsError(path)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("check %s: %w", path, err)
			}
		}
	}
	var staged []*pendingFile
	defer func() {
		for _, p := range staged {
			p.discard()
		}
	}()
	for _, path := range order {
		p, err := stage(path, files[path], overwrite)
		if err != nil {
			return err
		}
		staged = append(staged, p)
	}
	for _, p := range staged {
		if err := p.commit(); err != nil {
			return err
		}
	}
	return nil
}

func existsError(path string) error {
	return fmt.Errorf("%s already exists: %w", path, fs.ErrExist)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
