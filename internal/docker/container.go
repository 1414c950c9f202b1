package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/nicompute/nicompute/internal/market"
)

// State is a container's state as Docker reports it.
type State string

// Container states.
const (
	StateCreated    State = "created"
	StateRunning    State = "running"
	StatePaused     State = "paused"
	StateRestarting State = "restarting"
	StateRemoving   State = "removing"
	StateExited     State = "exited"
	StateDead       State = "dead"
)

// Container is what the miner records about a lease's container.
type Container struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	LeaseID string    `json:"lease_id"`
	Image   string    `json:"image"`
	State   State     `json:"state"`
	SSHPort int       `json:"ssh_port"`
	Created time.Time `json:"created"`
	// DiskQuota is true when the container's disk size is enforced by the
	// storage driver. Set by Create and Inspect, not by List.
	DiskQuota bool `json:"disk_quota"`
}

// Create creates (but does not start) the container for s: it ensures the
// lease network exists, pulls the image if it is not present (never builds
// one), creates the container with every limit, and writes the SSH
// server's files (authorized_keys, password hash or an empty password
// file, a fresh host key) and the volume path directory into it. On
// failure nothing is left behind.
//
// Errors: EINVALID (bad spec, an image that declares volumes, or the
// engine refused a limit, e.g. more CPUs than the host has), ECONFLICT (the lease already has a container, or the
// port is taken), ENOTFOUND (image missing and not pullable because the
// registry does not know it), EUNAVAILABLE (engine down, or the image is
// missing and the pull failed).
func (r *Runtime) Create(ctx context.Context, s Spec) (Container, error) {
	if err := checkSpec(s); err != nil {
		return Container{}, fmt.Errorf("create lease container: %w", err)
	}
	image := s.Image
	if image == "" {
		image = r.cfg.DefaultImage
	}
	if image == "" {
		return Container{}, market.Errorf(market.EINVALID, "lease %s: no image requested and no default image configured", s.LeaseID)
	}
	image, err := ValidateImage(image)
	if err != nil {
		return Container{}, fmt.Errorf("create lease container: %w", err)
	}
	files, err := newLeaseFiles(s)
	if err != nil {
		return Container{}, fmt.Errorf("%w (%w)", market.Errorf(market.EINTERNAL, "lease %s: cannot prepare its ssh files", s.LeaseID), err)
	}

	lnet, err := r.ensureNetwork(ctx)
	if err != nil {
		return Container{}, err
	}
	cfg := r.cfg
	cfg.Network = lnet.ID // by id: a name may be ambiguous for a moment (see ensureNetwork)
	if err := r.ensureImage(ctx, image); err != nil {
		return Container{}, err
	}
	if err := r.checkImageVolumes(ctx, image); err != nil {
		return Container{}, fmt.Errorf("create lease container: %w", err)
	}
	quota, err := r.wantQuota(ctx, s.Resources.DiskBytes)
	if err != nil {
		return Container{}, err
	}
	subject := "lease " + s.LeaseID
	id, err := r.create(ctx, createOptions(cfg, s, image, quota, lnet.EnableIPv6))
	if err != nil && quota && retryWithoutQuota(err) {
		// The only difference a retry makes is the StorageOpt: if it now
		// succeeds, the driver cannot enforce sizes (engines report this
		// as an invalid parameter or a plain server error).
		id, err = r.create(ctx, createOptions(cfg, s, image, false, lnet.EnableIPv6))
		if err == nil {
			r.setQuota(quotaUnsupported)
			quota = false
		}
	} else if err == nil && quota {
		r.setQuota(quotaSupported)
	}
	if err != nil {
		return Container{}, wrapCreate(ctx, subject, err)
	}
	if err := r.writeLeaseFiles(ctx, id, files); err != nil {
		r.cleanup(id, s.LeaseID)
		return Container{}, fmt.Errorf("lease %s: %w", s.LeaseID, err)
	}
	c, err := r.inspectID(ctx, id, s.LeaseID)
	if err != nil {
		r.cleanup(id, s.LeaseID)
		return Container{}, err
	}
	if !quota && s.Resources.DiskBytes > 0 {
		r.log.Debug("disk size not enforced", "lease", s.LeaseID, "disk_bytes", s.Resources.DiskBytes)
	}
	r.log.Info("lease container created", "lease", s.LeaseID, "container", shortID(id), "image", image, "ssh_port", s.SSHPort)
	return c, nil
}

