package validator

import (
	"os/exec"
	"strings"
	"testing"
)

// The validator is a service: it declares the chain, store and transport
// it needs and never imports an adapter, the wiring or test helpers.
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go command")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const mod = "github.com/nicompute/nicompute/internal/"
	forbidden := []string{"sqlite", "docker", "chain", "sshd", "hostinfo", "wallet", "miner", "devnet", "nictest", "allocations", "pog/cuda"}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == mod+f || strings.HasPrefix(dep, mod+f+"/") {
				t.Errorf("internal/validator depends on %s", dep)
			}
		}
	}
}
