package main

import (
	"context"

	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/docker"
	"github.com/nicompute/nicompute/internal/miner"
)

// dockerRuntime adapts docker.Runtime to miner.Runtime.
type dockerRuntime struct {
	rt            *docker.Runtime
	simulatedGPUs bool
	files         []docker.File
}

var _ miner.Runtime = dockerRuntime{}

func fromDocker(c docker.Container) miner.Container {
	return miner.Container{ID: c.ID, LeaseID: c.LeaseID, Image: c.Image, State: string(c.State), SSHPort: c.SSHPort, Created: c.Created}
}

func (d dockerRuntime) Create(ctx context.Context, s miner.ContainerSpec) (miner.Container, error) {
	res := s.Resources
	if d.simulatedGPUs {
		res.GPUs = nil // recorded on the lease, absent from the host
	}
	spec := docker.Spec{
		LeaseID: s.LeaseID, Image: s.Image, Resources: res, SSHPort: s.SSHPort, Ports: s.Ports,
		AuthorizedKeys: s.AuthorizedKeys, Password: s.Password, VolumePath: s.VolumePath,
	}
	if s.CacheDir != "" {
		spec.Cache = &docker.BindMount{Source: s.CacheDir, Target: s.CacheTarget}
	}
	c, err := d.rt.Create(ctx, spec)
	if err == nil && len(d.files) > 0 {
		if err = d.rt.CopyFiles(ctx, s.LeaseID, d.files); err != nil {
			_ = d.rt.Remove(context.WithoutCancel(ctx), s.LeaseID)
			return miner.Container{}, err
		}
	}
	return fromDocker(c), err
}

func (d dockerRuntime) Start(ctx context.Context, lease string) error { return d.rt.Start(ctx, lease) }
func (d dockerRuntime) Restart(ctx context.Context, lease string) error {
	return d.rt.Restart(ctx, lease)
}
func (d dockerRuntime) Pause(ctx context.Context, lease string) error { return d.rt.Pause(ctx, lease) }
func (d dockerRuntime) Unpause(ctx context.Context, lease string) error {
	return d.rt.Unpause(ctx, lease)
}
func (d dockerRuntime) Remove(ctx context.Context, lease string) error {
	return d.rt.Remove(ctx, lease)
}
func (d dockerRuntime) Ping(ctx context.Context) error { return d.rt.Ping(ctx) }

func (d dockerRuntime) HasImage(ctx context.Context, image string) (bool, error) {
	return d.rt.HasImage(ctx, image)
}

func (d dockerRuntime) PullImage(ctx context.Context, image string, progress func(miner.PullProgress)) error {
	return d.rt.PullImage(ctx, image, func(p docker.PullProgress) {
		if progress != nil {
			progress(miner.PullProgress(p))
		}
	})
}

func (d dockerRuntime) SetAuthorizedKeys(ctx context.Context, lease string, keys []ssh.PublicKey) error {
	return d.rt.SetAuthorizedKeys(ctx, lease, keys)
}

func (d dockerRuntime) Inspect(ctx context.Context, lease string) (miner.Container, error) {
	c, err := d.rt.Inspect(ctx, lease)
	return fromDocker(c), err
}

func (d dockerRuntime) List(ctx context.Context) ([]miner.Container, error) {
	cs, err := d.rt.List(ctx)
	out := make([]miner.Container, 0, len(cs))
	for _, c := range cs {
		out = append(out, fromDocker(c))
	}
	return out, err
}

func (d dockerRuntime) DiskQuota(ctx context.Context) (bool, error) { return d.rt.DiskQuota(ctx) }
func (d dockerRuntime) DiskUsage(ctx context.Context) (map[string]int64, error) {
	return d.rt.DiskUsage(ctx)
}

func (d dockerRuntime) EngineVersion(ctx context.Context) (string, error) {
	info, err := d.rt.Info(ctx)
	return info.ServerVersion, err
}

func (dockerRuntime) ValidateImage(ref string) (string, error) { return docker.ValidateImage(ref) }
func (dockerRuntime) ParseSSHKeys(text string) ([]ssh.PublicKey, error) {
	return docker.ParseSSHKeys(text)
}
func (dockerRuntime) ValidateVolumePath(p string) error { return docker.ValidateVolumePath(p) }
func (dockerRuntime) CheckDockerfile(text string) error { return docker.CheckDockerfile(text) }
