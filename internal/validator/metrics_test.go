package validator

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nicompute/nicompute/internal/market"
)

// TestServiceMetricsAndStatus runs one sweep and one weights round and
// reads them back from the registry and from Status and Results.
func TestServiceMetricsAndStatus(t *testing.T) {
	c, l := testSubnet(t, 2)
	h100 := model(t, "NVIDIA H100 80GB HBM3")
	serve(t, c, l.NetUID, l.Miners[0], startFakeMinerAs(t, "127.0.0.2", l.Miners[0], minerBehavior{script: simWorker(h100, 1)}))
	serve(t, c, l.NetUID, l.Miners[1], startFakeMinerAs(t, "127.0.0.3", l.Miners[1], minerBehavior{refuse: true}))
	reg := prometheus.NewRegistry()
	store := newMemStore()
	s, report := testService(t, c, l, store, func(cfg *Config) { cfg.Metrics = reg })
	waitFor(t, 30*time.Second, "the sweep", func() bool { return strings.Contains(report.String(), "sweep finished") })
	waitFor(t, 30*time.Second, "weights", func() bool { return s.Status().Weights.LastOK > 0 })

	want := `
# HELP nicompute_validator_pog_runs_total Finished Proof-of-GPU tests by result (pass, fail, unreachable) and reason code.
# TYPE nicompute_validator_pog_runs_total counter
nicompute_validator_pog_runs_total{reason="unreachable",result="unreachable"} 1
nicompute_validator_pog_runs_total{reason="ok",result="pass"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "nicompute_validator_pog_runs_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "nicompute_validator_pog_duration_seconds"); n != 2 {
		t.Fatalf("%d duration series, want pass and unreachable", n)
	}
	if got := testutil.ToFloat64(s.metrics.weights.WithLabelValues(WeightsModeCommit, "ok")); got < 1 { // the embedded chain has commit-reveal on
		t.Fatalf("weights committed ok = %v", got)
	}
	if got := testutil.ToFloat64(s.metrics.lastSet); got != float64(s.Status().Weights.LastOK) {
		t.Fatalf("weights last block = %v, status %+v", got, s.Status().Weights)
	}
	wantScores := fmt.Sprintf(`
# HELP nicompute_validator_miner_score Each miner's current score (0 to 1) as the next weights would use it.
# TYPE nicompute_validator_miner_score gauge
nicompute_validator_miner_score{uid="%d"} %v
nicompute_validator_miner_score{uid="%d"} 0
`, l.Miners[0].UID, market.Score(market.DefaultGPUTable(), h100.Name, 1), l.Miners[1].UID)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantScores), "nicompute_validator_miner_score"); err != nil {
		t.Fatal(err)
	}
	if testutil.CollectAndCount(reg, "nicompute_chain_block") != 1 {
		t.Fatal("no chain block gauge")
	}

	st := s.Status()
	if st.Weights.Mode != WeightsModeCommit || !strings.Contains(st.Weights.Summary, "committed for reveal in round") || st.Weights.Result != "ok" || st.LastSweep == 0 || !st.Permit || !st.ChainOK || st.UID != l.Validator.UID {
		t.Fatalf("status %+v", st)
	}
	rs := s.Results()
	if len(rs) != 2 || rs[0].At.After(rs[1].At) {
		t.Fatalf("results %+v", rs)
	}
	if mg := s.Metagraph(); mg == nil || len(mg.Neurons) != 3 {
		t.Fatalf("metagraph %+v", mg)
	}
}

func TestReasonClass(t *testing.T) {
	for _, tc := range []struct {
		outcome Outcome
		reason  string
		want    string
	}{
		{OutcomePass, "claimed NVIDIA H200 confirmed: took 3s", "ok"},
		{OutcomeUnreachable, "allocation refused: all GPUs are leased (status 409)", "allocation_refused"},
		{OutcomeUnreachable, "dial tcp 10.0.0.1:4444: connection refused", "ssh_unreachable"},
		{OutcomeUnreachable, "upload worker: sftp: permission denied", "upload_failed"},
		{OutcomeFail, "no valid proofs after the challenge: worker error: boom", "proof_invalid"},
		{OutcomeFail, "1 of 2 GPUs proved their computation, 2 required", "proof_invalid"},
		{OutcomeFail, "no commitment within 2m at n = 4096: slower than any model that suits the test", "too_slow"},
		{OutcomeFail, "not tested: specs name no GPU of the GPU table", "not_tested"},
		{OutcomeFail, "simulated GPU refused outside devnet", "simulated_refused"},
		{OutcomeFail, `claimed "X" is not in the GPU table; no model in the table is consistent with 1s at n = 8`, "model_unidentified"},
		{OutcomeFail, "something new", "other"},
		{OutcomeFail, "", "none"},
	} {
		if got := reasonClass(tc.outcome, tc.reason); got != tc.want {
			t.Errorf("reasonClass(%s, %q) = %q, want %q", tc.outcome, tc.reason, got, tc.want)
		}
	}
}
