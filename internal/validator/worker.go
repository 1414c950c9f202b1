package validator

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/pog"
)

// Placing the worker. A nicompute miner mounts a cache of this
// validator's own into its test leases (protocol.PoGCacheDir), kept from
// one test to the next. The worker is stored there under its content
// hash; before running it the validator has the miner's nicompute binary
// hash the cached file (protocol.HashCommand) and runs it only when that
// is the worker's hash, so a stale, truncated or altered copy is never
// run: it is uploaded again (to a temporary name, renamed into place) and
// hashed again. Other workers' files are removed from the cache then, so
// it holds only the current ones. A lease without the cache (another
// miner's, or a miner that does not offer one) gets the worker uploaded
// into a fresh directory of its own filesystem.
//
// Between the hash and the run the file could change only by a write from
// another test lease of this validator (they write content-addressed
// names through temporary files, so never a partial worker) or from the
// miner itself. The cache saves bandwidth, not trust: the miner controls
// the machine and could run anything in place of the worker whatever the
// hash says.
// What the validator credits rests on the protocol alone — fresh seeds,
// its own timing, the Merkle proofs it verifies — never on which binary
// answered.

// workerFile is a worker binary of the validator.
type workerFile struct {
	path string // local
	name string // base name of the uploaded copy
	sum  string // SHA-256, lower-case hex
	size int64
}

