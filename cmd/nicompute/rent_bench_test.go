package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/sqlite"
	"github.com/nicompute/nicompute/internal/subnet"
)

// BenchmarkRentToSSH measures the time from a renter's command to a
// successful SSH login on one in-process miner on the real engine, through
// the allocation API (`nicompute rent create`: HTTP, a token, the API's
// matching, its signed Allocate) and, in the same run, directly with
// `nicompute allocate` (the wallet's hotkey, a record on disk). Each
// reports p50 and p95 in ms; the release after each login is not timed:
//
//	go test ./cmd/nicompute -run '^$' -bench RentToSSH -benchtime 10x
func BenchmarkRentToSSH(b *testing.B) {
	w := newMinerWorld(b)
	e := newLeaseEnv(b, "r"+randHex(b, 6))
	o := minerOpts(b, w, e)
	o.Log = nil
	m := startTestMinerProc(b, o)
	key := newSSHKeyPair(b)
	ctx := context.Background()
	uid, _, err := w.client.UIDForHotkey(ctx, w.netuid, w.minerKey.SS58())
	if err != nil {
		b.Fatal(err)
	}
	vdir, apiData := b.TempDir(), b.TempDir()
	vdb, err := sqlite.Open(ctx, filepath.Join(vdir, "validator.db"), sqlite.ValidatorSchema)
	if err != nil {
		b.Fatal(err)
	}
	if err := sqlite.NewValidatorStore(vdb).AddResult(ctx, market.PoGResult{Hotkey: w.minerKey.SS58(), UID: subnet.UID(uid),
		At: time.Now(), Outcome: market.PoGPass, Model: "NVIDIA H100 80GB HBM3", Count: 1}, 16); err != nil {
		b.Fatal(err)
	}
	vdb.Close()
	api, err := startAPI(ctx, apiOptions{NetUID: w.netuid, Hotkey: w.validator, Chain: w.client, DataDir: apiData, ValidatorDir: vdir,
		Listen: "127.0.0.1:0", MinerTimeout: time.Minute, Service: rental.Config{HealthInterval: time.Hour}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { api.Close() })
	token, _ := createToken(b, apiData, "bench", "read,rent")
	login := func(port int) {
		c, err := sshLogin(port, ssh.PublicKeys(key.signer), 30*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}

	b.Run("api", func(b *testing.B) {
		var lat []time.Duration
		for b.Loop() {
			t0 := time.Now()
			code, out, errs := runCLI(b, "rent", "create", "--gpus", "0", "--ssh-key", key.pub, "--duration", "10m", "--json", "--api.url", api.URL, "--api.token-file", token)
			var a rental.Allocation
			if code != 0 || json.Unmarshal([]byte(out), &a) != nil {
				b.Fatalf("rent create: %d %s %s", code, out, errs)
			}
			login(a.Port)
			lat = append(lat, time.Since(t0))
			b.StopTimer()
			if code, out, errs := runCLI(b, "rent", "stop", a.ID, "--api.url", api.URL, "--api.token-file", token); code != 0 {
				b.Fatalf("rent stop: %d %s %s", code, out, errs)
			}
			b.StartTimer()
		}
		reportPercentiles(b, lat)
	})

	b.Run("allocate", func(b *testing.B) {
		sel := []string{"--subtensor.chain_endpoint", w.node.Endpoint(), "--wallet.path", w.wallets, "--wallet.name", "validator",
			"--netuid", strconv.Itoa(int(w.netuid)), "--hotkey", m.Hotkey()}
		var lat []time.Duration
		for b.Loop() {
			t0 := time.Now()
			code, out, errs := runCLI(b, append([]string{"allocate", "--ssh-key", key.pub, "--ram", "256MiB", "--disk", "0", "--json"}, sel...)...)
			var got struct {
				Port int `json:"port"`
			}
			if code != 0 || json.Unmarshal([]byte(out), &got) != nil {
				b.Fatalf("allocate: %d %s %s", code, out, errs)
			}
			login(got.Port)
			lat = append(lat, time.Since(t0))
			b.StopTimer()
			if code, out, errs := runCLI(b, append([]string{"deallocate"}, sel...)...); code != 0 {
				b.Fatalf("deallocate: %d %s %s", code, out, errs)
			}
			b.StartTimer()
		}
		reportPercentiles(b, lat)
	})
}
