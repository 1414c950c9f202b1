package miner

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDependencies keeps the miner a service: it declares the runtime,
// store, chain and specs it consumes and never links an adapter (docker,
// sqlite, a chain client, hostinfo); cmd/nicompute and devnet wire them.
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go tool not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := map[string]bool{
		"github.com/nicompute/nicompute/internal/miner":    true,
		"github.com/nicompute/nicompute/internal/axon":     true,
		"github.com/nicompute/nicompute/internal/keys":     true, // axon's signature checks
		"github.com/nicompute/nicompute/internal/market":   true,
		"github.com/nicompute/nicompute/internal/protocol": true,
		"github.com/nicompute/nicompute/internal/subnet":   true,
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/nicompute/nicompute/") && !allowed[pkg] {
			t.Errorf("internal/miner depends on %s", pkg)
		}
	}
}
