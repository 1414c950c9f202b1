package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/nicompute/nicompute/internal/sdnotify"
	"github.com/nicompute/nicompute/internal/selfupdate"
	"github.com/nicompute/nicompute/internal/version"
)

// updateFlags are --auto-update and its --update.* settings.
type updateFlags struct {
	auto     bool
	url      string
	pubkey   string
	interval time.Duration
	binary   string
}

func (u *updateFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&u.auto, "auto-update", false, "install newer signed releases from --update.url and restart into them (a miner waits until no allocation runs; leases keep running)")
	// SN27's parser spells it --auto_update; accept both so its command
	// lines carry over.
	fs.BoolVar(&u.auto, "auto_update", false, "same as --auto-update")
	_ = fs.MarkHidden("auto_update")
	fs.StringVar(&u.url, "update.url", selfupdate.ReleaseURL, "release manifest URL (its signature is URL.sig)")
	fs.StringVar(&u.pubkey, "update.pubkey", "", "base64 Ed25519 public key trusted for releases, besides the key built into this binary")
	fs.DurationVar(&u.interval, "update.interval", time.Hour, "time between release checks")
	fs.StringVar(&u.binary, "update.binary", "", "binary to update (default: this executable)")
	_ = fs.MarkHidden("update.binary")
}

// daemonFlags are the operations flags every long-running role shares.
type daemonFlags struct {
	obs observeFlags
	upd updateFlags
}

func (d *daemonFlags) register(fs *pflag.FlagSet, dashboard bool) {
	d.obs.register(fs, dashboard)
	d.upd.register(fs)
}

// updater is the auto-update side of a daemon: the binary, the pending
// update it booted into (if any) and the feed poller.
type updater struct {
	exe     string
	pending *selfupdate.Pending
	u       *selfupdate.Updater
}

// errRestart asks the role command to restart the process (after an
// update or a rollback).
var errRestart = errors.New("restart")

// bootUpdater checks the flags, and, when the last update left its new
// binary unproven twice, rolls it back (errRestart: run the previous
// binary). It returns nil when --auto-update is off.
func (a *app) bootUpdater(f updateFlags) (*updater, error) {
	if !f.auto {
		return nil, nil
	}
	if f.url == "" {
		// SN27 operators pass --auto-update out of habit; without a feed
		// there is nothing to poll, which is not worth refusing to start.
		a.logger().Warn("auto-update is off: this build names no release feed; set --update.url")
		return nil, nil
	}
	if f.interval < time.Minute {
		return nil, usageErr("--update.interval must be at least 1m")
	}
	keys, err := selfupdate.ParseKeys(selfupdate.ReleaseKey, f.pubkey)
	if err != nil {
		return nil, usageErr("--update.pubkey: %v", err)
	}
	if len(keys) == 0 {
		return nil, usageErr("--auto-update needs a trusted key: this build has none built in, so pass --update.pubkey")
	}
	exe := f.binary
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("auto-update: find own binary: %w", err)
		}
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return nil, fmt.Errorf("auto-update: %w", err)
	}
	log := a.logger().With("component", "update")
	pending, rolledBack, err := selfupdate.Boot(exe)
	if err != nil {
		return nil, fmt.Errorf("auto-update: %w", err)
	}
	if rolledBack {
		log.Error("the new release did not start twice; the previous binary is back", "release", pending.To, "previous", pending.From)
		return &updater{exe: exe}, errRestart
	}
	u, err := selfupdate.New(selfupdate.Config{URL: f.url, Keys: keys, Current: version.Version, Exe: exe,
		Companions: []string{"nicompute-pog"}, Log: log})
	if err != nil {
		return nil, usageErr("--auto-update: %v", err)
	}
	if pending != nil {
		log.Info("starting a newly installed release", "release", pending.To, "previous", pending.From)
	}
	return &updater{exe: exe, pending: pending, u: u}, nil
}

// failed is called when the daemon could not start: a pending update is
// rolled back (errRestart), anything else returns err.
func (up *updater) failed(a *app, err error) error {
	if up == nil || up.pending == nil {
		return err
	}
	if rerr := selfupdate.Rollback(up.exe); rerr != nil {
		return errors.Join(err, fmt.Errorf("roll back release %s: %w", up.pending.To, rerr))
	}
	a.logger().Error("the new release failed to start; the previous binary is back", "release", up.pending.To, "previous", up.pending.From, "err", err)
	return errRestart
}

// daemon is a started service.
type daemon interface {
	Done() <-chan struct{}
	Close() error
}

