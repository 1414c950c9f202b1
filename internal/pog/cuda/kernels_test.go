package cuda

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nicompute/nicompute/internal/pog"
)

// The embedded PTX is well-formed enough to load: a version, the sm_70
// virtual target, 64-bit addresses, and the three kernels with the
// parameter lists the launches pass.
func TestPTXWellFormed(t *testing.T) {
	ptx := PTX()
	for _, want := range []string{".version ", ".target sm_70", ".address_size 64"} {
		if !strings.Contains(ptx, want) {
			t.Errorf("PTX lacks %q", want)
		}
	}
	entries := map[string][]string{
		kernelGenerate: {"u64", "u32", "u32", "u32", "u32", "u32"},
		kernelLeaves:   {"u64", "u64", "u64"},
		kernelLevel:    {"u64", "u64", "u64"},
	}
	for name, params := range entries {
		re := regexp.MustCompile(`(?s)\.visible \.entry ` + name + `\((.*?)\)`)
		m := re.FindStringSubmatch(ptx)
		if m == nil {
			t.Errorf("PTX has no entry %s", name)
			continue
		}
		got := regexp.MustCompile(`\.param \.(\w+) `).FindAllStringSubmatch(m[1], -1)
		var types []string
		for _, g := range got {
			types = append(types, g[1])
		}
		if fmt.Sprint(types) != fmt.Sprint(params) {
			t.Errorf("%s parameters %v, launches pass %v", name, types, params)
		}
	}
	if strings.Count(ptx, "{") != strings.Count(ptx, "}") {
		t.Errorf("unbalanced braces in PTX")
	}
}

