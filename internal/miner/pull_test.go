package miner

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/protocol"
)

// imageReq asks for a lease running image, with a request timeout.
func imageReq(tb testing.TB, image string) *protocol.Allocate {
	_, key := sshPub(tb)
	a := allocReq(newRenter(tb), key, market.Requirement{CPUs: 1})
	a.DockerRequirement.BaseImage = image
	return a
}

// callWithin sends req with the given request timeout and returns the
// output, the refusal status (200: none) and how long the answer took.
func (tm *testMiner) callWithin(tb testing.TB, req *protocol.Allocate, timeout time.Duration) (protocol.Output, int, time.Duration) {
	tb.Helper()
	start := time.Now()
	var resp protocol.Allocate
	_, err := protocol.CallAllocate(context.Background(), tm.d, tm.target(), req, &resp, timeout)
	st := 200
	if err != nil {
		if st = axon.StatusCode(err); st == 0 {
			tb.Fatalf("call: %v", err)
		}
	}
	return resp.Output, st, time.Since(start)
}

// TestImagePulledOnceWithoutBlocking: a missing image is pulled by one pull
// however many requests want it; requests that cannot wait for it are
// refused at once with its progress (not held for the pull's duration),
// requests for images already present go through meanwhile, and once the
// pull is done the image is reused.
func TestImagePulledOnceWithoutBlocking(t *testing.T) {
	w := newWorld(t)
	const img = "alpine:3.20"
	release := make(chan struct{})
	started := make(chan struct{}, 8)
	var logs nictest.SyncBuffer
	tm := startTestMiner(t, w, func(c *Config, d *Deps) {
		c.Log = slog.New(slog.NewTextHandler(&logs, nil))
		rt := d.Runtime.(*fakeRuntime)
		rt.setAbsent(img)
		rt.pullHook = func(ctx context.Context, image string, progress func(PullProgress)) error {
			started <- struct{}{}
			progress(PullProgress{Layers: 4, LayersDone: 1, Bytes: 1 << 30, BytesTotal: 2 << 30})
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	<-started // the prefetch at start

	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Go(func() {
			// 3 s leaves less than pullReserve: no waiting.
			out, st, took := tm.callWithin(t, imageReq(t, img), 3*time.Second)
			if st != 503 || !strings.Contains(out.Error, "being pulled") || !strings.Contains(out.Error, "1.00 GiB of 2.00 GiB") || took > 2*time.Second {
				t.Errorf("request during the pull: %d %+v after %v; want a prompt 503 refusal with the progress", st, out, took)
			}
		})
	}
	wg.Wait()
	if out, st, _ := tm.callWithin(t, imageReq(t, "busybox"), 10*time.Second); st != 200 || !out.Status {
		t.Fatalf("allocation of a present image during the pull: %d %+v", st, out)
	}
	if n := tm.rt.pulls.Load(); n != 1 {
		t.Fatalf("%d pulls started, want 1", n)
	}

	// A request with time to spare waits for the pull to finish.
	go func() {
		time.Sleep(300 * time.Millisecond)
		close(release)
	}()
	if out, st, _ := tm.callWithin(t, imageReq(t, img), 15*time.Second); st != 200 || !out.Status {
		t.Fatalf("allocation waiting for the pull: %d %+v", st, out)
	}
	if out, st, _ := tm.callWithin(t, imageReq(t, img), 10*time.Second); st != 200 || !out.Status {
		t.Fatalf("allocation after the pull: %d %+v", st, out)
	}
	if n := tm.rt.pulls.Load(); n != 1 {
		t.Fatalf("%d pulls, want the image reused", n)
	}
	for _, want := range []string{"pulling image", "1.00 GiB of 2.00 GiB downloaded, 1 of 4 layers done", "image pulled"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

// TestImagePullFailure: a pull the engine cannot do is a clear refusal;
// requests within PullRetry get that reason without a new pull; the next
// request after it tries again.
func TestImagePullFailure(t *testing.T) {
	w := newWorld(t)
	const img = "alpine:3.20"
	// The miner's clock, moved past the retry interval by the test rather
	// than by sleeping, so that a slow machine cannot let the interval
	// pass before the first request.
	var skew atomic.Int64
	tm := startTestMiner(t, w, func(c *Config, d *Deps) {
		c.PullRetry = time.Minute
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		rt := d.Runtime.(*fakeRuntime)
		rt.setAbsent(img)
		rt.pullHook = func(context.Context, string, func(PullProgress)) error {
			return market.Errorf(market.EUNAVAILABLE, "image %s is not present on this miner and could not be pulled", img)
		}
	})
	// Wait until the prefetch at start has failed, not merely started: a
	// request during the pull would wait for it and get its error alone.
	failed := func() bool {
		p := tm.svc.pulls
		p.mu.Lock()
		defer p.mu.Unlock()
		pl := p.pulls[img]
		if pl == nil {
			return false
		}
		select {
		case <-pl.done:
			return true
		default:
			return false
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !failed() {
		if time.Now().After(deadline) {
			t.Fatal("the prefetch of an absent image did not fail")
		}
		time.Sleep(10 * time.Millisecond)
	}
	out, st, _ := tm.callWithin(t, imageReq(t, img), 10*time.Second)
	if st != 503 || !strings.Contains(out.Error, "could not be pulled") || !strings.Contains(out.Error, "tries again in") {
		t.Fatalf("request after a failed pull: %d %+v", st, out)
	}
	if n := tm.rt.pulls.Load(); n != 1 {
		t.Fatalf("%d pulls within the retry interval, want 1", n)
	}
	skew.Store(int64(61 * time.Second))
	out, st, _ = tm.callWithin(t, imageReq(t, img), 15*time.Second)
	if st != 503 || !strings.Contains(out.Error, "could not be pulled") {
		t.Fatalf("request after the retry interval: %d %+v", st, out)
	}
	if n := tm.rt.pulls.Load(); n != 2 {
		t.Fatalf("%d pulls after the retry interval, want 2", n)
	}
	if len(tm.live(t)) != 0 || tm.rt.creates.Load() != 0 {
		t.Fatal("a refused pull left a lease or container")
	}
}
