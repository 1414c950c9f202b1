package docker

import (
	"context"
	"errors"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/nicompute/nicompute/internal/market"
)

// What a lease holds on the host's disk. The engine's own measure of a
// container's writable layer (SizeRw) adds up the apparent sizes of the
// layer's non-empty regular files, and so misses what a tenant can take
// without them: directories (a block each, more when large), empty files
// and other inodes (the host's filesystem has a fixed number), files
// deleted while a process keeps them open (invisible to any walk), and
// Docker's own /etc/hosts, /etc/resolv.conf and /etc/hostname, which the
// container writes in the engine's directory on the host, outside the
// layer and beyond any storage quota. It also counts a sparse file's holes.
//
// Where the runtime shares the engine's host as root (as the lease packet
// filter requires too), DiskUsage measures itself, for each lease:
//
//   - its writable layer, where the storage driver keeps one as a directory
//     (overlay2, fuse-overlayfs): the blocks every file, directory and link
//     takes (hard links once), or — when more — its inodes at the
//     filesystem's bytes per inode, so that a lease is held to its share of
//     the inodes as of the bytes. The walk never follows a link or leaves
//     the filesystem, and opens each directory relative to its parent, so
//     a tenant renaming directories under it cannot send it elsewhere. A
//     tree deeper than maxLayerDepth is not walked: the lease is reported
//     as market.DiskUnmeasured, past any size. Other drivers: SizeRw (for
//     quota drivers without a directory, nothing: the engine bounds it);
//   - the blocks of files its processes hold open (or mapped) after
//     deleting them, on disk-backed filesystems (tmpfs counts against the
//     lease's memory);
//   - the blocks of the three files of Docker's directory.
//
// Elsewhere (a remote engine, not root) it falls back to SizeRw.

// containerDisk is what DiskUsage needs to know about one container.
type containerDisk struct {
	lease    string
	upperDir string // the writable layer's directory, if the driver has one
	quota    bool   // the engine holds the layer to a size
	pid      int    // the container's first process, 0 when not running
	outside  []string
}

// DiskUsage returns, for each of this instance's lease containers, the
// bytes it holds on the host's disk against its size (see above). It
// walks the layers, so callers should not ask more often than every few
// seconds. Errors: EUNAVAILABLE.
func (r *Runtime) DiskUsage(ctx context.Context) (map[string]int64, error) {
	cs, err := r.containersForDisk(ctx)
	if err != nil {
		return nil, err
	}
	procs := pidNamespaces()
	out := make(map[string]int64, len(cs))
	var fallback []string
	for _, c := range cs {
		if err := ctx.Err(); err != nil {
			return nil, wrap(ctx, "measure containers", "lease containers", err)
		}
		var used int64
		switch {
		case c.upperDir != "":
			n, err := layerUsage(c.upperDir)
			switch {
			case errors.Is(err, errTooDeep):
				r.log.Warn("lease writable layer too deep to measure; held past its size", "lease", c.lease, "max_depth", maxLayerDepth)
				out[c.lease] = market.DiskUnmeasured
				continue
			case err != nil:
				r.logDiskFallback(c.lease, err)
				fallback = append(fallback, c.lease)
			default:
				used = n
			}
		case !c.quota:
			fallback = append(fallback, c.lease)
		}
		if c.pid > 0 {
			used += procs.openDeleted(c.pid)
		}
		used += filesUsage(c.outside)
		out[c.lease] = used
	}
	if len(fallback) > 0 {
		sizes, err := r.sizeRw(ctx)
		if err != nil {
			return nil, err
		}
		for _, lease := range fallback {
			out[lease] += sizes[lease]
		}
	}
	return out, nil
}

// containersForDisk inspects this instance's lease containers.
func (r *Runtime) containersForDisk(ctx context.Context) ([]containerDisk, error) {
	items, err := r.listOwn(ctx, false)
	if err != nil {
		return nil, err
	}
	cctx, cancel := r.call(ctx)
	defer cancel()
	var out []containerDisk
	for _, s := range items {
		ins, err := r.cli.ContainerInspect(cctx, s.ID, client.ContainerInspectOptions{})
		if cerrdefs.IsNotFound(err) {
			continue // removed since the list
		}
		if err != nil {
			return nil, wrap(cctx, "inspect container", "lease "+s.Labels[LabelLease], err)
		}
		out = append(out, diskOf(s.Labels[LabelLease], ins.Container))
	}
	return out, nil
}

func diskOf(lease string, c container.InspectResponse) containerDisk {
	d := containerDisk{lease: lease}
	if c.GraphDriver != nil {
		d.upperDir = c.GraphDriver.Data["UpperDir"]
	}
	if c.HostConfig != nil {
		_, d.quota = c.HostConfig.StorageOpt["size"]
	}
	if c.State != nil && (c.State.Running || c.State.Paused) {
		d.pid = c.State.Pid
	}
	for _, p := range []string{c.HostsPath, c.ResolvConfPath, c.HostnamePath} {
		if p != "" {
			d.outside = append(d.outside, p)
		}
	}
	return d
}

// sizeRw returns the engine's SizeRw of each lease container.
func (r *Runtime) sizeRw(ctx context.Context) (map[string]int64, error) {
	items, err := r.listOwn(ctx, true)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(items))
	for _, s := range items {
		out[s.Labels[LabelLease]] = s.SizeRw
	}
	return out, nil
}

// logDiskFallback logs, once per runtime, that a layer could not be
// walked and the engine's measure is used instead.
func (r *Runtime) logDiskFallback(lease string, err error) {
	r.mu.Lock()
	first := !r.diskFallbackLogged
	r.diskFallbackLogged = true
	r.mu.Unlock()
	log := r.log.Debug
	if first {
		log = r.log.Warn
	}
	log("cannot measure a lease's writable layer on this host; using the engine's measure, which misses directories, empty files and sparse holes",
		"lease", lease, "err", err)
}
