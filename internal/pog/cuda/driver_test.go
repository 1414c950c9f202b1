package cuda

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/pog"
)

func TestMissingDriverIsAClearError(t *testing.T) {
	_, err := Backend{LibCUDA: "/nonexistent/libcuda.so.1"}.Open(context.Background())
	if !errors.Is(err, ErrNoDriver) {
		t.Fatalf("Open = %v, want ErrNoDriver", err)
	}
	if !strings.Contains(err.Error(), "NVIDIA driver library") || !strings.Contains(err.Error(), "/nonexistent/libcuda.so.1") {
		t.Errorf("error %q does not say which library is missing and why it matters", err)
	}
}

func TestMissingCUBLASIsAClearError(t *testing.T) {
	d, err := loadDriver("", "/nonexistent/libcublas.so.12")
	if errors.Is(err, ErrNoDriver) {
		t.Skip("no libcuda on this machine, cannot get as far as cuBLAS")
	}
	if d != nil || !errors.Is(err, ErrNoCUBLAS) {
		t.Fatalf("loadDriver = %v, want ErrNoCUBLAS", err)
	}
}

// openGPU opens the backend or skips: the tests below need a real GPU.
func openGPU(t *testing.T) []pog.Device {
	t.Helper()
	devs, err := Backend{}.Open(context.Background())
	if err != nil {
		t.Skipf("needs an NVIDIA GPU with driver and cuBLAS: %v", err)
	}
	t.Cleanup(func() {
		for _, d := range devs {
			d.Close()
		}
	})
	return devs
}

// With a driver library but no usable GPU (this machine may have one
// installed without a device), Open fails with the driver's own result.
func TestDriverWithoutDevice(t *testing.T) {
	d, err := loadDriver("", "")
	if err != nil {
		t.Skipf("needs libcuda and cuBLAS installed: %v", err)
	}
	var v int32
	if res := d.cuDriverGetVersion(&v); res != 0 || v < 11000 {
		t.Fatalf("cuDriverGetVersion = %d, version %d", res, v)
	}
	if res := d.cuInit(0); res == 0 {
		t.Skip("a GPU is present; see TestGPUSession")
	} else {
		err := d.cuErr("cuInit", res)
		var ce *Error
		if !errors.As(err, &ce) || ce.Name == "" || !strings.HasPrefix(ce.Name, "CUDA_ERROR_") {
			t.Errorf("cuInit error %v lacks the result name", err)
		}
		t.Logf("driver %d.%d at %s, cuBLAS at %s; cuInit: %v", v/1000, v%1000/10, d.cudaPath, d.cublasPath, err)
	}
	if _, err := (Backend{}).Open(context.Background()); err == nil || !strings.Contains(err.Error(), "cuInit") {
		t.Errorf("Open without a device = %v, want the cuInit failure", err)
	}
}

// TestGPUSession measures the GPUs of this machine (phase times, rate and
// the error of 64 proven elements at n = 8192), then runs a whole session
// against the validator side with the built-in table and logs what it
// identifies; the proofs must hold.
func TestGPUSession(t *testing.T) {
	devs := openGPU(t)
	for _, d := range devs {
		t.Logf("GPU %d: %s, %.1f GB, %s", d.Info().Index, d.Info().Name, float64(d.Info().MemoryBytes)/1e9, d.Info().UUID)
		d.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := pog.Bench(ctx, Backend{}, pog.BenchOptions{N: 8192, Verify: 64})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		t.Logf("bench: %+v", r)
		if r.Err != "" || r.Checked != 64 || r.Failed != 0 {
			t.Errorf("GPU %d: %d of %d checked elements failed: %s", r.GPU.Index, r.Failed, r.Checked, r.Err)
		}
	}

	reqR, reqW := io.Pipe()
	respR, respW := io.Pipe()
	served := make(chan error, 1)
	go func() {
		err := pog.Serve(ctx, Backend{}, reqR, respW)
		respW.CloseWithError(errors.Join(err, io.EOF))
		served <- err
	}()
	result, err := pog.Check(ctx, respR, reqW, pog.CheckConfig{})
	reqW.Close()
	respR.Close()
	if serr := <-served; serr != nil {
		t.Errorf("Serve: %v", serr)
	}
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	t.Logf("session: claimed %q, n = %d, %s; %d/%d GPUs proved; identified %q × %d: %s",
		result.Claimed, result.N, result.Elapsed, result.Passed, len(result.GPUs), result.Model, result.Count, result.Reason)
	for _, g := range result.GPUs {
		t.Logf("GPU %d: n %d, timings %+v, err %q", g.Index, g.N, g.Timings, g.Err)
	}
	if !result.Verified {
		t.Errorf("proofs failed: %s", result.Reason)
	}
}
