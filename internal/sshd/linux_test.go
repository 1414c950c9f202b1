//go:build linux

package sshd

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

func TestApplyTerminalModes(t *testing.T) {
	var tio unix.Termios
	tio.Lflag = unix.ECHO | unix.ICANON
	tio.Cflag = unix.CS8
	applyTerminalModes(&tio, []terminalMode{
		{ssh.ECHO, 0}, {ssh.ISIG, 1}, {ssh.VINTR, 3}, {ssh.IUTF8, 1},
		{ssh.ONLCR, 1}, {ssh.CS7, 1}, {ssh.TTY_OP_OSPEED, 9600}, {ssh.VDSUSP, 25}, {200, 1},
	})
	if tio.Lflag&unix.ECHO != 0 || tio.Lflag&unix.ISIG == 0 || tio.Lflag&unix.ICANON == 0 {
		t.Errorf("lflag %#x", tio.Lflag)
	}
	if tio.Cc[unix.VINTR] != 3 {
		t.Errorf("VINTR = %d", tio.Cc[unix.VINTR])
	}
	if tio.Iflag&unix.IUTF8 == 0 || tio.Oflag&unix.ONLCR == 0 {
		t.Errorf("iflag %#x oflag %#x", tio.Iflag, tio.Oflag)
	}
	if tio.Cflag&unix.CSIZE != unix.CS7 {
		t.Errorf("cflag %#x, want CS7", tio.Cflag)
	}
}

func TestOpenPTY(t *testing.T) {
	master, tty, err := openPTY(ptyRequest{Term: "xterm", Cols: 132, Rows: 43}, []terminalMode{{ssh.ECHO, 0}})
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer master.Close()
	defer tty.Close()
	ws, err := unix.IoctlGetWinsize(int(tty.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Row != 43 || ws.Col != 132 {
		t.Errorf("window %+v, %v", ws, err)
	}
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil || tio.Lflag&unix.ECHO != 0 {
		t.Errorf("termios lflag %#x, %v; want ECHO off", tio.Lflag, err)
	}
	// The master honours deadlines, so teardown can bound a drain.
	if err := master.SetReadDeadline(aLongTimeAgo()); err != nil {
		t.Errorf("master has no deadlines: %v", err)
	}
	if _, err := master.Read(make([]byte, 1)); !os.IsTimeout(err) {
		t.Errorf("read past the deadline: %v", err)
	}
}

func TestSignalNames(t *testing.T) {
	for name, sig := range rfcSignals() {
		if got := signalName(sig); got != name {
			t.Errorf("signalName(%v) = %q, want %q", sig, got, name)
		}
		if s, ok := signalByName(name); !ok || s != sig {
			t.Errorf("signalByName(%q) = %v", name, s)
		}
	}
	if got := signalName(unix.SIGBUS); got != "BUS@openssh.com" {
		t.Errorf("signalName(SIGBUS) = %q", got)
	}
	if _, ok := signalByName("SIGTERM"); ok {
		t.Error("signal names carry no SIG prefix")
	}
}

// TestBusyboxShell checks how the fallback shell is started: busybox picks
// its applet from argv[0], with or without the login "-".
func TestBusyboxShell(t *testing.T) {
	if !isExecutable("/bin/busybox") {
		t.Skip("no /bin/busybox")
	}
	c := exec.Command("/bin/busybox")
	c.Args = []string{"sh", "-c", `echo "$0 ok"`}
	out, err := c.Output()
	if err != nil || string(out) != "sh ok\n" {
		t.Errorf("busybox as sh -c: %q, %v", out, err)
	}
	c = exec.Command("/bin/busybox")
	c.Args = []string{"-sh"}
	c.Env = []string{"HOME=/nonexistent"}
	c.Stdin = strings.NewReader("echo login-ok\nexit 3\n")
	out, err = c.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || !strings.Contains(string(out), "login-ok") {
		t.Errorf("busybox as -sh: %q, %v", out, err)
	}
}

func aLongTimeAgo() time.Time { return time.Unix(1, 0) }
