package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nicompute/nicompute/internal/chain/subtensor/subtensortest"
)

// TestSubnetMetagraphOnSubtensor runs `nicompute subnet metagraph` against a
// replay of the Bittensor SDK's finney traffic for netuid 1, and checks the
// JSON has the shape the embedded chain's has.
func TestSubnetMetagraphOnSubtensor(t *testing.T) {
	node, _ := subtensortest.Serve(t, "metagraph")
	var out, errOut bytes.Buffer
	code := Run(t.Context(), []string{"subnet", "metagraph", "--netuid", "1", "--subtensor.network", node.URL(), "--json"},
		Stdio{In: strings.NewReader(""), Out: &out, Err: &errOut})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var sub map[string]any
	if err := json.Unmarshal(out.Bytes(), &sub); err != nil {
		t.Fatalf("not JSON: %v\n%.200s", err, out.String())
	}
	// Block 0x689052; 1024 neurons; uid 0 serves 192.222.59.109:6028 with
	// 2557172316 rao of stake (see chain/subtensor's replay tests for the
	// byte-level derivation).
	neurons, _ := sub["neurons"].([]any)
	if sub["netuid"] != 1.0 || sub["block"] != float64(0x689052) || len(neurons) != 1024 {
		t.Fatalf("metagraph netuid %v block %v, %d neurons", sub["netuid"], sub["block"], len(neurons))
	}
	n0 := neurons[0].(map[string]any)
	axon := n0["axon"].(map[string]any)
	if n0["uid"] != 0.0 || n0["stake"] != 2.557172316 || axon["ip"] != "192.222.59.109" || axon["port"] != 6028.0 {
		t.Fatalf("uid 0 = %v", n0)
	}

	// The same command on the embedded chain.
	c := newChainCLI(t, nil)
	c.wallet("owner")
	c.ok("owner", "wallet", "faucet", "--amount", "100")
	c.ok("owner", "subnet", "create")
	c.ok("owner", "subnet", "register", "--netuid", "1")
	local := c.ok("owner", "subnet", "metagraph", "--netuid", "1")
	if a, b := shape(local), shape(sub); !reflect.DeepEqual(a, b) {
		t.Fatalf("JSON shapes differ:\nembedded  %v\nsubtensor %v", a, b)
	}
}

// shape lists the key paths and value kinds of a decoded JSON value,
// taking the first element of arrays.
func shape(v any) []string {
	var out []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(prefix+"."+k, e)
			}
		case []any:
			if len(x) > 0 {
				walk(prefix+"[]", x[0])
			}
		case nil:
			out = append(out, prefix+":null")
		default:
			out = append(out, prefix+":"+reflect.TypeOf(v).Kind().String())
		}
	}
	walk("", v)
	slices.Sort(out)
	return out
}
