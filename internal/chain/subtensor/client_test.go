package subtensor

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	st "github.com/nicompute/nicompute/internal/chain/subtensor/subtensortest"
	"github.com/nicompute/nicompute/internal/subnet"
)

// override wraps a scripted node's handler: f answers first when it
// returns true.
func (s *scriptedNode) override(f func(method string, params []json.RawMessage) (st.Reply, bool)) {
	s.node.SetHandler(func(method string, params []json.RawMessage) st.Reply {
		if rep, ok := f(method, params); ok {
			return rep
		}
		return s.handle(method, params)
	})
}

func TestBadAnswers(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		answer  st.Reply
		call    func(*Client) error
		wantMsg string
	}{
		{"truncated storage value", "state_getStorageAt", st.Reply{Result: "0x01"},
			func(c *Client) error { _, err := c.BurnCost(t.Context(), 1); return err },
			"decode storage SubtensorModule.Burn: at byte 0: unexpected end of input"},
		{"storage value with trailing bytes", "state_getStorageAt", st.Reply{Result: "0x0100"},
			func(c *Client) error { _, err := c.SubnetworkN(t.Context(), 1); return err },
			"trailing bytes"},
		{"storage value not hex", "state_getStorageAt", st.Reply{Result: "zz"},
			func(c *Client) error { _, err := c.SubnetworkN(t.Context(), 1); return err },
			"state_getStorageAt SubtensorModule.NetworksAdded"},
		{"storage value not a string", "state_getStorageAt", st.Reply{Result: 12},
			func(c *Client) error { _, _, err := c.UIDForHotkey(t.Context(), 1, alice(t).SS58()); return err },
			"state_getStorageAt SubtensorModule.Uids"},
		{"head not a hash", "chain_getHead", st.Reply{Result: "0x1234"},
			func(c *Client) error { _, err := c.Metagraph(t.Context(), 1); return err },
			"chain_getHead: invalid result"},
		{"header without number", "chain_getHeader", st.Reply{Result: map[string]any{"number": "zz"}},
			func(c *Client) error { _, err := c.CurrentBlock(t.Context()); return err },
			"chain_getHeader: invalid block number"},
		{"runtime API answer not SCALE of its type", "state_call", st.Reply{Result: "0x01ff"},
			func(c *Client) error { _, err := c.Metagraph(t.Context(), 1); return err },
			"answer does not match the runtime metadata"},
		{"query answer for other keys", "state_queryStorageAt", st.Reply{Result: []any{map[string]any{"changes": [][2]string{{"0x00", "0x01"}}}}},
			func(c *Client) error { _, err := c.Hyperparameters(t.Context(), 1); return err },
			"answer for a key that was not asked"},
		{"node error", "state_queryStorageAt", st.Reply{Err: &st.WireError{Code: 4003, Message: "Client error: State already discarded"}},
			func(c *Client) error { _, err := c.Hyperparameters(t.Context(), 1); return err },
			"state_queryStorageAt: rpc error 4003: Client error: State already discarded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := newScriptedNode(t)
			s.override(func(method string, params []json.RawMessage) (st.Reply, bool) {
				if method != tt.method || (method == "state_call" && strings.Contains(string(params[0]), "Metadata_")) {
					return st.Reply{}, false
				}
				return tt.answer, true
			})
			err := tt.call(c)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("err %v, want one containing %q", err, tt.wantMsg)
			}
		})
	}
}