// retryWithoutQuota reports whether a failed create may have failed because
// of its StorageOpt: not when the engine is unreachable or the name taken.
func retryWithoutQuota(err error) bool {
	return !client.IsErrConnectionFailed(err) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) &&
		!cerrdefs.IsConflict(err) && !cerrdefs.IsAlreadyExists(err) && !cerrdefs.IsNotFound(err)
}

// wrapCreate classifies a create failure with messages about the lease.
func wrapCreate(ctx context.Context, subject string, err error) error {
	if cerrdefs.IsConflict(err) || cerrdefs.IsAlreadyExists(err) {
		return fmt.Errorf("create container: %w (%w)", market.Errorf(market.ECONFLICT, "%s already has a container", subject), err)
	}
	return wrap(ctx, "create container", subject, err)
}

func (r *Runtime) create(ctx context.Context, opts client.ContainerCreateOptions) (string, error) {
	ctx, cancel := r.call(ctx)
	defer cancel()
	res, err := r.cli.ContainerCreate(ctx, opts)
	if err != nil {
		return "", err
	}
	for _, w := range res.Warnings {
		r.log.Warn("docker create warning", "container", opts.Name, "warning", w)
	}
	return res.ID, nil
}

// cleanup removes a half-made container; it runs after the request's
// context may have ended, so it has its own deadline.
func (r *Runtime) cleanup(id, lease string) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.CallTimeout)
	defer cancel()
	if _, err := r.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
		r.log.Warn("remove half-created container", "lease", lease, "container", shortID(id), "err", err)
	}
}

func (r *Runtime) wantQuota(ctx context.Context, disk int64) (bool, error) {
	if disk <= 0 {
		return false, nil
	}
	return r.DiskQuota(ctx)
}

func (r *Runtime) setQuota(s quotaState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.diskQuota != s && s == quotaUnsupported {
		r.log.Warn("storage driver refused a container disk size; lease disk sizes are not enforced by the engine")
		r.quotaWarned = true
	}
	r.diskQuota = s
}

// lookup returns the ID of lease's container after checking that it
// carries this instance's labels. Errors: ENOTFOUND, EUNAVAILABLE.
func (r *Runtime) lookup(ctx context.Context, lease string) (container.InspectResponse, error) {
	if !validLeaseID(lease) {
		return container.InspectResponse{}, market.Errorf(market.EINVALID, "invalid lease id")
	}
	ctx, cancel := r.call(ctx)
	defer cancel()
	res, err := r.cli.ContainerInspect(ctx, containerName(r.cfg.Instance, lease), client.ContainerInspectOptions{})
	if err != nil {
		return container.InspectResponse{}, wrap(ctx, "inspect container", "lease "+lease, err)
	}
	c := res.Container
	if c.Config == nil || c.Config.Labels[LabelManaged] != "true" || c.Config.Labels[LabelMiner] != r.cfg.Instance || c.Config.Labels[LabelLease] != lease {
		return container.InspectResponse{}, market.Errorf(market.ENOTFOUND, "lease %s not found", lease)
	}
	return c, nil
}

// Inspect returns the lease's container. Errors: ENOTFOUND, EUNAVAILABLE.
func (r *Runtime) Inspect(ctx context.Context, lease string) (Container, error) {
	c, err := r.lookup(ctx, lease)
	if err != nil {
		return Container{}, err
	}
	return fromInspect(c), nil
}

func (r *Runtime) inspectID(ctx context.Context, id, lease string) (Container, error) {
	ctx, cancel := r.call(ctx)
	defer cancel()
	res, err := r.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return Container{}, wrap(ctx, "inspect container", "lease "+lease, err)
	}
	return fromInspect(res.Container), nil
}

