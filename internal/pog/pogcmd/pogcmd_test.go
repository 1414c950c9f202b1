package pogcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/pog"
)

func runCmd(t *testing.T, in io.Reader, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := New("pog", Options{In: in, Out: &out, Err: &errb})
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestInfo(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		backend   string
		simulated bool
		gpus      int
		gpuName   string
	}{
		{"cpu", []string{"info", "--backend", "cpu", "--cpu-devices", "2"}, "cpu", false, 2, "cpu"},
		{"default is cpu", []string{"info"}, "cpu", false, 1, "cpu"},
		{"simulate one", []string{"info", "--simulate", "NVIDIA H100 80GB HBM3"}, "sim", true, 1, "NVIDIA H100 80GB HBM3"},
		{"simulate count", []string{"info", "--simulate", "2xNVIDIA H100"}, "sim", true, 2, "NVIDIA H100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runCmd(t, nil, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			var info pog.Info
			if err := json.Unmarshal([]byte(out), &info); err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
			if err := info.Validate(); err != nil {
				t.Errorf("info does not validate: %v", err)
			}
			if info.Backend != tt.backend || info.Simulated != tt.simulated || len(info.GPUs) != tt.gpus || info.GPUs[0].Name != tt.gpuName {
				t.Errorf("info %+v", info)
			}
		})
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"info", "--backend", "tpu"},
		{"info", "--simulate", "NVIDIA Imaginary 1TB"},
		{"info", "--backend", "cpu", "--simulate", "NVIDIA H100"},
		{"info", "--backend", "sim"},
		{"bench", "--n", "300"},
	} {
		if _, err := runCmd(t, nil, args...); err == nil {
			t.Errorf("%v succeeded", args)
		}
	}
}

func TestBench(t *testing.T) {
	out, err := runCmd(t, nil, "bench", "--n", "256", "--verify", "16", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var res []pog.BenchResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if len(res) != 1 || res[0].N != 256 || res[0].Checked != 16 || res[0].Failed != 0 || res[0].Timings.MultiplyMS <= 0 {
		t.Errorf("bench %+v", res)
	}
	text, err := runCmd(t, nil, "bench", "--n", "256")
	if err != nil || !strings.Contains(text, "MULTIPLY ms") {
		t.Errorf("table output %q, %v", text, err)
	}
}

// The compute command speaks the session protocol on stdin/stdout: a
// simulated H100 passes a devnet validator and is refused by a production
// one.
func TestComputeSession(t *testing.T) {
	for _, tt := range []struct {
		name      string
		allowSim  bool
		wantModel string
	}{
		{"devnet", true, "NVIDIA H100 80GB HBM3"},
		{"production", false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			reqR, reqW := io.Pipe()
			respR, respW := io.Pipe()
			done := make(chan error, 1)
			go func() {
				cmd := New("pog", Options{In: reqR, Out: respW, Err: io.Discard})
				cmd.SetArgs([]string{"compute", "--simulate", "NVIDIA H100 80GB HBM3"})
				cmd.SilenceUsage, cmd.SilenceErrors = true, true
				err := cmd.ExecuteContext(ctx)
				respW.CloseWithError(errors.Join(err, io.EOF))
				done <- err
			}()
			policy := pog.DefaultPolicy()
			policy.AllowSimulated = tt.allowSim
			res, err := pog.Check(ctx, respR, reqW, pog.CheckConfig{Policy: &policy, SimTimeScale: 0.2})
			reqW.Close()
			respR.Close()
			if werr := <-done; werr != nil {
				t.Errorf("compute: %v", werr)
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Model != tt.wantModel {
				t.Fatalf("model %q (%s), want %q", res.Model, res.Reason, tt.wantModel)
			}
			if tt.allowSim && (res.Count != 1 || res.N != 113664 || res.GPUs[0].N != pog.SimN) {
				t.Errorf("count %d, n %d, committed n %d", res.Count, res.N, res.GPUs[0].N)
			}
			if !tt.allowSim && res.Reason != pog.ReasonSimulatedRefused {
				t.Errorf("reason %q", res.Reason)
			}
		})
	}
}

func TestDevnetSimulation(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/pog-simulate"
	if err := os.WriteFile(file, []byte("2xNVIDIA H200\n# ignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	long := dir + "/long"
	if err := os.WriteFile(long, []byte(strings.Repeat("x", 300)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		file    string
		env     string
		args    []string
		backend string
		gpus    int
		gpuName string
		wantErr bool
	}{
		{"file", file, "", nil, "sim", 2, "NVIDIA H200", false},
		{"env wins", file, "NVIDIA A100-SXM4-80GB", nil, "sim", 1, "NVIDIA A100-SXM4-80GB", false},
		{"backend flag wins", file, "", []string{"--backend", "cpu"}, "cpu", 1, "cpu", false},
		{"simulate flag wins", file, "", []string{"--simulate", "NVIDIA H100"}, "sim", 1, "NVIDIA H100", false},
		{"no file", dir + "/absent", "", nil, "cpu", 1, "cpu", false},
		{"disabled", "-", "", nil, "cpu", 1, "cpu", false},
		{"too long", long, "", nil, "", 0, "", true},
		{"unknown model", file, "NVIDIA Imaginary", nil, "", 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			cmd := New("pog", Options{Out: &out, Err: &errb, SimulateFile: tt.file, Getenv: func(k string) string {
				if k == SimulateEnv {
					return tt.env
				}
				return ""
			}})
			cmd.SetArgs(append([]string{"info"}, tt.args...))
			cmd.SetOut(&out)
			cmd.SetErr(&errb)
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			err := cmd.ExecuteContext(context.Background())
			if tt.wantErr {
				if err == nil {
					t.Fatalf("succeeded: %s", out.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var info pog.Info
			if err := json.Unmarshal(out.Bytes(), &info); err != nil {
				t.Fatal(err)
			}
			if info.Backend != tt.backend || len(info.GPUs) != tt.gpus || info.GPUs[0].Name != tt.gpuName || info.Simulated != (tt.backend == "sim") {
				t.Errorf("info %+v", info)
			}
		})
	}
}
