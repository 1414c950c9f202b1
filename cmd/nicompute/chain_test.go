package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/chain/local"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/nictest"
)

// lockedBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
type lockedBuffer = nictest.SyncBuffer

// chainCLI runs nicompute commands against one embedded chain node with
// wallets in a temporary directory.
type chainCLI struct {
	tb       testing.TB
	node     *local.Node
	wallets  string
	endpoint string
}

func newChainCLI(tb testing.TB, mod func(*local.Genesis)) *chainCLI {
	tb.Helper()
	g := local.DefaultGenesis()
	if mod != nil {
		mod(&g)
	}
	n, err := local.Open(context.Background(), local.Config{DataDir: tb.TempDir(), Genesis: &g})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { n.Close() })
	return &chainCLI{tb: tb, node: n, wallets: tb.TempDir(), endpoint: n.Endpoint()}
}

// run runs nicompute with args and returns the exit code and the output.
func (c *chainCLI) run(args ...string) (int, string, string) {
	c.tb.Helper()
	var out, errOut bytes.Buffer
	code := Run(context.Background(), args, Stdio{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return code, out.String(), errOut.String()
}

// chainArgs adds the wallet and chain flags for wallet name.
func (c *chainCLI) chainArgs(wallet string, args ...string) []string {
	return append(args, "--wallet.path", c.wallets, "--wallet.name", wallet, "--subtensor.chain_endpoint", c.endpoint)
}

// ok runs a command that must succeed and decodes its --json output.
func (c *chainCLI) ok(wallet string, args ...string) map[string]any {
	c.tb.Helper()
	code, out, errOut := c.run(c.chainArgs(wallet, append(args, "--json")...)...)
	if code != 0 {
		c.tb.Fatalf("nicompute %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		c.tb.Fatalf("nicompute %s: output is not one JSON object: %v\n%s", strings.Join(args, " "), err, out)
	}
	if strings.Count(strings.TrimSpace(out), "\n") != 0 {
		c.tb.Fatalf("nicompute %s: more than one line of JSON:\n%s", strings.Join(args, " "), out)
	}
	return v
}

// refused runs a command that must fail with exit code 1 and an error
// containing want.
func (c *chainCLI) refused(want, wallet string, args ...string) {
	c.tb.Helper()
	code, out, errOut := c.run(c.chainArgs(wallet, args...)...)
	if code != 1 || !strings.Contains(errOut, want) {
		c.tb.Fatalf("nicompute %s: exit %d, stderr %q, stdout %q; want exit 1 and %q", strings.Join(args, " "), code, errOut, out, want)
	}
}

// wallet creates wallet name with an unencrypted coldkey from //Name and
// hotkey "default" from //Name/hot.
func (c *chainCLI) wallet(name string) {
	c.tb.Helper()
	uri := "//" + name
	for _, args := range [][]string{
		{"wallet", "regen-coldkey", "--uri", uri, "--no-password"},
		{"wallet", "regen-hotkey", "--uri", uri + "/hot"},
	} {
		args = append(args, "--wallet.path", c.wallets, "--wallet.name", name)
		if code, _, errOut := c.run(args...); code != 0 {
			c.tb.Fatalf("nicompute %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
	}
}

func (c *chainCLI) advance(n uint64) {
	c.tb.Helper()
	if _, err := c.node.Advance(context.Background(), n); err != nil {
		c.tb.Fatal(err)
	}
}

func TestChainCLI(t *testing.T) {
	c := newChainCLI(t, func(g *local.Genesis) { g.Tempo = 10 })
	c.wallet("owner")
	c.wallet("val")
	c.wallet("idle")

	// Faucet and balance.
	got := c.ok("owner", "wallet", "faucet", "--amount", "100")
	if got["amount"] != 100.0 || got["balance"] != 100.0 || got["address"] == "" {
		t.Fatalf("faucet = %v", got)
	}
	c.ok("val", "wallet", "faucet", "--amount", "50")
	if got := c.ok("val", "wallet", "balance"); got["balance"] != 50.0 {
		t.Fatalf("balance = %v", got)
	}

	// Subnet creation: netuids from 1.
	if got := c.ok("owner", "subnet", "create", "--tempo", "10", "--commit-reveal=false"); got["netuid"] != 1.0 {
		t.Fatalf("subnet create = %v", got)
	}
	if got := c.ok("owner", "subnet", "list"); len(got["subnets"].([]any)) != 1 {
		t.Fatalf("subnet list = %v", got)
	}

	// Registration, once per block.
	if got := c.ok("owner", "subnet", "register", "--netuid", "1"); got["uid"] != 0.0 {
		t.Fatalf("register = %v", got)
	}
	c.refused("registrations per block", "val", "subnet", "register", "--netuid", "1")
	c.advance(1)
	if got := c.ok("val", "subnet", "register", "--netuid", "1"); got["uid"] != 1.0 {
		t.Fatalf("register = %v", got)
	}
	if got := c.ok("val", "subnet", "register", "--netuid", "1"); got["uid"] != 1.0 || got["already_registered"] != true {
		t.Fatalf("second register = %v", got)
	}

	// Stake and weights.
	if got := c.ok("val", "stake", "add", "--netuid", "1", "--amount", "20"); got["amount"] != 20.0 || got["stake"] != 20.0 {
		t.Fatalf("stake add = %v", got)
	}
	// The subnet's first epoch (block 10) grants the staked hotkey its
	// validator permit; without one only a self-weight is allowed.
	c.refused("no validator permit", "val", "weights", "set", "--netuid", "1", "--uids", "0,1", "--weights", "0.7,0.3")
	c.advance(10)
	if got := c.ok("val", "weights", "set", "--netuid", "1", "--uids", "0,1", "--weights", "0.7,0.3"); !reflect.DeepEqual(got["weights"], []any{65535.0, 28086.0}) || got["version_key"] != 0.0 || got["mode"] != "set" {
		t.Fatalf("weights set = %v", got)
	}
	if h := c.ok("val", "subnet", "hyperparameters", "--netuid", "1"); h["commit_reveal_weights_enabled"] != false {
		t.Fatalf("hyperparameters of a --commit-reveal=false subnet: %v", h)
	}

	// Refusals: exit 1, clear message, state unchanged.
	before := c.ok("val", "subnet", "metagraph", "--netuid", "1")
	balBefore := c.ok("val", "wallet", "balance")
	c.refused("rate limit", "val", "weights", "set", "--netuid", "1", "--uids", "0", "--weights", "1")
	c.refused("length mismatch", "val", "weights", "set", "--netuid", "1", "--uids", "0,1", "--weights", "1")
	c.refused("not registered", "idle", "weights", "set", "--netuid", "1", "--uids", "0", "--weights", "1")
	c.refused("insufficient balance", "val", "stake", "add", "--netuid", "1", "--amount", "1000")
	c.refused("subnet 7 does not exist", "val", "subnet", "register", "--netuid", "7")
	c.refused("insufficient balance", "idle", "subnet", "register", "--netuid", "1")
	c.refused("not registered", "val", "stake", "add", "--netuid", "1", "--amount", "1", "--hotkey", mustAddr(t, "//idle/hot"))
	if after := c.ok("val", "subnet", "metagraph", "--netuid", "1"); !reflect.DeepEqual(before, after) {
		t.Fatalf("refusals changed the metagraph:\n%v\n%v", before, after)
	}
	if got := c.ok("val", "wallet", "balance"); !reflect.DeepEqual(got, balBefore) {
		t.Fatalf("refusals changed the balance: %v, was %v", got, balBefore)
	}

	// The metagraph after an epoch, in the documented shape.
	c.advance(10)
	m := c.ok("val", "subnet", "metagraph", "--netuid", "1")
	if m["netuid"] != 1.0 || m["block"].(float64) < 12 {
		t.Fatalf("metagraph = %v", m)
	}
	neurons := m["neurons"].([]any)
	if len(neurons) != 2 {
		t.Fatalf("%d neurons", len(neurons))
	}
	wantKeys := []string{"axon", "coldkey", "dividends", "emission", "hotkey", "incentive", "last_update", "stake", "uid", "validator_permit"}
	for _, raw := range neurons {
		n := raw.(map[string]any)
		var keys []string
		for k := range n {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, wantKeys) {
			t.Fatalf("neuron keys = %v, want %v", keys, wantKeys)
		}
		axon := n["axon"].(map[string]any)
		if _, ok := axon["ip"].(string); !ok || axon["port"] == nil || axon["version"] == nil {
			t.Fatalf("axon = %v", axon)
		}
		for _, k := range []string{"incentive", "dividends"} {
			if v := n[k].(float64); v < 0 || v > 1 {
				t.Fatalf("%s = %v", k, v)
			}
		}
	}
	val := neurons[1].(map[string]any)
	if val["validator_permit"] != true || val["stake"].(float64) <= 20 || val["emission"].(float64) <= 0 || val["dividends"].(float64) <= 0 {
		t.Fatalf("validator after the epoch = %v", val)
	}
	if miner := neurons[0].(map[string]any); miner["incentive"].(float64) <= 0 {
		t.Fatalf("miner after the epoch = %v", miner)
	}

	// A subnet with commit-reveal on (the default, as on Bittensor): the
	// same command commits the weights, timelocked to the chain's beacon.
	if got := c.ok("owner", "subnet", "create", "--tempo", "10"); got["netuid"] != 2.0 {
		t.Fatalf("subnet create = %v", got)
	}
	if h := c.ok("val", "subnet", "hyperparameters", "--netuid", "2"); h["commit_reveal_weights_enabled"] != true || h["commit_reveal_period"] != 1.0 {
		t.Fatalf("hyperparameters = %v", h)
	}
	c.advance(1)
	c.ok("val", "subnet", "register", "--netuid", "2")
	if got := c.ok("val", "weights", "set", "--netuid", "2", "--uids", "0", "--weights", "1"); got["mode"] != "commit" || got["reveal_round"].(float64) < 1 || got["reveal_epoch"] == nil {
		t.Fatalf("weights set with commit-reveal on = %v", got)
	}
	c.refused("CommittingWeightsTooFast", "val", "weights", "set", "--netuid", "2", "--uids", "0", "--weights", "1")

	// Readable forms.
	code, out, errOut := c.run(c.chainArgs("val", "subnet", "metagraph", "--netuid", "1")...)
	if code != 0 || !strings.Contains(out, "UID") || !strings.Contains(out, "subnet 1 at block") {
		t.Fatalf("metagraph table: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = c.run(c.chainArgs("val", "subnet", "hyperparameters", "--netuid", "1")...)
	if code != 0 || !strings.Contains(out, "tempo") || !strings.Contains(out, "10") {
		t.Fatalf("hyperparameters table: exit %d\n%s", code, out)
	}
	if h := c.ok("val", "subnet", "hyperparameters", "--netuid", "1"); h["tempo"] != 10.0 || h["weights_rate_limit"] != 100.0 {
		t.Fatalf("hyperparameters = %v", h)
	}
}

func mustAddr(tb testing.TB, uri string) string {
	tb.Helper()
	k, err := keys.FromURI(uri)
	if err != nil {
		tb.Fatal(err)
	}
	return k.SS58()
}

func TestChainCLILocalOnly(t *testing.T) {
	c := newChainCLI(t, nil)
	c.wallet("owner")
	for _, args := range [][]string{
		{"wallet", "faucet", "--amount", "1"},
		{"subnet", "create"},
		{"subnet", "list"},
	} {
		args = append(args, "--wallet.path", c.wallets, "--wallet.name", "owner", "--subtensor.chain_endpoint", "ws://127.0.0.1:9")
		code, _, errOut := c.run(args...)
		if code != 1 || !strings.Contains(errOut, "only on the embedded development chain") {
			t.Fatalf("%v: exit %d, %q", args, code, errOut)
		}
	}
}

func TestChainCLIUnavailable(t *testing.T) {
	c := newChainCLI(t, nil)
	c.node.Close()
	start := time.Now()
	code, _, errOut := c.run("subnet", "metagraph", "--netuid", "1", "--subtensor.chain_endpoint", c.endpoint)
	if code != 1 || !strings.Contains(errOut, "unreachable") {
		t.Fatalf("exit %d, %q", code, errOut)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestChainCommand(t *testing.T) {
	dir := t.TempDir()
	start := func() (string, func() int) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		var out, errOut lockedBuffer
		done := make(chan int, 1)
		go func() {
			done <- Run(ctx, []string{"chain", "--data", dir, "--chain.listen", "127.0.0.1:0", "--block-time", "5ms", "--tempo", "7"},
				Stdio{In: strings.NewReader(""), Out: &out, Err: &errOut})
		}()
		stop := func() int { cancel(); return <-done }
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if s := out.String(); strings.Contains(s, "\n") {
				f := strings.Fields(s)
				if len(f) < 4 || !strings.HasPrefix(f[3], "http://") {
					t.Fatalf("unexpected first line %q", s)
				}
				return f[3], stop
			}
			select {
			case code := <-done:
				t.Fatalf("chain exited %d: %s", code, errOut.String())
			case <-time.After(5 * time.Millisecond):
			}
		}
		stop()
		t.Fatal("chain did not print its endpoint")
		return "", nil
	}
	ep, stop := start()
	cl, err := local.Dial(context.Background(), ep)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := cl.WaitForBlock(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if code := stop(); code != 0 {
		t.Fatalf("chain exit code %d", code)
	}

	// A restart continues from the stored block.
	ep, stop = start()
	cl, err = local.Dial(context.Background(), ep)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got, err := cl.CurrentBlock(ctx); err != nil || got < b {
		t.Fatalf("block after restart = %d, %v; was %d", got, err, b)
	}
	if code := stop(); code != 0 {
		t.Fatalf("chain exit code %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "chain.db")); err != nil {
		t.Fatal(err)
	}
}
