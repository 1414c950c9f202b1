package selfupdate

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

// Config configures an Updater.
type Config struct {
	// URL is the manifest's URL; the signature is at URL + ".sig".
	URL string
	// Keys are the trusted public keys.
	Keys []ed25519.PublicKey
	// Current is the running version.
	Current string
	// Exe is the running binary (symlinks resolved); Name its name in the
	// manifest (default "nicompute").
	Exe  string
	Name string
	// Companions are other binaries of the release that are updated too
	// when they sit next to Exe ("nicompute-pog").
	Companions []string
	// Platform is GOOS/GOARCH (default the running one).
	Platform string
	// Client fetches the feed (default: 5 min timeout, no redirects to
	// other schemes).
	Client *http.Client
	// HealthTimeout bounds the new binary's `version --json` (default 30 s).
	HealthTimeout time.Duration
	Log           *slog.Logger
}

// Updater checks a release feed and installs newer releases.
type Updater struct {
	cfg     Config
	current Version
}

// New validates cfg.
func New(cfg Config) (*Updater, error) {
	if cfg.URL == "" || len(cfg.Keys) == 0 || cfg.Exe == "" {
		return nil, errors.New("auto-update needs a release URL, a trusted key and the binary's path")
	}
	cur, err := ParseVersion(cfg.Current)
	if err != nil {
		return nil, fmt.Errorf("running version: %w", err)
	}
	if cfg.Name == "" {
		cfg.Name = "nicompute"
	}
	if cfg.Platform == "" {
		cfg.Platform = runtime.GOOS + "/" + runtime.GOARCH
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 5 * time.Minute}
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Updater{cfg: cfg, current: cur}, nil
}

// Staged is a verified release written beside the binaries it replaces.
type Staged struct {
	Version string
	files   []stagedFile
}

type stagedFile struct {
	target, temp string
}

// Discard removes the staged files.
func (s *Staged) Discard() {
	if s == nil {
		return
	}
	for _, f := range s.files {
		os.Remove(f.temp)
	}
}

// ErrDowngrade is returned for a signed manifest older than the running
// version (a replayed old release).
var ErrDowngrade = errors.New("release is older than the running version")

// Check fetches the feed and, when it offers a newer release, downloads,
// verifies and health-checks its binaries into temporary files beside the
// installed ones. It returns nil, nil when the running version is the
// newest. On any error nothing is left behind.
func (u *Updater) Check(ctx context.Context) (*Staged, error) {
	manifest, err := u.fetch(ctx, u.cfg.URL, MaxManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("fetch manifest: %w", err)
	}
	sig, err := u.fetch(ctx, u.cfg.URL+".sig", MaxSignatureBytes)
	if err != nil {
		return nil, fmt.Errorf("fetch signature: %w", err)
	}
	m, err := Verify(manifest, sig, u.cfg.Keys)
	if err != nil {
		return nil, err
	}
	v, _ := ParseVersion(m.Version)
	switch c := v.Compare(u.current); {
	case c == 0:
		return nil, nil
	case c < 0:
		return nil, fmt.Errorf("%w: manifest offers %s, running %s", ErrDowngrade, m.Version, u.cfg.Current)
	}
	bins := m.Binaries[u.cfg.Platform]
	main, ok := bins[u.cfg.Name]
	if !ok {
		return nil, fmt.Errorf("release %s has no %s for %s", m.Version, u.cfg.Name, u.cfg.Platform)
	}
	s := &Staged{Version: m.Version}
	if err := u.stage(ctx, s, u.cfg.Exe, main); err != nil {
		s.Discard()
		return nil, err
	}
	if err := u.healthCheck(ctx, s.files[0].temp, v); err != nil {
		s.Discard()
		return nil, err
	}
	for _, name := range u.cfg.Companions {
		target := filepath.Join(filepath.Dir(u.cfg.Exe), name)
		bin, ok := bins[name]
		if _, err := os.Stat(target); err != nil || !ok {
			continue // not installed here, or not in this release
		}
		if err := u.stage(ctx, s, target, bin); err != nil {
			s.Discard()
			return nil, err
		}
	}
	return s, nil
}

func (u *Updater) fetch(ctx context.Context, url string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := u.cfg.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", url, limit)
	}
	return b, nil
}

// stage downloads bin next to target, checking its size and digest.
func (u *Updater) stage(ctx context.Context, s *Staged, target string, bin Binary) error {
	f, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".download-*")
	if err != nil {
		return fmt.Errorf("stage %s: %w", filepath.Base(target), err)
	}
	s.files = append(s.files, stagedFile{target: target, temp: f.Name()})
	err = u.download(ctx, f, bin)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", filepath.Base(target), err)
	}
	return os.Chmod(f.Name(), 0o755)
}

func (u *Updater) download(ctx context.Context, f *os.File, bin Binary) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, bin.URL, nil)
	if err != nil {
		return err
	}
	resp, err := u.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, bin.Size+1))
	switch {
	case n < bin.Size:
		return fmt.Errorf("truncated: got %d of %d bytes (%v)", n, bin.Size, err)
	case err != nil:
		return err
	case n > bin.Size:
		return fmt.Errorf("larger than the manifest's %d bytes", bin.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != bin.SHA256 {
		return fmt.Errorf("sha256 %s does not match the manifest's %s: tampered or corrupted", got, bin.SHA256)
	}
	return f.Sync()
}

// healthCheck runs the staged binary's `version --json`; it must report
// the manifest's version.
func (u *Updater) healthCheck(ctx context.Context, path string, want Version) error {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.HealthTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "version", "--json")
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("health check: the new binary does not run: %w", err)
	}
	var info struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(out.Bytes(), &info); err != nil {
		return fmt.Errorf("health check: the new binary's version output is not JSON: %w", err)
	}
	if v, err := ParseVersion(info.Version); err != nil || v.Compare(want) != 0 {
		return fmt.Errorf("health check: the new binary reports version %q, the manifest %d.%d.%d", clip(info.Version), want.Major, want.Minor, want.Patch)
	}
	return nil
}

// Run checks the feed now and every interval until ctx ends. A newer
// verified release is handed to apply (which installs it and restarts, or
// returns an error and the release is discarded); a refused release is
// logged once per distinct reason with "nothing changed".
func (u *Updater) Run(ctx context.Context, every time.Duration, apply func(context.Context, *Staged) error) {
	last := ""
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		u.poll(ctx, &last, apply)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// poll is one check of Run; last is the previous outcome, so that a
// repeated refusal is logged once.
func (u *Updater) poll(ctx context.Context, last *string, apply func(context.Context, *Staged) error) {
	s, err := u.Check(ctx)
	switch {
	case ctx.Err() != nil:
		s.Discard()
	case err != nil:
		if msg := err.Error(); msg != *last {
			u.cfg.Log.Warn("update refused; nothing changed", "url", u.cfg.URL, "reason", msg)
			*last = msg
		}
	case s == nil:
		if *last != "up to date" {
			u.cfg.Log.Debug("no newer release", "url", u.cfg.URL, "running", u.cfg.Current)
			*last = "up to date"
		}
	default:
		u.cfg.Log.Info("verified release staged", "version", s.Version, "running", u.cfg.Current)
		if err := apply(ctx, s); err != nil {
			s.Discard()
			u.cfg.Log.Warn("release not installed; nothing changed", "version", s.Version, "reason", err)
			*last = ""
		}
	}
}
