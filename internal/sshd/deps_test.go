package sshd

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDependencies keeps the server, which runs inside every rented
// container, free of the rest of nicompute: only the standard library, the
// SSH, PTY and SFTP modules and their own dependencies may be linked in.
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go tool not found: %v", err)
	}
	allowed := []string{
		"github.com/nicompute/nicompute/internal/sshd",
		"golang.org/x/crypto/",
		"golang.org/x/sys/",
		"github.com/creack/pty",
		"github.com/pkg/sftp",
		"github.com/kr/fs", // pkg/sftp's
	}
	for _, goos := range []string{"linux", "darwin"} {
		t.Run(goos, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".")
			cmd.Env = append(cmd.Environ(), "GOOS="+goos, "CGO_ENABLED=0")
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list: %v", err)
			}
			for _, pkg := range strings.Fields(string(out)) {
				ok := false
				for _, prefix := range allowed {
					if pkg == prefix || strings.HasPrefix(pkg, prefix) {
						ok = true
						break
					}
				}
				if !ok {
					t.Errorf("internal/sshd depends on %s", pkg)
				}
			}
		})
	}
}
