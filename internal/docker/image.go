package docker

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"

	"github.com/nicompute/nicompute/internal/market"
)

// PullProgress is how far a pull has come: the image's layers (those the
// engine has announced so far) and the bytes downloaded of the layers whose
// size is known. Layers already present count as done, with no bytes.
type PullProgress struct {
	Layers, LayersDone int
	Bytes, BytesTotal  int64
}

// HasImage reports whether image (a canonical reference, see
// ValidateImage) is present on the engine. Errors: EUNAVAILABLE.
func (r *Runtime) HasImage(ctx context.Context, image string) (bool, error) {
	ctx, cancel := r.call(ctx)
	defer cancel()
	_, err := r.cli.ImageInspect(ctx, image)
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	}
	return false, wrap(ctx, "inspect image", "image "+image, err)
}

// PullImage pulls image from its registry, bounded by Config.PullTimeout,
// calling progress (when not nil) after every progress message of the
// engine. Errors: ENOTFOUND (the registry does not have it), EUNAVAILABLE
// (engine down, registry unreachable, or the pull failed).
func (r *Runtime) PullImage(ctx context.Context, image string, progress func(PullProgress)) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PullTimeout)
	defer cancel()
	resp, err := r.cli.ImagePull(ctx, image, client.ImagePullOptions{})
	if err == nil {
		t := newPullTracker()
		for m, merr := range resp.JSONMessages(ctx) {
			if merr != nil {
				err = merr
				break
			}
			if m.Error != nil {
				err = fmt.Errorf("engine: %s", m.Error.Message)
				if m.Error.Code == 404 {
					err = fmt.Errorf("%w: %w", cerrdefs.ErrNotFound, err)
				}
				break
			}
			if t.update(m) && progress != nil {
				progress(t.progress())
			}
		}
		resp.Close()
	}
	if err == nil {
		return nil
	}
	switch {
	case client.IsErrConnectionFailed(err):
		return wrap(ctx, "pull image", "image "+image, err)
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("pull image: %w (%w)", market.Errorf(market.ENOTFOUND, "image %s is not present on this miner and its registry does not have it", image), err)
	default:
		return fmt.Errorf("pull image: %w (%w)", market.Errorf(market.EUNAVAILABLE, "image %s is not present on this miner and could not be pulled", image), err)
	}
}

// ensureImage makes image present locally, pulling it when missing. It
// never builds. Errors as HasImage and PullImage.
func (r *Runtime) ensureImage(ctx context.Context, image string) error {
	ok, err := r.HasImage(ctx, image)
	if err != nil || ok {
		return err
	}
	r.log.Info("pulling image", "image", image)
	if err := r.PullImage(ctx, image, nil); err != nil {
		return err
	}
	r.log.Info("image pulled", "image", image)
	return nil
}

// maxVolumesNamed bounds the volumes an error names.
const maxVolumesNamed = 5

// checkImageVolumes refuses an image that declares volumes (VOLUME in its
// Dockerfile): the engine would give the container an anonymous volume for
// each, outside its writable layer, so beyond its disk size, any storage
// quota and the miner's measurement. Errors: EINVALID, EUNAVAILABLE.
func (r *Runtime) checkImageVolumes(ctx context.Context, image string) error {
	ctx, cancel := r.call(ctx)
	defer cancel()
	res, err := r.cli.ImageInspect(ctx, image)
	if err != nil {
		return wrap(ctx, "inspect image", "image "+image, err)
	}
	if res.Config == nil || len(res.Config.Volumes) == 0 {
		return nil
	}
	vols := slices.Sorted(maps.Keys(res.Config.Volumes))
	if len(vols) > maxVolumesNamed {
		vols = append(vols[:maxVolumesNamed], "…")
	}
	return market.Errorf(market.EINVALID, "image %s declares volumes (%s), whose writes no lease disk size would bound; this miner does not run it",
		image, strings.Join(vols, ", "))
}

// pullTracker follows the per-layer messages of a pull.
type pullTracker struct {
	layers map[string]*layerState
	order  []string
}

type layerState struct {
	current, total int64
	downloaded     bool
	done           bool
}

func newPullTracker() *pullTracker { return &pullTracker{layers: map[string]*layerState{}} }

// update applies one message and reports whether the progress changed.
// Messages about the image as a whole (its tag, digest, final status) carry
// no layer status and are ignored.
func (t *pullTracker) update(m jsonstream.Message) bool {
	status := m.Status
	if strings.HasPrefix(status, "Retrying in ") {
		status = "Retrying"
	}
	switch status {
	case "Pulling fs layer", "Waiting", "Downloading", "Verifying Checksum", "Download complete",
		"Extracting", "Pull complete", "Already exists", "Retrying":
	default:
		return false
	}
	if m.ID == "" {
		return false
	}
	l := t.layers[m.ID]
	if l == nil {
		if len(t.layers) >= maxPullLayers {
			return false
		}
		l = &layerState{}
		t.layers[m.ID] = l
		t.order = append(t.order, m.ID)
	}
	switch status {
	case "Downloading":
		if p := m.Progress; p != nil && p.Total > 0 && p.Current >= 0 {
			l.total, l.current = p.Total, min(p.Current, p.Total)
		}
	case "Verifying Checksum", "Download complete", "Extracting":
		l.downloaded = true
	case "Pull complete", "Already exists":
		l.downloaded, l.done = true, true
	case "Retrying":
		l.current = 0
	}
	if l.downloaded {
		l.current = l.total
	}
	return true
}

// maxPullLayers bounds the layers a tracker follows (real images have
// tens); a stream announcing more is not believed further.
const maxPullLayers = 4096

func (t *pullTracker) progress() PullProgress {
	var p PullProgress
	for _, id := range t.order {
		l := t.layers[id]
		p.Layers++
		if l.done {
			p.LayersDone++
		}
		p.Bytes += l.current
		p.BytesTotal += l.total
	}
	return p
}
