package sdnotify

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// listen opens a real unixgram socket, as systemd does for a Type=notify
// service, and returns its path and a receiver.
func listen(t *testing.T, name string) (string, func() string) {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return name, func() string {
		buf := make([]byte, 4096)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read notification: %v", err)
		}
		return string(buf[:n])
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestNotify(t *testing.T) {
	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), "@nicompute-sdnotify-test-" + strings.ReplaceAll(t.Name(), "/", "-")} {
		path, recv := listen(t, name)
		n := FromEnv(env(map[string]string{"NOTIFY_SOCKET": path}))
		if n == nil {
			t.Fatalf("%s: no notifier", path)
		}
		if err := n.Notify(Ready, Status("serving\non 8091")); err != nil {
			t.Fatal(err)
		}
		if got := recv(); got != "READY=1\nSTATUS=serving on 8091" {
			t.Fatalf("%s: got %q", path, got)
		}
		if err := n.Notify(Stopping); err != nil || recv() != "STOPPING=1" {
			t.Fatalf("stopping: %v", err)
		}
	}
	if n := FromEnv(env(nil)); n != nil || n.Notify(Ready) != nil {
		t.Fatal("a notifier without NOTIFY_SOCKET must do nothing")
	}
	if FromEnv(env(map[string]string{"NOTIFY_SOCKET": "relative/path"})) != nil {
		t.Fatal("a relative socket path was accepted")
	}
	gone := FromEnv(env(map[string]string{"NOTIFY_SOCKET": filepath.Join(t.TempDir(), "absent")}))
	if err := gone.Notify(Ready); err == nil {
		t.Fatal("notify to a missing socket succeeded")
	}
}

func TestWatchdog(t *testing.T) {
	if d, ok := WatchdogInterval(env(map[string]string{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}), 42); !ok || d != 30*time.Second {
		t.Fatalf("interval %v %v", d, ok)
	}
	for _, e := range []map[string]string{{}, {"WATCHDOG_USEC": "x"}, {"WATCHDOG_USEC": "10", "WATCHDOG_PID": "7"}} {
		if _, ok := WatchdogInterval(env(e), 42); ok {
			t.Errorf("%v: watchdog enabled", e)
		}
	}
	path, recv := listen(t, filepath.Join(t.TempDir(), "wd"))
	n := FromEnv(env(map[string]string{"NOTIFY_SOCKET": path}))
	var healthy atomic.Bool
	healthy.Store(true)
	done := make(chan error, 1)
	go func() { done <- n.RunWatchdog(context.Background(), 20*time.Millisecond, healthy.Load) }()
	for range 3 {
		if got := recv(); got != Watchdog {
			t.Fatalf("got %q", got)
		}
	}
	healthy.Store(false)
	select {
	case err := <-done:
		if err != ErrUnhealthy {
			t.Fatalf("watchdog ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watchdog kept pinging an unhealthy daemon")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.RunWatchdog(ctx, time.Hour, func() bool { return true }); err != nil {
		t.Fatal(err)
	}
}
