package nictest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// modulePath is the module whose command BuildNicompute builds.
const modulePath = "github.com/nicompute/nicompute"

// nicompute builds the binary at most once per test process.
var nicompute = sync.OnceValues(buildNicompute)

// BuildNicompute builds the static nicompute binary (CGO_ENABLED=0) into
// <module root>/tmp/nicompute once per test process and returns its
// absolute path. It fails the test when the build fails.
func BuildNicompute(tb testing.TB) string {
	tb.Helper()
	p, err := nicompute()
	if err != nil {
		tb.Fatalf("build nicompute: %v", err)
	}
	return p
}

func buildNicompute() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "tmp")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Build under a private name and rename, so concurrent test processes
	// (go test ./... runs packages in parallel) never see a partial file.
	tmp, err := os.CreateTemp(dir, "nicompute-build-*")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("go command not found: %w", err)
	}
	cmd := exec.Command(goBin, "build", "-o", tmp.Name(), modulePath+"/cmd/nicompute")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out.Bytes())
	}
	dst := filepath.Join(dir, "nicompute")
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", err
	}
	return dst, nil
}

// moduleRoot finds the directory of nicompute's go.mod above the working
// directory (go test runs in the package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "module "+modulePath+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("nicompute module root not found above the working directory")
		}
		dir = parent
	}
}