// lifecycle runs a started daemon until a signal, its own end or an
// update: it commits a pending update (the new binary started), tells the
// service manager it is ready, pings its watchdog while the daemon runs,
// polls the release feed, and says it is stopping. quiesce, when set, is
// called before an update is installed (the miner waits until no
// allocation runs). It returns errRestart after installing an update.
func (a *app) lifecycle(ctx context.Context, role string, d daemon, up *updater, f updateFlags, quiesce func(context.Context) (func(), error)) error {
	log := a.logger()
	notify := sdnotify.FromEnv(os.Getenv)
	if up != nil && up.pending != nil {
		if err := selfupdate.Commit(up.exe); err != nil {
			log.Warn("auto-update: record the started release", "err", err)
		} else {
			log.Info("release started and kept", "release", up.pending.To)
		}
	}
	if err := notify.Notify(sdnotify.Ready, sdnotify.Status(role+" running, "+version.Get().String())); err != nil {
		log.Warn("service manager not notified", "err", err)
	}
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	unhealthy := make(chan error, 1)
	if iv, ok := sdnotify.WatchdogInterval(os.Getenv, os.Getpid()); ok {
		wg.Go(func() {
			healthy := func() bool {
				select {
				case <-d.Done():
					return false
				default:
					return true
				}
			}
			if err := notify.RunWatchdog(wctx, iv, healthy); err != nil {
				unhealthy <- err
			}
		})
	}
	installed := make(chan string, 1)
	if up != nil && up.u != nil {
		wg.Go(func() {
			up.u.Run(wctx, f.interval, func(ctx context.Context, s *selfupdate.Staged) error {
				resume := func() {}
				if quiesce != nil {
					qctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
					r, err := quiesce(qctx)
					cancel()
					if err != nil {
						return fmt.Errorf("allocations still running after 10 minutes; retrying at the next check: %w", err)
					}
					resume = r
				}
				if err := selfupdate.Install(s, version.Version); err != nil {
					resume()
					return err
				}
				log.Info("release installed; restarting into it", "release", s.Version, "previous", version.Version)
				installed <- s.Version
				stop()
				return nil
			})
		})
	}
	restart := false
	select {
	case <-ctx.Done():
		log.Info("signal received; stopping the " + role)
	case <-d.Done():
	case <-installed:
		restart = true
	case err := <-unhealthy:
		log.Error("stopping", "err", err)
	}
	_ = notify.Notify(sdnotify.Stopping)
	stop()
	wg.Wait()
	err := d.Close()
	if restart {
		return errRestart
	}
	return err
}

// restartProcess replaces this process with exe and the same arguments,
// unless a service manager runs it: then it exits with code 75 and the
// manager starts the (new) binary.
func restartProcess(exe string) error {
	for _, v := range []string{"INVOCATION_ID", "NOTIFY_SOCKET", "pm_id"} {
		if os.Getenv(v) != "" {
			return &exitError{code: 75, err: errors.New("restarting: the service manager starts the installed release")}
		}
	}
	if err := syscall.Exec(exe, os.Args, os.Environ()); err != nil {
		return fmt.Errorf("restart into %s: %w", exe, err)
	}
	return nil
}

// serveDaemon serves the observer, runs the daemon's lifecycle and, after
// an update, restarts the process.
func (a *app) serveDaemon(ctx context.Context, role string, d daemon, obs *observer, up *updater, f daemonFlags, quiesce func(context.Context) (func(), error)) error {
	if err := a.publish(obs, f.obs); err != nil {
		return errors.Join(err, d.Close())
	}
	return a.restartIf(up, a.lifecycle(ctx, role, d, up, f.upd, quiesce))
}

// restartIf restarts the process into up's binary when err is errRestart.
func (a *app) restartIf(up *updater, err error) error {
	if !errors.Is(err, errRestart) || up == nil {
		return err
	}
	restart := a.restart
	if restart == nil {
		restart = restartProcess
	}
	return restart(up.exe)
}

// startOps prepares a daemon's operations before it starts: the updater
// (which may roll back and restart at once) and the observer of role
// (nil without --metrics.listen). The caller closes the observer.
func (a *app) startOps(role string, f daemonFlags) (*updater, *observer, error) {
	up, err := a.bootUpdater(f.upd)
	if err != nil {
		return nil, nil, a.restartIf(up, err)
	}
	obs, err := a.startObserver(role, f.obs)
	if err != nil {
		return nil, nil, err
	}
	return up, obs, nil
}
