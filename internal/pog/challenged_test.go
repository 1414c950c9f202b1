package pog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// A worker holds the seeds, so once it has the challenge it can check its
// own proofs and, when they would fail, answer anything but proofs. Check
// must mark every such session Challenged so that the validator counts it
// as a failed proof; failures before the challenge must not be marked.
func TestChallengedMarksFailuresAfterTheChallenge(t *testing.T) {
	root := strings.Repeat("ab", 32)
	commit := fmt.Sprintf(`{"type":"commit","gpu":0,"n":256,"root":"%s","timings":{"generate_ms":1,"multiply_ms":1,"hash_ms":1,"tree_ms":1}}`+"\n", root)
	commitErr := `{"type":"commit","gpu":0,"n":0,"root":"` + strings.Repeat("00", 32) + `","timings":{"generate_ms":0,"multiply_ms":0,"hash_ms":0,"tree_ms":0},"error":"out of memory"}` + "\n"
	resident := `{"type":"resident","gpu":0,"roots":["` + strings.Repeat(root+`","`, ResidencyPasses-1) + root + `"]}` + "\n"
	residentErr := `{"type":"resident","gpu":0,"roots":[],"error":"no commitment"}` + "\n"
	stallAfterChallenge := func(ctx context.Context, in io.Reader, out io.Writer) error {
		lr := NewLineReader(in)
		if _, err := io.WriteString(out, goodHello); err != nil {
			return err
		}
		for _, l := range []string{commit, resident} {
			if err := skipPings(lr, out); err != nil {
				return err
			}
			if _, err := io.WriteString(out, l); err != nil {
				return err
			}
		}
		if _, err := lr.ReadLine(MaxChallengeLine); err != nil {
			return err
		}
		// Never answer; end when the validator closes the session.
		_, err := io.Copy(io.Discard, in)
		return err
	}
	tests := []struct {
		name       string
		worker     func(ctx context.Context, in io.Reader, out io.Writer) error
		challenged bool
		wantErr    bool
	}{
		{"worker error instead of proofs", rawWorker(goodHello, commit, resident, `{"type":"error","message":"cuda: lost C"}`+"\n"), true, true},
		{"garbage instead of proofs", rawWorker(goodHello, commit, resident, "not JSON\n"), true, true},
		{"end of stream after the challenge", rawWorker(goodHello, commit, resident), true, true},
		{"per-GPU error instead of proofs", rawWorker(goodHello, commit, resident, `{"type":"proofs","gpus":[{"proofs":[],"openings":[],"error":"lost C"}]}`+"\n"), true, false},
		{"no proofs in time", stallAfterChallenge, true, true},
		{"worker error instead of a commitment", rawWorker(goodHello, `{"type":"error","message":"out of memory"}`+"\n"), false, true},
		{"end of stream before the commitment", rawWorker(goodHello), false, true},
		{"per-GPU error in the commitment", rawWorker(goodHello, commitErr, residentErr, `{"type":"proofs","gpus":[{"proofs":[]}]}`+"\n"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := runSessionWith(t, tt.worker, CheckConfig{Rand: detRand(4), ProofTimeout: 300 * time.Millisecond, Policy: lenient()})
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want an error: %v", err, tt.wantErr)
			}
			if got := res != nil && res.Challenged; got != tt.challenged {
				t.Fatalf("Challenged = %v, want %v (err %v, result %+v)", got, tt.challenged, err, res)
			}
			if res != nil && res.Model != "" {
				t.Fatalf("a failed session identified %q", res.Model)
			}
			if tt.challenged && err == nil {
				if g := res.GPUs[0]; !g.Challenged || g.Err == "" {
					t.Fatalf("GPU 0: %+v, want challenged with an error", g)
				}
			}
		})
	}
}

// The hello must be complete within HelloTimeout: a worker that sends part
// of a line and stalls does not keep the session open.
func TestHelloTimeoutCoversTheWholeLine(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
	}{
		{"nothing", ""},
		{"part of the hello", goodHello[:40]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			worker := func(ctx context.Context, in io.Reader, out io.Writer) error {
				if _, err := io.WriteString(out, tt.prefix); err != nil {
					return err
				}
				_, err := io.Copy(io.Discard, in)
				return err
			}
			start := time.Now()
			_, err := runSessionWith(t, worker, CheckConfig{Rand: detRand(1), HelloTimeout: 200 * time.Millisecond})
			if !errors.Is(err, ErrNoHello) {
				t.Fatalf("error %v, want ErrNoHello", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("gave up after %s", d)
			}
		})
	}
}

// GPUs caps the GPUs tested and credited at the count the miner declared.
func TestGPUsCapsTheCredit(t *testing.T) {
	res, err := runSession(t, claimCPU("Test Slow", 4), CheckConfig{Rand: detRand(1), GPUs: 2, Policy: lenient()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Model != "Test Slow" || res.Count != 2 || len(res.GPUs) != 2 {
		t.Fatalf("model %q count %d, %d GPUs tested; want Test Slow × 2 (%s)", res.Model, res.Count, len(res.GPUs), res.Reason)
	}
}
