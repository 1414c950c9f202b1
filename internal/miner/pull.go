package miner

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// SN27Images are the images SN27's Python validators and register_api ask
// for in docker_requirement.base_image (neuralinternet/SN27 1.9.0: the
// validator's Proof-of-GPU test lease asks for the 2.7.0 image, register_api
// and register.py rent with the 2.5.1 one, as validators before 1.8.8 also
// tested with). A miner offers them unless its operator says otherwise.
func SN27Images() []string {
	return []string{
		"pytorch/pytorch:2.7.0-cuda12.6-cudnn9-runtime",
		"pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
	}
}

// Defaults of the image puller.
const (
	// DefaultPullRetry is how long a failed pull is answered from memory
	// before a request may start another.
	DefaultPullRetry = time.Minute
	// pullReserve is what an allocation needs after its image is present
	// (create, start, answer): a request waits for a pull only while more
	// than this is left of it.
	pullReserve = 10 * time.Second
	// pullLogEvery is how often a running pull logs its progress.
	pullLogEvery = 10 * time.Second
)

// PullProgress is how far an image pull has come (see Runtime.PullImage).
type PullProgress struct {
	Layers, LayersDone int
	Bytes, BytesTotal  int64
}

func (p PullProgress) String() string {
	if p.Layers == 0 {
		return "starting"
	}
	return fmt.Sprintf("%s of %s downloaded, %d of %d layers done", gib(p.Bytes), gib(p.BytesTotal), p.LayersDone, p.Layers)
}

func gib(n int64) string { return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30)) }

// imagePuller makes the images leases run present on the engine. Images are
// large (a PyTorch image is several GiB) and take minutes to pull, longer
// than SN27's validators wait for an allocation, so a pull never runs
// inside a request and never holds a lease's resources:
//
//   - at most one pull per image runs at a time; every request that needs
//     the image waits on that one;
//   - it runs on the service's context, not the request's, so a request
//     that gives up does not cancel it, and the next request finds it
//     further along or done;
//   - a request waits only while it has more than pullReserve left, then
//     gets a clear refusal ("being pulled, n of m GiB"), so an axon worker
//     is never held for a pull's whole duration and the caller may retry;
//   - a failed pull is remembered for Retry: requests in that time get its
//     reason at once instead of starting pulls that fail the same way;
//   - progress goes to the log when the first report comes (which names
//     the image's size) and then every pullLogEvery.
//
// At start the miner pulls, in the background, the images it offers that
// are missing (prefetch), so the first validator test finds them present.
type imagePuller struct {
	rt    Runtime
	log   *slog.Logger
	now   func() time.Time
	retry time.Duration

	ctx    context.Context // ends when the service closes
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu protects pulls and the fields of every pull.
	mu    sync.Mutex
	pulls map[string]*pull // running, or failed within retry
}

// pull is one pull of an image.
type pull struct {
	done     chan struct{} // closed when the pull ended
	progress PullProgress
	err      error // the refusal of a failed pull
	failedAt time.Time
}

func newImagePuller(rt Runtime, retry time.Duration, now func() time.Time, log *slog.Logger) *imagePuller {
	ctx, cancel := context.WithCancel(context.Background())
	return &imagePuller{rt: rt, log: log.With("component", "images"), now: now, retry: retry,
		ctx: ctx, cancel: cancel, pulls: map[string]*pull{}}
}

// close stops running pulls and waits for them.
func (p *imagePuller) close() {
	p.cancel()
	p.wg.Wait()
}

// ensure returns once image is present, pulling it if needed, or refuses:
// EUNAVAILABLE while the pull runs longer than ctx allows waiting for,
// the pull's own error (ENOTFOUND, EUNAVAILABLE) when it failed.
func (p *imagePuller) ensure(ctx context.Context, image string) error {
	ok, err := p.rt.HasImage(ctx, image)
	if err != nil || ok {
		return err
	}
	pl, err := p.start(image)
	if err != nil {
		return err
	}
	var expired <-chan time.Time
	if deadline, ok := ctx.Deadline(); ok {
		t := time.NewTimer(time.Until(deadline) - pullReserve)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-pl.done:
		return pl.err
	case <-expired:
	case <-ctx.Done():
	}
	p.mu.Lock()
	progress := pl.progress
	p.mu.Unlock()
	return market.Errorf(market.EUNAVAILABLE, "image %s is being pulled by this miner (%s); try again in a few minutes", image, progress)
}

// prefetch starts pulling the images that are missing, without waiting.
func (p *imagePuller) prefetch(ctx context.Context, images []string) {
	for _, img := range images {
		ok, err := p.rt.HasImage(ctx, img)
		if err != nil {
			p.log.Warn("cannot tell whether an offered image is present; it is pulled when a renter asks for it", "image", img, "err", err)
			continue
		}
		if !ok {
			_, _ = p.start(img)
		}
	}
}

// start returns the running pull of image, starting one unless the last
// one failed less than retry ago, in which case its refusal is returned.
func (p *imagePuller) start(image string) (*pull, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pl := p.pulls[image]; pl != nil {
		select {
		case <-pl.done:
			if wait := pl.failedAt.Add(p.retry).Sub(p.now()); wait > 0 {
				return nil, market.Errorf(market.ErrorCode(pl.err), "%s; this miner tries again in %s", market.ErrorMessage(pl.err), wait.Round(time.Second))
			}
		default:
			return pl, nil
		}
	}
	if p.ctx.Err() != nil {
		return nil, market.Errorf(market.EUNAVAILABLE, "miner is stopping")
	}
	p.forgetExpiredLocked()
	pl := &pull{done: make(chan struct{})}
	p.pulls[image] = pl
	p.wg.Add(1)
	go p.run(image, pl)
	return pl, nil
}

// forgetExpiredLocked drops failed pulls older than retry, so that the
// table holds only the pulls running and the failures still answered from
// memory (with "*" renters may name any image).
func (p *imagePuller) forgetExpiredLocked() {
	now := p.now()
	for img, pl := range p.pulls {
		select {
		case <-pl.done:
			if !now.Before(pl.failedAt.Add(p.retry)) {
				delete(p.pulls, img)
			}
		default:
		}
	}
}

// run pulls image and records the outcome in pl.
func (p *imagePuller) run(image string, pl *pull) {
	defer p.wg.Done()
	start := p.now()
	p.log.Info("pulling image", "image", image)
	var lastLog time.Time // the first progress report is logged at once
	err := p.rt.PullImage(p.ctx, image, func(pr PullProgress) {
		p.mu.Lock()
		pl.progress = pr
		p.mu.Unlock()
		if now := p.now(); now.Sub(lastLog) >= pullLogEvery {
			lastLog = now
			p.log.Info("pulling image", "image", image, "progress", pr.String())
		}
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		delete(p.pulls, image)
		p.log.Info("image pulled", "image", image, "took", p.now().Sub(start).Round(time.Second))
	} else {
		if market.ErrorCode(err) == market.EINTERNAL {
			err = fmt.Errorf("%w (%w)", market.Errorf(market.EUNAVAILABLE, "image %s is not present on this miner and could not be pulled", image), err)
		}
		pl.err, pl.failedAt = err, p.now()
		p.log.Warn("image pull failed; renters asking for it are refused until a retry succeeds", "image", image, "retry_in", p.retry, "err", err)
	}
	close(pl.done)
}
