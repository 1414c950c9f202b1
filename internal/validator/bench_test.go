package validator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/chain/local"
	"github.com/nicompute/nicompute/internal/devnet"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/pog"
	"github.com/nicompute/nicompute/internal/sqlite"
	"github.com/nicompute/nicompute/internal/subnet"
)

// benchChildEnv, when set, makes the test binary run one validator sweep
// as BenchmarkSweep's child process instead of the tests.
const benchChildEnv = "NICOMPUTE_VALIDATOR_BENCH_CHILD"

// benchOptInEnv must be 1 for BenchmarkSweep to run.
const benchOptInEnv = "NICOMPUTE_BENCH_SWEEP"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(benchChildEnv); cfg != "" {
		os.Exit(benchChild(cfg))
	}
	os.Exit(m.Run())
}

// benchChildConfig is what the parent passes to the validator process.
type benchChildConfig struct {
	Endpoint string        `json:"endpoint"`
	NetUID   subnet.NetUID `json:"netuid"`
	Seed     string        `json:"seed"`
	Worker   string        `json:"worker"`
	DataDir  string        `json:"data_dir"`
	Workers  int           `json:"workers"`
}

// benchChildReport is what the validator process prints when its sweep is
// over.
type benchChildReport struct {
	SweepSeconds float64 `json:"sweep_seconds"`
	Results      int     `json:"results"`
	Passed       int     `json:"passed"`
	VmHWMKiB     int64   `json:"vmhwm_kib"`
	Reason       string  `json:"reason,omitempty"`
}

// BenchmarkSweep measures Proof-of-GPU sweeps of 256 simulated miners
// (NICOMPUTE_BENCH_MINERS) by a validator running alone in a child process
// (this test binary re-run), with the SQLite store and the real worker
// (the test build of nicompute): a first sweep, whose miners have no worker cache yet, and a
// second by a fresh validator process, whose miners keep the worker from
// the first (a nicompute miner's cache outlives leases and validator
// restarts). For each sweep it reports the wall-clock, the validator's
// peak RSS and the worker bytes the miners received. The miners are fake
// (axon, SSH server with an SFTP file system keeping hashes, not bytes,
// the sim worker in-process, the hash helper of protocol.HashCommand) and
// run in the parent, so the child's peak RSS is the validator's alone:
// VmHWM, read by the child from /proc just after the sweep, is the honest
// figure. (The kernel's maxrss of a child overstates it: Go starts
// children with CLONE_VM|CLONE_VFORK, and exec records the high-water mark
// of the memory the child shared with the parent until then.)
// Opt-in: NICOMPUTE_BENCH_SWEEP=1 go test ./internal/validator -run '^$' -bench Sweep -benchtime 1x -timeout 30m
func BenchmarkSweep(b *testing.B) {
	if os.Getenv(benchOptInEnv) != "1" {
		b.Skipf("opt-in: set %s=1 (starts 256 fake miners and a validator process)", benchOptInEnv)
	}
	miners := 256
	if v := os.Getenv("NICOMPUTE_BENCH_MINERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("NICOMPUTE_BENCH_MINERS=%q", v)
		}
		miners = n
	}
	worker := nictest.BuildNicompute(b)
	c, l, endpoint := testSubnetAt(b, miners)
	models := []market.GPUModel{model(b, "NVIDIA H200"), model(b, "NVIDIA H100 80GB HBM3"), model(b, "NVIDIA A100-SXM4-80GB")}
	var fakes []*fakeMiner
	for i, id := range l.Miners {
		m := models[i%len(models)]
		fm := startFakeMiner(b, devnet.MinerIP(i), id.Hotkey, minerBehavior{
			script: simWorker(m, 1), cache: true,
			specs: &market.Specs{GPU: market.GPUSpecs{Count: 1, Details: []market.GPUDevice{{Name: m.Name}}}},
		})
		serve(b, c, l.NetUID, id, fm)
		fakes = append(fakes, fm)
	}
	uploaded := func() int64 {
		var n int64
		for _, fm := range fakes {
			n += fm.fs.written.Load()
		}
		return n
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for sweep := 1; sweep <= 2; sweep++ {
			before := uploaded()
			rep := runBenchChild(b, benchChildConfig{
				Endpoint: endpoint, NetUID: l.NetUID, Seed: hex.EncodeToString(l.Validator.Hotkey.Seed()),
				Worker: worker, DataDir: b.TempDir(), Workers: pog.MaxWorkers,
			})
			if rep.Passed != miners {
				b.Fatalf("sweep %d: %d of %d miners passed (%s)", sweep, rep.Passed, rep.Results, rep.Reason)
			}
			b.ReportMetric(rep.SweepSeconds, fmt.Sprintf("sweep%d-s", sweep))
			b.ReportMetric(float64(rep.VmHWMKiB)/1024, fmt.Sprintf("VmHWM%d-MiB", sweep))
			b.ReportMetric(float64(uploaded()-before)/(1<<20), fmt.Sprintf("upload%d-MiB", sweep))
		}
	}
}

