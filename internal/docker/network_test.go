package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/nicompute/nicompute/internal/nictest"
)

// TestEnsureNetworkConverges races several runtimes creating one lease
// network, as devnet's miners do on start, and checks that one network of
// that name is left and every runtime accepts it.
func TestEnsureNetworkConverges(t *testing.T) {
	cli := nictest.RequireDocker(t)
	b := make([]byte, 4)
	rand.Read(b)
	name := "nicompute-test-net-" + hex.EncodeToString(b)
	t.Cleanup(func() { removeNetworks(t, cli, name) })
	bin := filepath.Join(t.TempDir(), "nicompute")
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	newRuntime := func(i int) *Runtime {
		r, err := New(Config{Instance: "race" + string(rune('a'+i)), BinaryPath: bin, Network: name, Logger: nictest.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		r := newRuntime(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = r.ensureNetwork(ctx)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("runtime %d: %v", i, err)
		}
	}
	if got := countNetworks(t, cli, name); got != 1 {
		t.Fatalf("%d networks named %s after the race, want 1", got, name)
	}

	// A duplicate left behind (the engine accepts one before API 1.44) is
	// removed by the next runtime that looks, and the older network stays.
	r := newRuntime(n)
	before, err := r.networksNamed(ctx, name)
	if err != nil || len(before) != 1 {
		t.Fatalf("networks: %v %v", before, err)
	}
	if _, err := cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "bridge", Options: map[string]string{iccOption: "false"}}); err != nil {
		t.Skipf("engine refuses duplicate network names, nothing to reconcile: %v", err)
	}
	if got := countNetworks(t, cli, name); got != 2 {
		t.Fatalf("duplicate not created: %d networks", got)
	}
	kept, err := r.ensureNetwork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kept.ID != before[0].ID {
		t.Fatalf("kept %s, want the older %s", kept.ID, before[0].ID)
	}
	after, err := r.networksNamed(ctx, name)
	if err != nil || len(after) != 1 || after[0].ID != before[0].ID {
		t.Fatalf("after reconciling: %v %v; want only %s", after, err, before[0].ID)
	}
}

func countNetworks(t *testing.T, cli *client.Client, name string) int {
	t.Helper()
	res, err := cli.NetworkList(context.Background(), client.NetworkListOptions{Filters: make(client.Filters).Add("name", name)})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, it := range res.Items {
		if it.Name == name {
			n++
		}
	}
	return n
}

func removeNetworks(t *testing.T, cli *client.Client, name string) {
	res, err := cli.NetworkList(context.Background(), client.NetworkListOptions{Filters: make(client.Filters).Add("name", name)})
	if err != nil {
		return
	}
	for _, it := range res.Items {
		if it.Name == name {
			cli.NetworkRemove(context.Background(), it.ID, client.NetworkRemoveOptions{})
		}
	}
}
