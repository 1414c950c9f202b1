//go:build linux

package sshd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// ptyDrainIdle is how long output is still read from a terminal after its
// shell exited, while background processes keep it open and quiet.
const ptyDrainIdle = 100 * time.Millisecond

// Limits on what a client may send in "env" requests (RFC 4254 §6.4).
const (
	maxEnvVars  = 64
	maxEnvBytes = 32 << 10
)

// Exit codes the server reports for commands it could not run; the same
// values a POSIX shell and OpenSSH use.
const (
	exitCannotExecute = 126 // found but not executable
	exitNotFound      = 127 // no such command or shell
	exitSSHError      = 255 // the session failed before the command ran
)

// session is one "session" channel (RFC 4254 §6): optional pty-req and
// env requests, then exactly one of shell, exec or subsystem.
type session struct {
	c    *conn
	ch   ssh.Channel
	reqs <-chan *ssh.Request
	log  *slog.Logger

	ctx    context.Context // cancelled when the channel or connection ends
	cancel context.CancelCauseFunc

	// Owned by the request loop.
	env      []string // accepted client "env" pairs
	envBytes int
	ptyReq   *ptyRequest
	modes    []terminalMode
	started  bool
	master   *os.File      // terminal master once a pty session started
	done     chan struct{} // closed when the started command is torn down

	// mu protects proc and exited, which the request loop (signals) and
	// the waiting goroutine share.
	mu     sync.Mutex
	proc   *os.Process
	exited bool
}

func newSession(c *conn, ch ssh.Channel, reqs <-chan *ssh.Request) *session {
	ctx, cancel := context.WithCancelCause(c.ctx)
	return &session{
		c: c, ch: ch, reqs: reqs, log: c.log,
		ctx: ctx, cancel: cancel,
		done: make(chan struct{}),
	}
}

// serve handles the channel's requests until the channel closes, then
// waits for the started command's teardown.
func (ss *session) serve() {
	defer ss.ch.Close()
	for req := range ss.reqs {
		ss.handleRequest(req)
	}
	// The channel is closed: by our teardown, by the client, or with the
	// connection. Hang up whatever still runs.
	ss.cancel(errors.New("channel closed"))
	if ss.started {
		<-ss.done
	}
}

func (ss *session) handleRequest(req *ssh.Request) {
	ok := false
	switch req.Type {
	case "pty-req":
		ok = ss.handlePTYReq(req.Payload)
	case "env":
		ok = ss.handleEnv(req.Payload)
	case "window-change":
		ok = ss.handleWindowChange(req.Payload)
	case "signal":
		ok = ss.handleSignal(req.Payload)
	case "shell", "exec", "subsystem":
		ss.handleStart(req)
		return
	}
	// x11-req, auth-agent-req@openssh.com, break and unknown requests are
	// refused.
	if req.WantReply {
		req.Reply(ok, nil)
	}
}

func (ss *session) handlePTYReq(payload []byte) bool {
	if ss.started || ss.ptyReq != nil || ss.c.restrict.noPTY {
		return false
	}
	p, modes, err := parsePTYRequest(payload)
	if err != nil {
		ss.log.Debug("bad pty-req", "err", err)
		return false
	}
	ss.ptyReq, ss.modes = &p, modes
	return true
}

func (ss *session) handleEnv(payload []byte) bool {
	var e envRequest
	if ss.started || ssh.Unmarshal(payload, &e) != nil || !acceptClientEnv(e.Name, e.Value) {
		return false
	}
	n := len(e.Name) + len(e.Value) + 2
	if len(ss.env) >= maxEnvVars || ss.envBytes+n > maxEnvBytes {
		return false
	}
	ss.env = append(ss.env, e.Name+"="+e.Value)
	ss.envBytes += n
	return true
}

func (ss *session) handleWindowChange(payload []byte) bool {
	var w windowChange
	if ss.ptyReq == nil || ssh.Unmarshal(payload, &w) != nil {
		return false
	}
	if ss.master == nil {
		ss.ptyReq.Cols, ss.ptyReq.Rows, ss.ptyReq.Width, ss.ptyReq.Height = w.Cols, w.Rows, w.Width, w.Height
		return true
	}
	if err := setWindowSize(ss.master, w); err != nil {
		ss.log.Debug("window change failed", "err", err)
		return false
	}
	return true
}