func fromInspect(c container.InspectResponse) Container {
	out := Container{ID: c.ID, Name: strings.TrimPrefix(c.Name, "/")}
	if c.Config != nil {
		out.Image = c.Config.Image
		out.LeaseID = c.Config.Labels[LabelLease]
		out.SSHPort, _ = strconv.Atoi(c.Config.Labels[LabelSSHPort])
	}
	if c.State != nil {
		out.State = State(c.State.Status)
	}
	if t, err := time.Parse(time.RFC3339Nano, c.Created); err == nil {
		out.Created = t
	}
	if c.HostConfig != nil {
		_, out.DiskQuota = c.HostConfig.StorageOpt["size"]
	}
	return out
}

// Start starts the lease's container. Starting a running container is not
// an error. Errors: ENOTFOUND, ECONFLICT (e.g. the host port is taken; the
// container then stays created), EUNAVAILABLE.
func (r *Runtime) Start(ctx context.Context, lease string) error {
	c, err := r.lookup(ctx, lease)
	if err != nil {
		return err
	}
	cctx, cancel := r.call(ctx)
	defer cancel()
	if _, err := r.cli.ContainerStart(cctx, c.ID, client.ContainerStartOptions{}); err != nil {
		werr := wrap(cctx, "start container", "lease "+lease, err)
		if market.ErrorCode(werr) == market.EINTERNAL {
			// The engine reports a taken host port as a plain server
			// error; find out by trying the port ourselves.
			if port, busy := portBusy(c); busy {
				return fmt.Errorf("start container: %w (%w)", market.Errorf(market.ECONFLICT, "lease %s: ssh port %d is already in use", lease, port), err)
			}
		}
		return werr
	}
	r.log.Info("lease container started", "lease", lease, "container", shortID(c.ID))
	return nil
}

// Stop stops the lease's container: SIGTERM, then SIGKILL after
// Config.StopTimeout. It stays stopped across daemon restarts. Stopping a
// stopped container is not an error. Errors: ENOTFOUND, EUNAVAILABLE.
func (r *Runtime) Stop(ctx context.Context, lease string) error {
	c, err := r.lookup(ctx, lease)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout+r.cfg.StopTimeout)
	defer cancel()
	timeout := int(r.cfg.StopTimeout.Seconds())
	if _, err := r.cli.ContainerStop(cctx, c.ID, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
		return wrap(cctx, "stop container", "lease "+lease, err)
	}
	r.log.Info("lease container stopped", "lease", lease, "container", shortID(c.ID))
	return nil
}

// Restart stops and starts the lease's container; the renter's files and
// the SSH host key survive. Errors: ENOTFOUND, ECONFLICT, EUNAVAILABLE.
func (r *Runtime) Restart(ctx context.Context, lease string) error {
	c, err := r.lookup(ctx, lease)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout+r.cfg.StopTimeout)
	defer cancel()
	timeout := int(r.cfg.StopTimeout.Seconds())
	if _, err := r.cli.ContainerRestart(cctx, c.ID, client.ContainerRestartOptions{Timeout: &timeout}); err != nil {
		return wrap(cctx, "restart container", "lease "+lease, err)
	}
	r.log.Info("lease container restarted", "lease", lease, "container", shortID(c.ID))
	return nil
}

// Pause freezes every process of the lease's container. Errors: ENOTFOUND,
// ECONFLICT (not running, or already paused), EUNAVAILABLE.
func (r *Runtime) Pause(ctx context.Context, lease string) error {
	c, err := r.lookup(ctx, lease)
	if err != nil {
		return err
	}
	cctx, cancel := r.call(ctx)
	defer cancel()
	if _, err := r.cli.ContainerPause(cctx, c.ID, client.ContainerPauseOptions{}); err != nil {
		return wrap(cctx, "pause container", "lease "+lease, err)
	}
	r.log.Info("lease container paused", "lease", lease, "container", shortID(c.ID))
	return nil
}

// Unpause resumes a paused container. Errors: ENOTFOUND, ECONFLICT (not
// paused), EUNAVAILABLE.
func (r *Runtime) Unpause(ctx context.Context, lease string) error {
	c, err := r.lookup(ctx, lease)
	if err != nil {
		return err
	}
	cctx, cancel := r.call(ctx)
	defer cancel()
	if _, err := r.cli.ContainerUnpause(cctx, c.ID, client.ContainerUnpauseOptions{}); err != nil {
		return wrap(cctx, "unpause container", "lease "+lease, err)
	}
	r.log.Info("lease container unpaused", "lease", lease, "container", shortID(c.ID))
	return nil
}