// runBenchChild runs one validator sweep in a child process.
func runBenchChild(b *testing.B, cfg benchChildConfig) benchChildReport {
	b.Helper()
	raw, _ := json.Marshal(cfg)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchChildEnv+"="+string(raw))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		b.Fatalf("validator process: %v\n%s", err, tail(errb.String(), 4000))
	}
	var rep benchChildReport
	if err := json.Unmarshal(lastLine(out.Bytes()), &rep); err != nil {
		b.Fatalf("validator process report %q: %v", out.String(), err)
	}
	return rep
}

func lastLine(b []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return lines[len(lines)-1]
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// benchChild runs in the child process: one sweep, then the report on
// stdout.
func benchChild(raw string) int {
	var cfg benchChildConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bad config:", err)
		return 2
	}
	ctx := context.Background()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	seed, err := hex.DecodeString(cfg.Seed)
	if err != nil {
		return fail(err)
	}
	hotkey, err := keys.FromSeed(seed)
	if err != nil {
		return fail(err)
	}
	chain, err := local.Dial(ctx, cfg.Endpoint)
	if err != nil {
		return fail(err)
	}
	defer chain.Close()
	db, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "validator.db"), sqlite.ValidatorSchema)
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	store := sqlite.NewValidatorStore(db)
	d := axon.NewDendrite(hotkey)
	defer d.Close()
	start := time.Now()
	s, err := New(ctx, Deps{Chain: chain, Store: store, Axon: d}, Config{
		NetUID: cfg.NetUID, Hotkey: hotkey, PoGInterval: 1 << 30, WeightsInterval: 1 << 30,
		PollInterval: 100 * time.Millisecond, HardwareQuery: true,
		// 64 miners at once on a small machine: 1.5 s of extra slack for
		// the simulated GPUs (0.05 × 30 s); longer uploads than a lease's
		// network would need.
		PoG: PoGConfig{Worker: cfg.Worker, AllowSimulated: true, SimTimeScale: 0.05, RetryLimit: 1,
			MaxRandomDelay: -1, MaxWorkers: cfg.Workers, UploadTimeout: 10 * time.Minute,
			Policy: lenientPolicy()},
	})
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	for {
		if _, ok, _ := store.State(ctx, StateLastSweep); ok {
			break
		}
		if time.Since(start) > 20*time.Minute {
			return fail(fmt.Errorf("no sweep within 20 minutes"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	rep := benchChildReport{SweepSeconds: time.Since(start).Seconds(), VmHWMKiB: vmHWM()}
	results, _ := store.Results(ctx, 1)
	for _, rs := range results {
		rep.Results++
		if rs[0].Outcome == OutcomePass {
			rep.Passed++
		} else if rep.Reason == "" {
			rep.Reason = rs[0].Reason
		}
	}
	b, _ := json.Marshal(rep)
	fmt.Println(string(b))
	return 0
}

// vmHWM reads this process's peak resident set from /proc (KiB).
func vmHWM() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return -1
}