// loadWorker hashes the worker at p, uploaded as name.
func loadWorker(p, name string) (workerFile, error) {
	f, err := os.Open(p)
	if err != nil {
		return workerFile{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return workerFile{}, fmt.Errorf("read %s: %w", p, err)
	}
	return workerFile{path: p, name: name, sum: hex.EncodeToString(h.Sum(nil)), size: n}, nil
}

// cacheName is the worker's file name in the cache.
func (w workerFile) cacheName() string { return w.name + "-" + w.sum }

// place returns the path of w on the lease, ready to run: from the cache
// when the lease has one (placeCached), else — or when the cache fails —
// uploaded into a fresh directory.
func (d *driver) place(ctx context.Context, c *ssh.Client, sc *sftp.Client, cached bool, w workerFile) (string, error) {
	if cached {
		p, err := d.placeCached(ctx, c, sc, w)
		if err == nil || ctx.Err() != nil {
			return p, err
		}
		d.log.Warn("worker cache unusable; uploading the worker into the lease", "err", err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	dir := path.Join(d.cfg.UploadDir, "nicompute-pog-"+hex.EncodeToString(rnd[:]))
	if err := sc.MkdirAll(dir); err != nil {
		return "", ctxOr(ctx, fmt.Errorf("sftp mkdir %s: %w", dir, err))
	}
	dst := path.Join(dir, w.name)
	return dst, d.upload(ctx, sc, w, dst)
}

// placeCached returns the cached copy of w once the miner's binary hashed
// it to w's hash, uploading it first when it is absent or different.
func (d *driver) placeCached(ctx context.Context, c *ssh.Client, sc *sftp.Client, w workerFile) (string, error) {
	dst := path.Join(d.cfg.CacheDir, w.cacheName())
	sum, err := d.remoteSum(ctx, c, dst)
	if err == nil && sum == w.sum {
		return dst, nil
	}
	if err == nil {
		d.log.Info("cached worker does not match; uploading it again", "file", dst, "sha256", sum)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(d.cfg.CacheDir, ".upload-"+hex.EncodeToString(rnd[:]))
	if err := d.upload(ctx, sc, w, tmp); err != nil {
		_ = sc.Remove(tmp)
		return "", err
	}
	if err := sc.PosixRename(tmp, dst); err != nil {
		_ = sc.Remove(tmp)
		return "", ctxOr(ctx, fmt.Errorf("sftp rename %s: %w", dst, err))
	}
	if sum, err = d.remoteSum(ctx, c, dst); err != nil {
		return "", fmt.Errorf("hash the uploaded worker: %w", err)
	}
	if sum != w.sum {
		return "", fmt.Errorf("the uploaded worker %s hashes to %s, not %s", dst, sum, w.sum)
	}
	d.prune(sc)
	return dst, nil
}

// upload copies w to dst on the lease, executable, and counts the bytes
// sent. The copy is hashed as it is read: a local file that changed since
// the validator started is refused.
func (d *driver) upload(ctx context.Context, sc *sftp.Client, w workerFile, dst string) error {
	f, err := os.Open(w.path)
	if err != nil {
		return fmt.Errorf("open worker %s: %w", w.path, err)
	}
	defer f.Close()
	out, err := sc.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return ctxOr(ctx, fmt.Errorf("sftp create %s: %w", dst, err))
	}
	h := sha256.New()
	n, err := out.ReadFrom(io.TeeReader(f, h))
	d.uploaded.Add(n)
	if err != nil {
		out.Close()
		return ctxOr(ctx, fmt.Errorf("sftp write %s: %w", dst, err))
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != w.sum {
		out.Close()
		return fmt.Errorf("worker %s changed since the validator started (sha256 %s, was %s): restart the validator", w.path, got, w.sum)
	}
	if err := out.Chmod(0o700); err != nil {
		out.Close()
		return ctxOr(ctx, fmt.Errorf("sftp chmod %s: %w", dst, err))
	}
	if err := out.Close(); err != nil {
		return ctxOr(ctx, fmt.Errorf("sftp close %s: %w", dst, err))
	}
	return nil
}

// remoteSum has the miner's nicompute binary hash the file p of the lease.
func (d *driver) remoteSum(ctx context.Context, c *ssh.Client, p string) (string, error) {
	hctx, cancel := context.WithTimeout(ctx, d.cfg.ProbeTimeout)
	defer cancel()
	b, err := output(hctx, c, d.cfg.HashCommand+" "+p, 2*sha256.Size+1)
	if err != nil {
		return "", err
	}
	return parseSum(b)
}

// parseSum reads the hash helper's output (untrusted): 64 lower-case hex
// digits and a newline.
func parseSum(b []byte) (string, error) {
	sum, ok := strings.CutSuffix(string(b), "\n")
	if !ok || len(sum) != 2*sha256.Size {
		return "", errors.New("the hash helper printed no SHA-256")
	}
	for i := 0; i < len(sum); i++ {
		if c := sum[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", errors.New("the hash helper printed no SHA-256")
		}
	}
	return sum, nil
}

// prune removes from the cache what is not a current worker: other
// versions and leftover uploads.
func (d *driver) prune(sc *sftp.Client) {
	keep := map[string]bool{d.static.cacheName(): true}
	if d.cuda != nil {
		keep[d.cuda.cacheName()] = true
	}
	entries, err := sc.ReadDir(d.cfg.CacheDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if keep[name] || !(strings.HasPrefix(name, ".upload-") || strings.HasPrefix(name, d.static.name+"-") ||
			d.cuda != nil && strings.HasPrefix(name, d.cuda.name+"-")) {
			continue
		}
		if err := sc.Remove(path.Join(d.cfg.CacheDir, name)); err != nil {
			d.log.Debug("remove an old worker from the cache", "file", name, "err", err)
		}
	}
}

// prepare places the worker to run and returns its command line: the CUDA
// worker when configured and it finds real GPUs, else the static worker.
func (d *driver) prepare(ctx context.Context, c *ssh.Client) (string, error) {
	uctx, cancel := context.WithTimeout(ctx, d.cfg.UploadTimeout)
	defer cancel()
	sc, err := sftp.NewClient(c, sftp.UseConcurrentWrites(true), sftp.MaxConcurrentRequestsPerFile(uploadConcurrency))
	if err != nil {
		return "", fmt.Errorf("sftp: %w", err)
	}
	defer sc.Close()
	stop := context.AfterFunc(uctx, func() { sc.Close() })
	defer stop()
	cached := false
	if d.cfg.CacheDir != "" {
		fi, err := sc.Stat(d.cfg.CacheDir)
		cached = err == nil && fi.IsDir()
	}
	if d.cuda != nil {
		p, err := d.place(uctx, c, sc, cached, *d.cuda)
		if err != nil {
			return "", err
		}
		pctx, cancel := context.WithTimeout(ctx, d.cfg.ProbeTimeout)
		b, err := output(pctx, c, p+" info", pog.MaxHelloLine)
		cancel()
		if err != nil {
			d.log.Debug("cuda worker unusable here; using the static worker", "err", err)
		} else if ok, why := realGPUs(b); ok {
			return p + " compute", nil
		} else {
			d.log.Debug("using the static worker", "why", why)
		}
	}
	p, err := d.place(uctx, c, sc, cached, d.static)
	if err != nil {
		return "", err
	}
	return p + " pog compute", nil
}

// safeLeasePath reports whether p, a path the validator puts on a lease's
// command line, is absolute, clean and made of [A-Za-z0-9._/-] only, so no
// shell reads more into it.
func safeLeasePath(p string) bool {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '/') {
			return false
		}
	}
	return true
}
