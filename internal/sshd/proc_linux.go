package sshd

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// procExit is how a session's process ended.
type procExit struct {
	code     int         // exit code when !signaled
	signaled bool        // killed by sig
	sig      unix.Signal // when signaled
	core     bool        // core dumped
}

func exitFromStatus(ws unix.WaitStatus) procExit {
	if ws.Signaled() {
		return procExit{signaled: true, sig: ws.Signal(), core: ws.CoreDump()}
	}
	return procExit{code: ws.ExitStatus()}
}

// procs starts session processes and collects their exit statuses. With
// reaping on it also reaps every other child that exits, such as orphans
// re-parented to a server running as PID 1; it then owns all waiting, so
// exec.Cmd.Wait is never used.
type procs struct {
	reap bool
	sigc chan os.Signal
	done chan struct{}
	wg   sync.WaitGroup

	// mu is held across cmd.Start and each wait4 sweep, so that a child is
	// registered before it can be reaped. mu protects the following.
	mu      sync.Mutex
	waiting map[int]chan procExit
}

func newProcs(reap bool) *procs {
	p := &procs{reap: reap}
	if !reap {
		return p
	}
	p.sigc = make(chan os.Signal, 1)
	p.done = make(chan struct{})
	p.waiting = map[int]chan procExit{}
	signal.Notify(p.sigc, unix.SIGCHLD)
	p.wg.Go(p.reapLoop)
	return p
}

// close stops the reaper.
func (p *procs) close() {
	if !p.reap {
		return
	}
	signal.Stop(p.sigc)
	close(p.done)
	p.wg.Wait()
}

func (p *procs) reapLoop() {
	for {
		select {
		case <-p.done:
			return
		case <-p.sigc:
		}
		p.sweep()
	}
}

// sweep reaps every child that has exited and hands the statuses of
// session processes to their waiters.
func (p *procs) sweep() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if ws.Stopped() || ws.Continued() {
			continue
		}
		if ch, ok := p.waiting[pid]; ok {
			ch <- exitFromStatus(ws)
			delete(p.waiting, pid)
		}
	}
}

// start starts cmd and returns a function that waits for it to exit.
func (p *procs) start(cmd *exec.Cmd) (wait func() procExit, err error) {
	if !p.reap {
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return func() procExit {
			err := cmd.Wait()
			if cmd.ProcessState != nil {
				if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
					return exitFromStatus(unix.WaitStatus(ws))
				}
			}
			if err != nil {
				return procExit{code: 255}
			}
			return procExit{}
		}, nil
	}
	p.mu.Lock()
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return nil, err
	}
	ch := make(chan procExit, 1)
	p.waiting[cmd.Process.Pid] = ch
	p.mu.Unlock()
	// The child may have exited before it was registered; its SIGCHLD
	// then found nothing to hand over, so look once more.
	p.sweep()
	return func() procExit {
		e := <-ch
		cmd.Process.Release()
		return e
	}, nil
}

// rfcSignals are the signal names of RFC 4254 §6.10.
func rfcSignals() map[string]unix.Signal {
	return map[string]unix.Signal{
		"ABRT": unix.SIGABRT, "ALRM": unix.SIGALRM, "FPE": unix.SIGFPE,
		"HUP": unix.SIGHUP, "ILL": unix.SIGILL, "INT": unix.SIGINT,
		"KILL": unix.SIGKILL, "PIPE": unix.SIGPIPE, "QUIT": unix.SIGQUIT,
		"SEGV": unix.SIGSEGV, "TERM": unix.SIGTERM, "USR1": unix.SIGUSR1,
		"USR2": unix.SIGUSR2,
	}
}

// signalByName maps an RFC 4254 signal name to a signal.
func signalByName(name string) (unix.Signal, bool) {
	s, ok := rfcSignals()[name]
	return s, ok
}

// signalName is the exit-signal name of sig: the RFC 4254 name, or for
// other signals their name with the "@openssh.com" suffix the RFC's
// extension rule asks for.
func signalName(sig unix.Signal) string {
	name := strings.TrimPrefix(unix.SignalName(sig), "SIG")
	if _, ok := rfcSignals()[name]; ok {
		return name
	}
	if name == "" {
		name = "UNKNOWN"
	}
	return name + "@openssh.com"
}
