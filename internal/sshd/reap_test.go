//go:build linux

package sshd

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// TestReap makes the test process a child subreaper, so that orphans of
// session commands are re-parented to it as they would be to a server
// running as PID 1, and checks that a reaping server collects them while
// still reporting its sessions' exit statuses; without reaping the orphan
// stays a zombie.
//
// It must not run in parallel with tests that wait for their own child
// processes: the reaper collects every child of the process.
func TestReap(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("cannot become a child subreaper: %v", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)

	for _, reap := range []bool{true, false} {
		t.Run(fmt.Sprintf("reap=%v", reap), func(t *testing.T) {
			ts := startServer(t, func(c *Config) { c.Reap = reap })
			c := ts.mustDial(t)
			// The background sleep outlives its shell and is orphaned.
			r := run(t, c, "/bin/busybox sleep 0.3 >/dev/null 2>&1 </dev/null & echo $!", nil)
			pid, err := strconv.Atoi(strings.TrimSpace(r.stdout))
			if err != nil || r.exit != 0 {
				t.Fatalf("run: %+v", r)
			}
			if !reap {
				defer unix.Wait4(pid, nil, 0, nil)
			}
			gone := false
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
					gone = true
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if gone != reap {
				state, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
				t.Errorf("orphan %d reaped = %v, want %v (stat %q)", pid, gone, reap, state)
			}

			// Exit statuses and signals still reach the client.
			if r := run(t, c, "exit 3", nil); r.exit != 3 {
				t.Errorf("exit 3 gave %+v", r)
			}
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = s.Run("kill -USR2 $$")
			var ee *ssh.ExitError
			if !errors.As(err, &ee) || ee.Signal() != "USR2" {
				t.Errorf("self-signalled command: %v, want exit-signal USR2", err)
			}
		})
	}
}