// handleSignal delivers a "signal" request (RFC 4254 §6.9) to the
// command's process, as OpenSSH does.
func (ss *session) handleSignal(payload []byte) bool {
	var r stringRequest
	if ssh.Unmarshal(payload, &r) != nil {
		return false
	}
	sig, ok := signalByName(r.Value)
	if !ok {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.proc == nil || ss.exited {
		return false
	}
	return ss.proc.Signal(sig) == nil
}

// handleStart answers shell, exec and subsystem.
func (ss *session) handleStart(req *ssh.Request) {
	reply := func(ok bool) {
		if req.WantReply {
			req.Reply(ok, nil)
		}
	}
	if ss.started {
		reply(false)
		return
	}
	var arg stringRequest
	if req.Type != "shell" {
		if err := ssh.Unmarshal(req.Payload, &arg); err != nil {
			reply(false)
			return
		}
	}
	if req.Type == "subsystem" && arg.Value != "sftp" {
		ss.log.Debug("unsupported subsystem", "name", arg.Value)
		reply(false)
		return
	}
	ss.started = true
	reply(true)
	if ss.c.srv.isShuttingDown() {
		go ss.fail(&startError{code: exitSSHError, msg: "server is shutting down", err: errShutdown})
		return
	}

	acct := ss.account()
	if req.Type == "subsystem" {
		ss.log.Info("sftp session")
		go ss.runSFTP(acct)
		return
	}
	p, err := ss.startCommand(acct, req.Type == "exec", arg.Value)
	if err != nil {
		go ss.fail(err)
		return
	}
	go ss.run(p)
}

// account describes the user the server runs as: commands run with the
// server's own identity whatever the login name.
func (ss *session) account() account {
	passwd, err := readLimited(ss.c.srv.passwdPath)
	if err != nil {
		passwd = nil
	}
	return lookupAccount(passwd, os.Getuid(), ss.c.srv.cfg.User)
}

// process is a started command and the server's ends of its stdio.
type process struct {
	cmd  *exec.Cmd
	wait func() procExit

	// With a terminal: master is read and written, tty is the child's
	// stdio, held open until the child exits.
	master, tty *os.File
	// Without: the server's ends and the child's ends of three pipes.
	stdin, stdout, stderr *os.File
	childFiles            []*os.File
}

// startError is a command that could not be started, with the exit code
// reported for it.
type startError struct {
	code int
	msg  string
	err  error
}

func (e *startError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

// startCommand starts the user's shell: a login shell for "shell", or
// `shell -c command` for "exec" (the command string is the client's, to be
// interpreted by its shell, as in OpenSSH).
func (ss *session) startCommand(acct account, isExec bool, command string) (*process, error) {
	sh, ok := resolveShell(acct.shell, isExecutable)
	if !ok {
		return nil, &startError{code: exitNotFound, msg: "no shell found (tried the passwd shell, /bin/sh, /bin/busybox)", err: fs.ErrNotExist}
	}
	cmd := &exec.Cmd{Path: sh.path, Args: []string{"-" + sh.name}}
	if isExec {
		cmd.Args = []string{sh.name, "-c", command}
	}
	cmd.Dir = "/"
	if fi, err := os.Stat(acct.home); err == nil && fi.IsDir() {
		cmd.Dir = acct.home
	}
	cmd.Env = ss.environment(acct, sh)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}

	p := &process{cmd: cmd}
	if ss.ptyReq != nil {
		master, tty, err := openPTY(*ss.ptyReq, ss.modes)
		if err != nil {
			return nil, &startError{code: exitSSHError, msg: "cannot allocate a terminal", err: err}
		}
		p.master, p.tty = master, tty
		if ss.ptyReq.Term != "" {
			cmd.Env = mergeEnv(cmd.Env, "TERM="+ss.ptyReq.Term)
		}
		cmd.Env = mergeEnv(cmd.Env, "SSH_TTY="+tty.Name())
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0
	} else {
		files, err := pipes()
		if err != nil {
			return nil, &startError{code: exitSSHError, msg: "cannot create pipes", err: err}
		}
		// files: stdin r/w, stdout r/w, stderr r/w.
		cmd.Stdin, p.stdin = files[0], files[1]
		p.stdout, cmd.Stdout = files[2], files[3]
		p.stderr, cmd.Stderr = files[4], files[5]
		p.childFiles = []*os.File{files[0], files[3], files[5]}
	}
	wait, err := ss.c.srv.procs.start(cmd)
	if err != nil {
		p.closeAll()
		code := exitSSHError
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, exec.ErrNotFound):
			code = exitNotFound
		case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.ENOEXEC):
			code = exitCannotExecute
		}
		return nil, &startError{code: code, msg: "cannot start " + sh.path, err: err}
	}
	p.wait = wait
	if p.master != nil {
		ss.master = p.master
	}
	ss.mu.Lock()
	ss.proc = cmd.Process
	ss.mu.Unlock()
	ss.log.Info("session started", "shell", sh.path, "exec", isExec, "pty", ss.ptyReq != nil, "pid", cmd.Process.Pid)
	return p, nil
}