// Remove kills and deletes the lease's container with its filesystem (and
// the named volume of a lease created by an earlier version). It is
// idempotent: a lease with no container left is not an error, so the
// miner can retry it. Errors: EUNAVAILABLE.
func (r *Runtime) Remove(ctx context.Context, lease string) error {
	c, err := r.lookup(ctx, lease)
	switch {
	case market.ErrorCode(err) == market.ENOTFOUND:
	case err != nil:
		return err
	default:
		cctx, cancel := r.call(ctx)
		defer cancel()
		_, err := r.cli.ContainerRemove(cctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			return wrap(cctx, "remove container", "lease "+lease, err)
		}
		r.log.Info("lease container removed", "lease", lease, "container", shortID(c.ID))
	}
	return r.removeVolume(ctx, lease)
}

// removeVolume deletes the named volume earlier versions created for the
// lease's volume path, if it exists and is ours. Current leases have none.
func (r *Runtime) removeVolume(ctx context.Context, lease string) error {
	ctx, cancel := r.call(ctx)
	defer cancel()
	name := legacyVolumeName(r.cfg.Instance, lease)
	v, err := r.cli.VolumeInspect(ctx, name, client.VolumeInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return wrap(ctx, "inspect volume", "lease "+lease, err)
	}
	if v.Volume.Labels[LabelMiner] != r.cfg.Instance || v.Volume.Labels[LabelLease] != lease {
		return nil // not ours: leave it
	}
	if _, err := r.cli.VolumeRemove(ctx, name, client.VolumeRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return wrap(ctx, "remove volume", "lease "+lease, err)
	}
	return nil
}

// List returns this instance's lease containers in any state, for
// reconciliation when the miner starts. Errors: EUNAVAILABLE.
func (r *Runtime) List(ctx context.Context) ([]Container, error) {
	items, err := r.listOwn(ctx, false)
	if err != nil {
		return nil, err
	}
	out := make([]Container, 0, len(items))
	for _, s := range items {
		c := Container{
			ID:      s.ID,
			LeaseID: s.Labels[LabelLease],
			Image:   s.Image,
			State:   State(s.State),
			Created: time.Unix(s.Created, 0).UTC(),
		}
		if len(s.Names) > 0 {
			c.Name = strings.TrimPrefix(s.Names[0], "/")
		}
		c.SSHPort, _ = strconv.Atoi(s.Labels[LabelSSHPort])
		out = append(out, c)
	}
	return out, nil
}

// listOwn lists this instance's lease containers in any state, with the
// size of their writable layers when size is set (the engine then walks
// every layer). Errors: EUNAVAILABLE.
func (r *Runtime) listOwn(ctx context.Context, size bool) ([]container.Summary, error) {
	ctx, cancel := r.call(ctx)
	defer cancel()
	f := client.Filters{}.Add("label", LabelManaged+"=true", LabelMiner+"="+r.cfg.Instance)
	res, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Size: size, Filters: f})
	if err != nil {
		what := "list containers"
		if size {
			what = "measure containers"
		}
		return nil, wrap(ctx, what, "lease containers", err)
	}
	out := res.Items[:0]
	for _, s := range res.Items {
		// The filter is the engine's; check again so a daemon that ignored
		// it cannot make one miner act on another's containers.
		if s.Labels[LabelManaged] == "true" && s.Labels[LabelMiner] == r.cfg.Instance && validLeaseID(s.Labels[LabelLease]) {
			out = append(out, s)
		}
	}
	return out, nil
}

// portBusy reports whether the container's published SSH port is held by
// another listener on this host (the runtime and the engine share a host).
func portBusy(c container.InspectResponse) (int, bool) {
	if c.HostConfig == nil {
		return 0, false
	}
	b := c.HostConfig.PortBindings[containerPort]
	if len(b) == 0 {
		return 0, false
	}
	port, err := strconv.Atoi(b[0].HostPort)
	if err != nil {
		return 0, false
	}
	host := "0.0.0.0"
	if b[0].HostIP.IsValid() {
		host = b[0].HostIP.String()
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, b[0].HostPort))
	if err != nil {
		return port, errors.Is(err, syscall.EADDRINUSE)
	}
	l.Close()
	return port, false
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
