package selfupdate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Pending is an installed release not yet proven by a start of its
// daemon, recorded in NAME.update next to the binary.
type Pending struct {
	From, To string
	// Targets are the replaced binaries; each has its previous version in
	// TARGET.prev.
	Targets []string
	// Attempts counts starts of the new binary that did not commit.
	Attempts int
}

func markerPath(exe string) string { return exe + ".update" }

// Install replaces the installed binaries by the staged ones: each old
// binary is kept as NAME.prev, a marker is written, then each staged file
// is renamed over its target. On failure what was replaced is put back.
func Install(s *Staged, from string) error {
	if s == nil || len(s.files) == 0 {
		return errors.New("install: nothing staged")
	}
	exe := s.files[0].target
	m := Pending{From: from, To: s.Version}
	for _, f := range s.files {
		if err := keepPrevious(f.target); err != nil {
			s.Discard()
			return fmt.Errorf("install: keep the previous %s: %w", filepath.Base(f.target), err)
		}
		m.Targets = append(m.Targets, f.target)
	}
	if err := writeMarker(exe, m); err != nil {
		s.Discard()
		return fmt.Errorf("install: %w", err)
	}
	for i, f := range s.files {
		if err := os.Rename(f.temp, f.target); err != nil {
			for _, done := range s.files[:i] {
				_ = os.Rename(done.target+".prev", done.target)
			}
			s.Discard()
			os.Remove(markerPath(exe))
			return fmt.Errorf("install %s: %w", filepath.Base(f.target), err)
		}
	}
	return syncDir(filepath.Dir(exe))
}

// keepPrevious makes target.prev a copy of target (a hard link when the
// filesystem allows).
func keepPrevious(target string) error {
	prev := target + ".prev"
	if err := os.Remove(prev); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Link(target, prev); err == nil {
		return nil
	}
	in, err := os.Open(target)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(prev, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func writeMarker(exe string, m Pending) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := markerPath(exe) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write update marker: %w", err)
	}
	return os.Rename(tmp, markerPath(exe))
}

func readMarker(exe string) (*Pending, error) {
	b, err := os.ReadFile(markerPath(exe))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read update marker: %w", err)
	}
	var m Pending
	if err := json.Unmarshal(b, &m); err != nil || len(m.Targets) == 0 || len(b) > 64<<10 {
		return nil, fmt.Errorf("update marker %s is unreadable", markerPath(exe))
	}
	return &m, nil
}

// Boot is called when a daemon with auto-update starts. After an update
// the first start is counted; a second start without Commit means the new
// binary failed to start, so the previous binaries are put back
// (rolledBack true: the caller restarts to run them).
func Boot(exe string) (pending *Pending, rolledBack bool, err error) {
	m, err := readMarker(exe)
	if err != nil || m == nil {
		return m, false, err
	}
	if m.Attempts == 0 {
		m.Attempts = 1
		return m, false, writeMarker(exe, *m)
	}
	return m, true, Rollback(exe)
}

// Rollback puts the previous binaries of the pending update back and
// removes the marker; without a pending update it does nothing.
func Rollback(exe string) error {
	m, err := readMarker(exe)
	if err != nil || m == nil {
		return err
	}
	var errs []error
	for _, t := range m.Targets {
		if err := os.Rename(t+".prev", t); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", filepath.Base(t), err))
		}
	}
	if len(errs) == 0 {
		errs = append(errs, os.Remove(markerPath(exe)))
	}
	return errors.Join(errs...)
}

// Commit marks the running release as good: its daemon started. The
// previous binaries stay as NAME.prev for a manual rollback.
func Commit(exe string) error {
	err := os.Remove(markerPath(exe))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