// pipes returns three pipes as read, write, read, write, read, write.
func pipes() ([]*os.File, error) {
	var files []*os.File
	for range 3 {
		r, w, err := os.Pipe()
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, err
		}
		files = append(files, r, w)
	}
	return files, nil
}

func (p *process) closeAll() {
	for _, f := range []*os.File{p.master, p.tty, p.stdin, p.stdout, p.stderr} {
		if f != nil {
			f.Close()
		}
	}
	for _, f := range p.childFiles {
		f.Close()
	}
}

// environment is the command's environment: the server's base, then the
// session's own variables, then the client's accepted env requests.
func (ss *session) environment(acct account, sh shellCmd) []string {
	base := ss.c.srv.cfg.Env
	var own []string
	if _, ok := envValue(base, "PATH"); !ok {
		own = append(own, "PATH="+DefaultPath)
	}
	own = append(own,
		"HOME="+acct.home,
		"USER="+acct.name,
		"LOGNAME="+acct.name,
		"SHELL="+sh.path,
	)
	if ra, ok := ss.c.nc.RemoteAddr().(*net.TCPAddr); ok {
		la, _ := ss.c.nc.LocalAddr().(*net.TCPAddr)
		if la != nil {
			own = append(own,
				fmt.Sprintf("SSH_CONNECTION=%s %d %s %d", ra.IP, ra.Port, la.IP, la.Port),
				fmt.Sprintf("SSH_CLIENT=%s %d %d", ra.IP, ra.Port, la.Port))
		}
	}
	env := mergeEnv(base, own...)
	return mergeEnv(env, ss.env...)
}

// fail reports a command that could not start: a message on stderr (the
// terminal under a pty), the exit status, EOF and close.
func (ss *session) fail(err error) {
	defer close(ss.done)
	code := exitSSHError
	msg := "nicompute sshd: cannot start the session"
	var se *startError
	if errors.As(err, &se) {
		code, msg = se.code, "nicompute sshd: "+se.msg
	}
	ss.log.Warn("session start failed", "err", err, "exit", code)
	w := ss.ch.Stderr()
	eol := "\n"
	if ss.ptyReq != nil {
		w, eol = ss.ch, "\r\n"
	}
	io.WriteString(w, msg+eol)
	ss.sendExit(procExit{code: code})
	ss.ch.CloseWrite()
	ss.ch.Close()
}

