package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/sqlite"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/web"
)

// hookReceiver is a webhook endpoint that checks each delivery's
// signature and keeps the event types in arrival order.
type hookReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	secret string
	types  []string
	bad    int
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := rental.VerifySignature(h.secret, r.Header.Get(rental.SignatureHeader), body, time.Now(), time.Minute); err != nil {
			h.bad++
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var p rental.EventPayload
		_ = json.Unmarshal(body, &p)
		h.types = append(h.types, p.Type)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) got() ([]string, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.types), h.bad
}

// createToken makes an API token with the CLI and writes it to a file.
func createToken(t testing.TB, apiData, name, scopes string) (file, secret string) {
	t.Helper()
	code, out, errs := runCLI(t, "api", "token", "create", "--name", name, "--scope", scopes, "--api.data", apiData, "--json")
	var nt rental.NewToken
	if code != 0 || json.Unmarshal([]byte(out), &nt) != nil || nt.Secret == "" {
		t.Fatalf("token create: %d %s %s", code, out, errs)
	}
	file = filepath.Join(t.TempDir(), name+".token")
	if err := os.WriteFile(file, []byte(nt.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, nt.Secret
}

// TestRentEndToEnd runs a miner (`nicompute miner` subprocess on the real
// engine), the allocation API (`nicompute api`, real HTTP, real SQLite) and
// the renter's CLI: a tenant allocates by requirement and logs in with
// OpenSSH through `rent ssh`; lists hold no secret; another tenant gets
// 404 and changes nothing; the admin sees the tenant; an idempotent retry
// answers the same allocation; killing the miner mid-lease flips the
// allocation offline and its restart back online; restarting the API
// loses nothing; the webhook receiver gets signed deliveries in order.
func TestRentEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a miner on Docker")
	}
	if _, err := os.Stat("/usr/bin/ssh"); err != nil {
		t.Skip("no OpenSSH client at /usr/bin/ssh")
	}
	w := newMinerWorld(t)
	e := newLeaseEnv(t, minerInstance(w.minerKey.SS58(), w.netuid))
	axonPort, sshBase, portsBase := nictest.FreePort(t), nictest.FreePort(t), nictest.FreePort(t)
	minerArgs := []string{"miner", "--subtensor.chain_endpoint", w.node.Endpoint(), "--wallet.path", w.wallets, "--wallet.name", "miner",
		"--netuid", strconv.Itoa(int(w.netuid)), "--axon.ip", "127.0.0.1", "--axon.port", strconv.Itoa(axonPort),
		"--ssh.port-range", fmt.Sprintf("%d-%d", sshBase, min(sshBase+9, 65535)), "--ssh.ip", "127.0.0.1",
		"--miner.ports.range", fmt.Sprintf("%d-%d", portsBase, min(portsBase+9, 65535)),
		"--miner.image", e.image, "--miner.data", t.TempDir(), "--miner.binary", e.bin, "--miner.docker.network", e.network,
		"--miner.reserve.ram", "0", "--miner.reserve.disk", "0", "--miner.lease.ram", "256MiB", "--miner.chain-poll", "200ms"}
	lc := newLeaseClient(t, w.validator, "127.0.0.1:"+strconv.Itoa(axonPort), w.minerKey.SS58())
	probe := newLeaseRenter(t)
	startMiner := func() *minerProc {
		p := startMinerProc(t, e.bin, minerArgs, nil)
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, st, _ := lc.call(context.Background(), probe.status(), 5*time.Second); st == 404 || st == 403 {
				return p
			}
			if time.Now().After(deadline) {
				t.Fatalf("miner not up:\n%s", p.log)
			}
		}
	}
	miner := startMiner()

	// The validator verified the miner (its results, as it writes them).
	vdir := t.TempDir()
	vdb, err := sqlite.Open(context.Background(), filepath.Join(vdir, "validator.db"), sqlite.ValidatorSchema)
	if err != nil {
		t.Fatal(err)
	}
	uid, _, _ := w.client.UIDForHotkey(context.Background(), w.netuid, w.minerKey.SS58())
	if err := sqlite.NewValidatorStore(vdb).AddResult(context.Background(), market.PoGResult{Hotkey: w.minerKey.SS58(), UID: subnet.UID(uid),
		At: time.Now(), Outcome: market.PoGPass, Model: "NVIDIA H100 80GB HBM3", Count: 1}, 16); err != nil {
		t.Fatal(err)
	}
	vdb.Close()

	apiData := t.TempDir()
	alice, _ := createToken(t, apiData, "alice", "read,rent")
	bob, _ := createToken(t, apiData, "bob", "read,rent")
	admin, _ := createToken(t, apiData, "ops", "admin")
	apiArgs := []string{"api", "--netuid", strconv.Itoa(int(w.netuid)), "--subtensor.chain_endpoint", w.node.Endpoint(),
		"--wallet.path", w.wallets, "--wallet.name", "validator", "--api.listen", "127.0.0.1:0", "--api.data", apiData,
		"--api.validator-data", vdir, "--api.health-interval", "500ms", "--api.webhooks.allow-private"}
	apiRE := regexp.MustCompile(`allocation API on (http://127\.0\.0\.1:\d+)`)
	api := runInBackground(t, apiRE, apiArgs...)
	rent := func(token string, args ...string) (int, string, string) {
		t.Helper()
		i := slices.Index(args, "--")
		if i < 0 {
			i = len(args)
		}
		full := append(append(append([]string{"rent"}, args[:i]...), "--api.url", api.match, "--api.token-file", token), args[i:]...)
		return runCLI(t, full...)
	}
	show := func(token, id string) rental.Allocation {
		t.Helper()
		code, out, errs := rent(token, "show", id, "--json")
		var a rental.Allocation
		if code != 0 || json.Unmarshal([]byte(out), &a) != nil {
			t.Fatalf("show: %d %s %s", code, out, errs)
		}
		return a
	}

	hook := newHookReceiver(t)
	aliceSecret, err := os.ReadFile(alice)
	if err != nil {
		t.Fatal(err)
	}
	c, err := web.NewClient(api.match, strings.TrimSpace(string(aliceSecret)), nil)
	if err != nil {
		t.Fatal(err)
	}
	wh, err := c.CreateWebhook(context.Background(), rental.WebhookRequest{URL: hook.URL + "/events"})
	if err != nil {
		t.Fatal(err)
	}
	hook.mu.Lock()
	hook.secret = wh.Secret
	hook.mu.Unlock()

	code, out, errs := rent(alice, "offers", "--json")
	if code != 0 || !strings.Contains(out, `"miners":1`) || strings.Contains(out, "hotkeys") {
		t.Fatalf("offers: %d %s %s", code, out, errs)
	}
	key := newSSHKeyPair(t)
	create := []string{"create", "--gpus", "0", "--ssh-key", key.pub, "--duration", "1h", "--ports", "8888", "--idempotency-key", "order-1", "--json"}
	code, out, errs = rent(alice, create...)
	var a rental.Allocation
	if code != 0 || json.Unmarshal([]byte(out), &a) != nil || a.ID == "" || a.Host != "127.0.0.1" || a.Port < sshBase ||
		len(a.Ports) != 1 || a.Ports[0].Container != 8888 || a.Ports[0].Port < portsBase || !strings.Contains(errs, "allocating") {
		t.Fatalf("create: %d %s %s", code, out, errs)
	}
	code, out, _ = rent(alice, create...)
	var again rental.Allocation
	if code != 0 || json.Unmarshal([]byte(out), &again) != nil || again.ID != a.ID || len(e.containers(t)) != 1 {
		t.Fatalf("idempotent retry: %d %s, %d containers", code, out, len(e.containers(t)))
	}

	var sshOut string
	for range 20 {
		code, sshOut, errs = rent(alice, "ssh", a.ID, "-i", key.file, "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no",
			"-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "--", "echo", "hi-from-rent-ssh")
		if code == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code != 0 || !strings.Contains(sshOut, "hi-from-rent-ssh") {
		t.Fatalf("rent ssh: %d %q %s", code, sshOut, errs)
	}
	for _, args := range [][]string{{"list", "--json"}, {"list"}, {"show", a.ID, "--json"}} {
		code, out, _ := rent(alice, args...)
		if code != 0 || !strings.Contains(out, a.ID) || strings.Contains(out, "password\"") {
			t.Fatalf("rent %v: %d %s", args, code, out)
		}
	}
	if code, _, errs := rent(bob, "show", a.ID); code != 1 || !strings.Contains(errs, "404 not_found") {
		t.Fatalf("bob shows alice's allocation: %d %s", code, errs)
	}
	if code, _, errs := rent(bob, "stop", a.ID); code != 1 || !strings.Contains(errs, "404") {
		t.Fatalf("bob stops alice's allocation: %d %s", code, errs)
	}
	if got := show(admin, a.ID); got.Tenant != "alice" || got.MinerHotkey != w.minerKey.SS58() || got.State != market.AllocOnline {
		t.Fatalf("admin view %+v", got)
	}

	waitState := func(want market.AllocationState) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); show(alice, a.ID).State != want; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("allocation not %s: %+v", want, show(alice, a.ID))
			}
		}
	}
	miner.kill()
	waitState(market.AllocOffline)
	startMiner()
	waitState(market.AllocOnline)

	if code := api.stop(); code != 0 {
		t.Fatalf("api exit %d:\n%s", code, api.errb)
	}
	api = runInBackground(t, apiRE, apiArgs...)
	if got := show(alice, a.ID); got.State != market.AllocOnline || got.Port != a.Port || !got.ExpiresAt.Equal(a.ExpiresAt) {
		t.Fatalf("after an API restart: %+v", got)
	}

	code, out, errs = rent(alice, "stop", a.ID, "--json")
	if code != 0 || !strings.Contains(out, `"state":"ended"`) {
		t.Fatalf("stop: %d %s %s", code, out, errs)
	}
	if cs := e.containers(t); len(cs) != 0 {
		t.Fatalf("containers after stop: %+v", cs)
	}
	// Deliveries arrive in the order of the changes: allocated first, ended
	// last, offline and online alternating, at least once each (a loaded
	// machine may add a flip: the events are the changes that happened).
	ordered := func(got []string) bool {
		if len(got) < 4 || got[0] != market.EventAllocated || got[len(got)-1] != market.EventEnded {
			return false
		}
		for i, e := range got[1 : len(got)-1] {
			if want := []string{market.EventOffline, market.EventOnline}[i%2]; e != want {
				return false
			}
		}
		return len(got)%2 == 0
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got, bad := hook.got()
		if ordered(got) && bad == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook events %v (%d bad signatures), want allocated, offline, online (alternating), ended", got, bad)
		}
	}
}
