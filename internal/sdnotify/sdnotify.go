// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): a daemon started with Type=notify tells the service
// manager when it is ready (READY=1), that it is alive (WATCHDOG=1, at
// least every WatchdogSec) and that it is stopping (STOPPING=1), by
// sending datagrams to the unix socket named in $NOTIFY_SOCKET. Outside
// systemd the variable is unset and every call does nothing.
package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// The states a daemon reports.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
	Watchdog = "WATCHDOG=1"
)

// Notifier sends notifications to one socket. A nil *Notifier sends
// nothing.
type Notifier struct {
	addr *net.UnixAddr
}

// FromEnv returns the notifier of $NOTIFY_SOCKET, or nil when the process
// was not started by a service manager that listens. An abstract socket
// ("@name") is supported.
func FromEnv(getenv func(string) string) *Notifier {
	p := getenv("NOTIFY_SOCKET")
	if p == "" || (p[0] != '/' && p[0] != '@') {
		return nil
	}
	return &Notifier{addr: &net.UnixAddr{Name: p, Net: "unixgram"}}
}

// Notify sends state lines ("READY=1", "STATUS=serving") in one datagram.
func (n *Notifier) Notify(states ...string) error {
	if n == nil {
		return nil
	}
	var msg []byte
	for i, s := range states {
		if i > 0 {
			msg = append(msg, '\n')
		}
		msg = append(msg, s...)
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Status formats a STATUS= line (one line: newlines become spaces).
func Status(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '\n' || c == '\r' {
			b[i] = ' '
		}
	}
	return "STATUS=" + string(b)
}

// WatchdogInterval returns the watchdog period systemd expects pings
// within ($WATCHDOG_USEC), when it is meant for this process
// ($WATCHDOG_PID, if set, equals pid).
func WatchdogInterval(getenv func(string) string, pid int) (time.Duration, bool) {
	us, err := strconv.ParseInt(getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0, false
	}
	if p := getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(pid) {
		return 0, false
	}
	return time.Duration(us) * time.Microsecond, true
}

// ErrUnhealthy is what RunWatchdog returns when healthy reports false:
// the pings stop and the service manager restarts the daemon.
var ErrUnhealthy = errors.New("daemon unhealthy: watchdog pings stopped")

// RunWatchdog sends WATCHDOG=1 every interval/2 while healthy returns
// true, until ctx ends (nil) or healthy returns false (ErrUnhealthy).
func (n *Notifier) RunWatchdog(ctx context.Context, interval time.Duration, healthy func() bool) error {
	if n == nil || interval <= 0 {
		return nil
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		if !healthy() {
			return ErrUnhealthy
		}
		_ = n.Notify(Watchdog)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