func TestMetadataVersions(t *testing.T) {
	rec := loadRecordings(t)
	t.Run("unknown version", func(t *testing.T) {
		// Some(Vec<u8>) of "meta" ++ version 16: 01, compact 5 = 14,
		// 6d657461, 10.
		node := st.NewNode(t, func(method string, params []json.RawMessage) st.Reply {
			switch method {
			case "state_getRuntimeVersion":
				return st.Reply{Result: map[string]any{"specName": "node-subtensor", "specVersion": 400}}
			case "state_call":
				return st.Reply{Result: "0x01146d65746110"}
			}
			return st.Reply{Err: &st.WireError{Code: -32601, Message: "unexpected"}}
		})
		_, err := Dial(t.Context(), node.URL(), testConfig(t))
		if err == nil || !strings.Contains(err.Error(), "unsupported metadata version 16") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("v14 fallback", func(t *testing.T) {
		c, s := newScriptedNode(t)
		s.override(func(method string, params []json.RawMessage) (st.Reply, bool) {
			switch {
			case method == "state_call" && strings.Contains(string(params[0]), "Metadata_metadata_at_version"):
				return st.Reply{Err: &st.WireError{Code: 4003, Message: "Exported method Metadata_metadata_at_version is not found"}}, true
			case method == "state_getMetadata":
				return st.Reply{Result: rec.Metadata}, true
			}
			return st.Reply{}, false
		})
		if _, _, err := c.refreshMetadata(t.Context(), true); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		c.meta = nil // force a reload through the fallback
		c.mu.Unlock()
		m, err := c.metadata(t.Context())
		if err != nil || m.Version != 14 {
			t.Fatalf("metadata %v, %v", m, err)
		}
		// Storage and extrinsics work from V14; the runtime APIs need V15.
		s.set("NetworksAdded", "0x01", uint64(1))
		s.set("SubnetworkN", "0x0a00", uint64(1))
		if n, err := c.SubnetworkN(t.Context(), 1); err != nil || n != 10 {
			t.Fatalf("SubnetworkN %d, %v", n, err)
		}
		if _, err := c.Metagraph(t.Context(), 1); err == nil || !strings.Contains(err.Error(), "not in the runtime metadata (v14)") {
			t.Fatalf("metagraph on v14: %v", err)
		}
		s.set("CommitRevealWeightsEnabled", "0x00", uint64(1))
		if err := c.SetWeights(t.Context(), alice(t), 1, []subnet.UID{0}, []uint16{1}, 0); err != nil {
			t.Fatalf("set_weights on v14 metadata: %v", err)
		}
	})
}

func TestRuntimeUpgradeReloadsMetadata(t *testing.T) {
	c, s := newScriptedNode(t)
	c.cfg.MetadataTTL = time.Millisecond
	count := func() int { return len(s.node.Called("state_call")) }
	before := count()
	time.Sleep(5 * time.Millisecond)
	if _, err := c.metadata(t.Context()); err != nil {
		t.Fatal(err)
	}
	if count() != before {
		t.Fatal("metadata reloaded without a runtime change")
	}
	s.override(func(method string, params []json.RawMessage) (st.Reply, bool) {
		if method == "state_getRuntimeVersion" {
			return st.Reply{Result: map[string]any{"specName": "node-subtensor", "specVersion": 344, "transactionVersion": 1}}, true
		}
		return st.Reply{}, false
	})
	time.Sleep(5 * time.Millisecond)
	if _, err := c.metadata(t.Context()); err != nil {
		t.Fatal(err)
	}
	if count() != before+1 {
		t.Fatalf("%d metadata loads after the upgrade, want 1", count()-before)
	}
}

func TestMetagraphNoSubnet(t *testing.T) {
	c, s := newScriptedNode(t)
	s.override(func(method string, params []json.RawMessage) (st.Reply, bool) {
		if method == "state_call" && strings.Contains(string(params[0]), apiSubnetState) {
			return st.Reply{Result: "0x00"}, true // None
		}
		if method == "state_call" && strings.Contains(string(params[0]), apiNeuronsLite) {
			return st.Reply{Result: "0x00"}, true // empty Vec
		}
		return st.Reply{}, false
	})
	if _, err := c.Metagraph(t.Context(), 99); subnet.ErrorCode(err) != subnet.ENOSUBNET {
		t.Fatalf("err %v", err)
	}
}