// run copies the command's I/O and tears the session down when it exits,
// in the order RFC 4254 §6.10 clients expect: exit-status (or
// exit-signal), the rest of the output, EOF, close.
func (ss *session) run(p *process) {
	defer close(ss.done)
	defer p.closeAll()
	exited := make(chan struct{})
	go ss.hangUpOnDone(p, exited)

	var out sync.WaitGroup // output copiers; stdin's is not awaited
	var draining atomic.Bool
	if p.master != nil {
		go io.Copy(p.master, ss.ch) // client EOF has no terminal equivalent
		out.Go(func() { copyTerminal(ss.ch, p.master, &draining) })
	} else {
		go func() {
			io.Copy(p.stdin, ss.ch)
			p.stdin.Close() // EOF from the client reaches the command
		}()
		out.Go(func() { io.Copy(ss.ch, p.stdout) })
		out.Go(func() { io.Copy(ss.ch.Stderr(), p.stderr) })
	}

	e := p.wait()
	ss.mu.Lock()
	ss.exited = true
	ss.mu.Unlock()
	close(exited)
	if e.signaled {
		ss.log.Info("session ended", "signal", signalName(e.sig))
	} else {
		ss.log.Info("session ended", "exit", e.code)
	}
	ss.sendExit(e)

	// Close the server's copies of the child's ends so the copiers see
	// EOF once every other holder (background jobs) has let go.
	if p.master != nil {
		draining.Store(true)
		p.master.SetReadDeadline(time.Now().Add(ptyDrainIdle))
		p.tty.Close()
	}
	for _, f := range p.childFiles {
		f.Close()
	}
	copied := waitDone(&out)
	select {
	case <-copied:
	case <-ss.ctx.Done():
		// Nobody is listening any more: stop reading.
		p.closeAll()
		<-copied
	}
	ss.ch.CloseWrite()
	ss.ch.Close()
}

// copyTerminal copies the terminal's output to w. Once draining is set it
// stops when no output arrived for ptyDrainIdle, so that a background job
// holding the terminal does not keep the session open.
func copyTerminal(w io.Writer, master *os.File, draining *atomic.Bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := master.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if draining.Load() {
				master.SetReadDeadline(time.Now().Add(ptyDrainIdle))
			}
		}
		if err != nil {
			return // EIO once no process holds the terminal
		}
	}
}

// hangUpOnDone sends SIGHUP to the command's process group and closes
// the server's ends of its stdio when the session's channel or connection
// ends before the command did, as a terminal hangup would. On a forced
// server shutdown the group gets SIGKILL killDelay later.
func (ss *session) hangUpOnDone(p *process, exited <-chan struct{}) {
	select {
	case <-exited:
		return
	case <-ss.ctx.Done():
	}
	ss.log.Info("hanging up session", "reason", context.Cause(ss.ctx))
	ss.signalGroup(unix.SIGHUP)
	// Nobody reads the output any more: a command that survives the
	// hangup gets EPIPE (or EIO on the terminal) instead of blocking once
	// a pipe is full, as under OpenSSH.
	p.closeAll()
	select {
	case <-exited:
		return
	case <-ss.c.srv.baseCtx.Done():
	}
	select {
	case <-exited:
		return
	case <-time.After(killDelay):
	}
	ss.signalGroup(unix.SIGKILL)
}

// signalGroup signals the command's process group (the command is a
// session leader) while the command has not been reaped.
func (ss *session) signalGroup(sig unix.Signal) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.proc == nil || ss.exited {
		return
	}
	unix.Kill(-ss.proc.Pid, sig)
}

// sendExit sends exit-status or exit-signal (RFC 4254 §6.10).
func (ss *session) sendExit(e procExit) {
	if e.signaled {
		ss.ch.SendRequest("exit-signal", false, ssh.Marshal(exitSignal{Signal: signalName(e.sig), CoreDumped: e.core}))
		return
	}
	ss.ch.SendRequest("exit-status", false, ssh.Marshal(exitStatus{Status: uint32(e.code)}))
}

// runSFTP serves the SFTP subsystem in-process, with the server's own
// permissions, relative paths starting in the home directory.
func (ss *session) runSFTP(acct account) {
	defer close(ss.done)
	wd := "/"
	if fi, err := os.Stat(acct.home); err == nil && fi.IsDir() {
		wd = acct.home
	}
	stop := context.AfterFunc(ss.ctx, func() { ss.ch.Close() })
	defer stop()
	code := 0
	srv, err := sftp.NewServer(ss.ch, sftp.WithServerWorkingDirectory(wd))
	if err == nil {
		err = srv.Serve()
	}
	if err != nil && !errors.Is(err, io.EOF) {
		ss.log.Debug("sftp ended", "err", err)
		code = 1
	}
	ss.log.Info("sftp session ended")
	ss.sendExit(procExit{code: code})
	ss.ch.CloseWrite()
	ss.ch.Close()
}