// ptxas (from a CUDA toolkit, when installed) assembles the PTX for every
// architecture the GPU table covers.
func TestPTXAssembles(t *testing.T) {
	ptxas, err := exec.LookPath("ptxas")
	if err != nil {
		t.Skip("needs ptxas (CUDA toolkit) to assemble the PTX")
	}
	src := filepath.Join(t.TempDir(), "kernels.ptx")
	if err := os.WriteFile(src, []byte(PTX()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, arch := range []string{"sm_70", "sm_80", "sm_86", "sm_89", "sm_90"} {
		out, err := exec.Command(ptxas, "-arch="+arch, "-o", os.DevNull, src).CombinedOutput()
		if err != nil {
			t.Errorf("ptxas -arch=%s: %v\n%s", arch, err, out)
		}
	}
}

// The embedded PTX is what kernels.cu compiles to (with the toolkit that
// generated it).
func TestPTXUpToDate(t *testing.T) {
	nvcc, err := exec.LookPath("nvcc")
	if err != nil {
		t.Skip("needs nvcc (CUDA toolkit) to regenerate the PTX")
	}
	ver, _ := exec.Command(nvcc, "--version").Output()
	release := regexp.MustCompile(`release [0-9.]+, V[0-9.]+`).Find(ver)
	if release == nil || !strings.Contains(PTX(), string(release)) {
		t.Skipf("nvcc %q differs from the one that generated kernels.ptx", release)
	}
	out := filepath.Join(t.TempDir(), "kernels.ptx")
	if b, err := exec.Command(nvcc, "-ptx", "-arch=compute_70", "-O3", "-o", out, "kernels.cu").CombinedOutput(); err != nil {
		t.Fatalf("nvcc: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != PTX() {
		t.Errorf("kernels.ptx is stale: run go generate ./internal/pog/cuda")
	}
}

// halfBits is the fp16 encoding of k/2048, exact for k in [−2048, 2047].
func halfBits(k int16) uint16 {
	if k == 0 {
		return 0
	}
	var sign uint16
	a := int(k)
	if a < 0 {
		sign, a = 0x8000, -a
	}
	e := 0
	for 1<<(e+1) <= a {
		e++
	}
	var mant int
	if e <= 10 {
		mant = (a << (10 - e)) & 0x3FF
	} else {
		mant = (a >> (e - 10)) & 0x3FF
	}
	return sign | uint16(e+4)<<10 | uint16(mant)
}

func TestHalfBits(t *testing.T) {
	for k, want := range map[int16]uint16{1: 0x1000, -1: 0x9000, 1024: 0x3800, -2048: 0xBC00, 2047: 0x3BFF, 3: 0x1600} {
		if got := halfBits(k); got != want {
			t.Errorf("halfBits(%d) = %#04x, want %#04x", k, got, want)
		}
	}
}

// TestKernelSourceOnHost compiles kernels.cu's per-thread functions for the
// host with nvcc and checks they produce the bytes internal/pog does: the
// generated fp16 matrices, the leaf hashes and a Merkle level. It checks the
// kernel source, not the GPU's execution of it.
func TestKernelSourceOnHost(t *testing.T) {
	nvcc, err := exec.LookPath("nvcc")
	if err != nil {
		t.Skip("needs nvcc (CUDA toolkit) to compile the kernels for the host")
	}
	bin := filepath.Join(t.TempDir(), "kernels_host")
	if out, err := exec.Command(nvcc, "-O2", "-o", bin, filepath.Join("testdata", "kernels_host.cu")).CombinedOutput(); err != nil {
		t.Fatalf("nvcc: %v\n%s", err, out)
	}
	run := func(stdin []byte, args ...string) []byte {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kernels_host %v: %v", args, err)
		}
		return out
	}
	const n = 512
	seed := pog.Seed{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01}

	t.Run("generate", func(t *testing.T) {
		for _, m := range []pog.Matrix{pog.MatrixA, pog.MatrixB} {
			k0, k1, c2, c3 := pog.KernelWords(seed, m)
			got := run(nil, "gen", fmt.Sprint(n), fmt.Sprint(k0), fmt.Sprint(k1), fmt.Sprint(c2), fmt.Sprint(c3))
			if len(got) != 2*n*n {
				t.Fatalf("%d bytes, want %d", len(got), 2*n*n)
			}
			row := make([]int16, n)
			for i := range n {
				pog.FillRow(row, seed, m, i)
				for k, v := range row {
					if h := binary.LittleEndian.Uint16(got[2*(i*n+k):]); h != halfBits(v) {
						t.Fatalf("matrix %d [%d][%d]: kernel %#04x, want fp16(%d/2048) = %#04x", m, i, k, h, v, halfBits(v))
					}
				}
			}
		}
	})

	t.Run("leaves", func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		c := make([]byte, 4*n*n)
		for i := 0; i < n*n; i++ {
			binary.LittleEndian.PutUint32(c[4*i:], math.Float32bits(float32(r.NormFloat64()*7.5)))
		}
		got := run(c, "leaves", fmt.Sprint(n))
		if len(got) != 32*pog.Leaves(n) {
			t.Fatalf("%d bytes, want %d", len(got), 32*pog.Leaves(n))
		}
		for l := 0; l < pog.Leaves(n); l++ {
			want := pog.LeafHash(c[l*pog.ChunkBytes : (l+1)*pog.ChunkBytes])
			if !bytes.Equal(got[32*l:32*l+32], want[:]) {
				t.Fatalf("leaf %d: kernel %x, want %x", l, got[32*l:32*l+32], want)
			}
		}
	})

	t.Run("level", func(t *testing.T) {
		for _, count := range []int{1, 2, 37, 1024} {
			leaves := make([]pog.Hash, count)
			in := make([]byte, 32*count)
			for i := range leaves {
				leaves[i] = sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(count)})
				copy(in[32*i:], leaves[i][:])
			}
			want := pog.BuildTree(leaves)
			got := run(in, "level", fmt.Sprint(count))
			next := leaves
			if len(want) > 1 {
				next = want[1]
			}
			if count == 1 {
				next = leaves // the one hash is carried up
			}
			if len(got) != 32*len(next) {
				t.Fatalf("count %d: %d bytes, want %d", count, len(got), 32*len(next))
			}
			for p, h := range next {
				if !bytes.Equal(got[32*p:32*p+32], h[:]) {
					t.Fatalf("count %d parent %d: kernel %x, want %x", count, p, got[32*p:32*p+32], h)
				}
			}
		}
	})
}
