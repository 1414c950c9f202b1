package miner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// Proof-of-GPU worker caches. Every test lease of a validator (an
// Allocate with device_requirement.testing) sees that validator's own
// cache directory at protocol.PoGCacheDir, read-write, so the validator
// uploads its worker once per version instead of into every test lease;
// it checks the cached file's SHA-256 before running it, so a stale or
// damaged copy is uploaded again rather than run. Only test leases of
// the same hotkey mount a cache, so neither other validators nor renters
// can write it.
//
// The cache lies outside the container's writable layer, which the
// engine's quota and SizeRw do not cover; the miner holds it to bounds
// itself, every DiskCheckInterval:
//   - while a live test lease mounts it, its bytes count toward that
//     lease's disk size, so a lease past its size with its cache is paused
//     like any other (checkDisk) and the capacity the miner offers counts
//     the cache as what the lease has written;
//   - once no live lease mounts it, a cache holding more than
//     Config.PoGCacheBytes is emptied, and one unused for pogCacheIdle is
//     removed;
//   - a test lease never starts with a cache past Config.PoGCacheBytes:
//     prepare empties it first.
//
// So a validator's cache holds at most PoGCacheBytes between its tests
// (what its workers take: about 60 MB per version), and at most its test
// lease's disk size while a test runs. A cache is a cache: emptying it
// loses nothing the validator cannot upload again.

// DefaultPoGCacheBytes bounds each validator's cache: room for a few
// versions of the two workers.
const DefaultPoGCacheBytes = 512 << 20

// pogCacheIdle is how long a cache may go unused before it is removed.
const pogCacheIdle = 14 * 24 * time.Hour

// maxCacheEntries bounds the files a measurement walks: a cache holding
// more counts as past every bound.
const maxCacheEntries = 1000

// pogCache owns the cache directories under root.
type pogCache struct {
	root  string // "" when caches are off
	limit int64
	now   func() time.Time
	log   *slog.Logger

	// mu serialises preparing a cache with checking them all, so a cache
	// is never emptied between its lease being recorded and its mount.
	mu sync.Mutex
}

func newPoGCache(cfg Config, log *slog.Logger) (*pogCache, error) {
	c := &pogCache{root: cfg.PoGCacheDir, limit: cfg.PoGCacheBytes, now: cfg.Now, log: log.With("component", "pog-cache")}
	if c.root == "" {
		return c, nil
	}
	if !filepath.IsAbs(c.root) {
		return nil, fmt.Errorf("pog cache directory %q is not absolute", c.root)
	}
	if err := os.MkdirAll(c.root, 0o700); err != nil {
		return nil, fmt.Errorf("pog cache directory: %w", err)
	}
	return c, nil
}

// enabled reports whether test leases get a cache.
func (c *pogCache) enabled() bool { return c != nil && c.root != "" }

// dir is hotkey's cache directory: a hash of the hotkey, so no caller
// string becomes a path.
func (c *pogCache) dir(hotkey string) string {
	sum := sha256.Sum256([]byte(hotkey))
	return filepath.Join(c.root, hex.EncodeToString(sum[:16]))
}

// mounts reports whether lease l has a cache, and which.
func (c *pogCache) mounts(l market.Lease) (string, bool) {
	if !c.enabled() || !l.Testing {
		return "", false
	}
	return c.dir(l.Owner.Hotkey), true
}

// prepare returns the cache directory of hotkey's next test lease:
// created when missing, emptied when past its bound, marked used now.
func (c *pogCache) prepare(hotkey string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	dir := c.dir(hotkey)
	if err := os.Mkdir(dir, 0o700); err == nil {
		c.log.Info("worker cache created", "validator", hotkey, "dir", dir)
	} else if !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("worker cache: %w", err)
	}
	if size, err := cacheSize(dir); err != nil || size > c.limit {
		if err := emptyDir(dir); err != nil {
			return "", fmt.Errorf("empty worker cache: %w", err)
		}
		c.log.Info("worker cache past its bound emptied", "validator", hotkey, "bytes", size, "limit", c.limit)
	}
	now := c.now()
	if err := os.Chtimes(dir, now, now); err != nil {
		return "", fmt.Errorf("worker cache: %w", err)
	}
	return dir, nil
}

// check measures the caches: it returns the bytes of the cache of each
// live lease that mounts one (by lease id), and empties or removes the
// caches no live lease mounts as the bounds say. live is read under the
// cache's lock.
func (c *pogCache) check(ctx context.Context, liveLeases func(context.Context) ([]market.Lease, error)) (map[string]int64, error) {
	if !c.enabled() {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	live, err := liveLeases(ctx)
	if err != nil {
		return nil, err
	}
	users := map[string][]string{}
	for _, l := range live {
		if dir, ok := c.mounts(l); ok {
			users[dir] = append(users[dir], l.ID)
		}
	}
	entries, err := os.ReadDir(c.root)
	if err != nil {
		return nil, fmt.Errorf("read worker caches: %w", err)
	}
	out := map[string]int64{}
	for _, e := range entries {
		dir := filepath.Join(c.root, e.Name())
		if !e.IsDir() {
			continue
		}
		size, err := cacheSize(dir)
		if err != nil {
			size = c.limit + 1 // unmeasurable: past every bound
		}
		if ids := users[dir]; len(ids) > 0 {
			for _, id := range ids {
				out[id] = size
			}
			continue
		}
		if fi, err := e.Info(); err == nil && c.now().Sub(fi.ModTime()) > pogCacheIdle {
			if err := os.RemoveAll(dir); err != nil {
				c.log.Warn("remove idle worker cache", "dir", dir, "err", err)
			} else {
				c.log.Info("idle worker cache removed", "dir", dir)
			}
			continue
		}
		if size > c.limit {
			if err := emptyDir(dir); err != nil {
				c.log.Warn("empty worker cache past its bound", "dir", dir, "err", err)
			} else {
				c.log.Info("worker cache past its bound emptied", "dir", dir, "bytes", size, "limit", c.limit)
			}
		}
	}
	return out, nil
}

// errTooManyEntries is a cache holding more than maxCacheEntries entries.
var errTooManyEntries = errors.New("too many entries")

// cacheSize is the bytes of the regular files under dir (symbolic links
// are not followed).
func cacheSize(dir string) (int64, error) {
	var size int64
	entries := 0
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if entries++; entries > maxCacheEntries {
			return errTooManyEntries
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			size += fi.Size()
		}
		return nil
	})
	return size, err
}

// emptyDir removes everything in dir, keeping dir.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}
