package sshd

import (
	"fmt"
	"os"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal set to the client's window size and
// terminal modes. The master is returned non-blocking and registered with
// the runtime poller, so that read deadlines work and Close interrupts a
// pending Read; the tty (slave) is what the child gets as its stdio.
func openPTY(req ptyRequest, modes []terminalMode) (_, _ *os.File, err error) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	var master *os.File
	defer func() {
		if err != nil {
			tty.Close()
			if master != nil {
				master.Close()
			}
		}
	}()
	// pty.Open has put the master in blocking mode (it calls Fd), which
	// disables deadlines; wrap a non-blocking duplicate instead.
	fd, err := unix.Dup(int(ptmx.Fd()))
	ptmx.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("dup pty master: %w", err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("pty master non-blocking: %w", err)
	}
	master = os.NewFile(uintptr(fd), "/dev/ptmx")

	if err := withFd(tty, func(fd int) error {
		t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return fmt.Errorf("get termios: %w", err)
		}
		applyTerminalModes(t, modes)
		if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
			return fmt.Errorf("set termios: %w", err)
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	if err := setWindowSize(master, windowChange{req.Cols, req.Rows, req.Width, req.Height}); err != nil {
		return nil, nil, err
	}
	return master, tty, nil
}

// setWindowSize sets the terminal size; the kernel signals SIGWINCH to the
// terminal's foreground process group.
func setWindowSize(master *os.File, w windowChange) error {
	ws := &unix.Winsize{Row: clampCells(w.Rows), Col: clampCells(w.Cols), Xpixel: clampCells(w.Width), Ypixel: clampCells(w.Height)}
	return withFd(master, func(fd int) error {
		if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, ws); err != nil {
			return fmt.Errorf("set window size: %w", err)
		}
		return nil
	})
}

// withFd runs fn on f's descriptor without switching f to blocking mode
// (which (*os.File).Fd would do).
func withFd(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// termiosFlag locates one RFC 4254 §8 opcode in a Linux termios.
type termiosFlag struct {
	field *uint32
	bit   uint32
}

// applyTerminalModes sets the client's terminal modes on t. Opcodes Linux
// has no equivalent for (VDSUSP, VSTATUS, VSWTCH, VFLUSH) and the line
// speeds, which a pseudo-terminal ignores, are skipped.
func applyTerminalModes(t *unix.Termios, modes []terminalMode) {
	cc := map[uint8]int{
		ssh.VINTR: unix.VINTR, ssh.VQUIT: unix.VQUIT, ssh.VERASE: unix.VERASE,
		ssh.VKILL: unix.VKILL, ssh.VEOF: unix.VEOF, ssh.VEOL: unix.VEOL,
		ssh.VEOL2: unix.VEOL2, ssh.VSTART: unix.VSTART, ssh.VSTOP: unix.VSTOP,
		ssh.VSUSP: unix.VSUSP, ssh.VREPRINT: unix.VREPRINT, ssh.VWERASE: unix.VWERASE,
		ssh.VLNEXT: unix.VLNEXT, ssh.VDISCARD: unix.VDISCARD,
	}
	flags := map[uint8]termiosFlag{
		ssh.IGNPAR: {&t.Iflag, unix.IGNPAR}, ssh.PARMRK: {&t.Iflag, unix.PARMRK},
		ssh.INPCK: {&t.Iflag, unix.INPCK}, ssh.ISTRIP: {&t.Iflag, unix.ISTRIP},
		ssh.INLCR: {&t.Iflag, unix.INLCR}, ssh.IGNCR: {&t.Iflag, unix.IGNCR},
		ssh.ICRNL: {&t.Iflag, unix.ICRNL}, ssh.IUCLC: {&t.Iflag, unix.IUCLC},
		ssh.IXON: {&t.Iflag, unix.IXON}, ssh.IXANY: {&t.Iflag, unix.IXANY},
		ssh.IXOFF: {&t.Iflag, unix.IXOFF}, ssh.IMAXBEL: {&t.Iflag, unix.IMAXBEL},
		ssh.IUTF8: {&t.Iflag, unix.IUTF8},
		ssh.ISIG:  {&t.Lflag, unix.ISIG}, ssh.ICANON: {&t.Lflag, unix.ICANON},
		ssh.XCASE: {&t.Lflag, unix.XCASE}, ssh.ECHO: {&t.Lflag, unix.ECHO},
		ssh.ECHOE: {&t.Lflag, unix.ECHOE}, ssh.ECHOK: {&t.Lflag, unix.ECHOK},
		ssh.ECHONL: {&t.Lflag, unix.ECHONL}, ssh.NOFLSH: {&t.Lflag, unix.NOFLSH},
		ssh.TOSTOP: {&t.Lflag, unix.TOSTOP}, ssh.IEXTEN: {&t.Lflag, unix.IEXTEN},
		ssh.ECHOCTL: {&t.Lflag, unix.ECHOCTL}, ssh.ECHOKE: {&t.Lflag, unix.ECHOKE},
		ssh.PENDIN: {&t.Lflag, unix.PENDIN},
		ssh.OPOST:  {&t.Oflag, unix.OPOST}, ssh.OLCUC: {&t.Oflag, unix.OLCUC},
		ssh.ONLCR: {&t.Oflag, unix.ONLCR}, ssh.OCRNL: {&t.Oflag, unix.OCRNL},
		ssh.ONOCR: {&t.Oflag, unix.ONOCR}, ssh.ONLRET: {&t.Oflag, unix.ONLRET},
		ssh.PARENB: {&t.Cflag, unix.PARENB}, ssh.PARODD: {&t.Cflag, unix.PARODD},
	}
	for _, m := range modes {
		if i, ok := cc[m.op]; ok {
			t.Cc[i] = uint8(m.val)
			continue
		}
		if f, ok := flags[m.op]; ok {
			if m.val != 0 {
				*f.field |= f.bit
			} else {
				*f.field &^= f.bit
			}
			continue
		}
		switch m.op {
		case ssh.CS7:
			if m.val != 0 {
				t.Cflag = t.Cflag&^unix.CSIZE | unix.CS7
			}
		case ssh.CS8:
			if m.val != 0 {
				t.Cflag = t.Cflag&^unix.CSIZE | unix.CS8
			}
		}
	}
}
