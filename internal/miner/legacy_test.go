package miner

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/protocol"
)

// TestPythonValidatorsAndBodySignatures checks that a miner serves requests
// shaped as SN27's Python validators send them, and that
// RequireBodySignature refuses exactly those while nicompute's dendrite,
// which also signs the body, is still served.
func TestPythonValidatorsAndBodySignatures(t *testing.T) {
	w := newWorld(t)
	py := nictest.PythonDendrite(w.validator)
	t.Cleanup(func() { py.Close() })
	specs := func(tm *testMiner, d *axon.Dendrite) error {
		var out protocol.Specs
		_, err := d.Call(context.Background(), tm.target(), protocol.SpecsName, protocol.Specs{}, &out, 5*time.Second)
		if err == nil && out.SpecsOutput == "" {
			t.Fatal("empty specs answer")
		}
		return err
	}

	compat := startTestMiner(t, w, nil)
	if err := specs(compat, py); err != nil {
		t.Fatalf("Python-style request refused by a default miner: %v", err)
	}

	strict := startTestMiner(t, w, func(c *Config, _ *Deps) { c.RequireBodySignature = true })
	if err := specs(strict, strict.d); err != nil {
		t.Fatalf("nicompute dendrite refused with RequireBodySignature: %v", err)
	}
	err := specs(strict, py)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Python-style request with RequireBodySignature: %v, want 401", err)
	}
}
