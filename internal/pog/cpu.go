package pog

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"
)

// Backend opens the devices a worker computes on. It is implemented here
// (CPU, Sim) and by internal/pog/cuda.
type Backend interface {
	// Name is the backend's name in the hello ("cpu", "sim", "cuda").
	Name() string
	// Simulated reports whether the devices only pretend to be GPUs.
	Simulated() bool
	// Open returns the devices; the caller closes each.
	Open(ctx context.Context) ([]Device, error)
}

// Device is one GPU, or a stand-in for one, of an open backend. A Device is
// used by one goroutine at a time.
type Device interface {
	Info() GPUInfo
	// Compute generates A and B from the request's seed, computes
	// C = A·Bᵀ with fp32 accumulation, hashes C into a Merkle tree and
	// keeps C and the tree until the next Compute or Close.
	Compute(ctx context.Context, req DeviceRequest) (Commitment, error)
	// Prove opens the cells of the last Compute.
	Prove(ctx context.Context, cells []Cell) ([]Proof, error)
	// Residency runs the residency round (residency.go) over the last
	// Compute's C from nonce and returns every pass's root; it keeps what
	// Open needs until the next Compute.
	Residency(ctx context.Context, nonce Seed) ([]Hash, error)
	// Open opens chunks of the last Residency's passes.
	Open(ctx context.Context, ops []Opening) ([]OpeningProof, error)
	Close() error
}

// DeviceRequest is one GPU's share of a compute request.
type DeviceRequest struct {
	N            int
	Seed         Seed
	SimTimeScale float64
}

// CPU is the pure-Go backend, for tests and small n: it computes exactly
// what a GPU computes (fp16-exact inputs, fp32 accumulation), in parallel
// over Workers goroutines.
type CPU struct {
	// Devices is the number of stand-in devices (default 1).
	Devices int
	// Workers is the goroutines per multiplication (default GOMAXPROCS).
	Workers int
	// MaxN bounds the n a device accepts (default 8192: 768 MiB).
	MaxN int
}

// Name returns "cpu".
func (CPU) Name() string { return "cpu" }

// Simulated returns false: the CPU backend computes for real and says what
// it is.
func (CPU) Simulated() bool { return false }

// Open returns the stand-in devices.
func (c CPU) Open(context.Context) ([]Device, error) {
	n := max(c.Devices, 1)
	if n > MaxReportedGPUs {
		return nil, fmt.Errorf("cpu backend: %d devices, at most %d", n, MaxReportedGPUs)
	}
	devs := make([]Device, n)
	for i := range devs {
		devs[i] = &cpuDevice{
			info:    GPUInfo{Index: i, Name: "cpu", UUID: fmt.Sprintf("cpu-%d", i)},
			workers: c.Workers,
			maxN:    c.MaxN,
		}
	}
	return devs, nil
}

// cpuDevice computes on the CPU.
type cpuDevice struct {
	info    GPUInfo
	workers int
	maxN    int
	last    *cpuResult
}

func (d *cpuDevice) Info() GPUInfo { return d.info }

func (d *cpuDevice) Compute(ctx context.Context, req DeviceRequest) (Commitment, error) {
	d.last = nil
	maxN := d.maxN
	if maxN == 0 {
		maxN = 8192
	}
	if !validN(req.N) || req.N > maxN {
		return Commitment{}, fmt.Errorf("cpu backend: n = %d: want a multiple of %d in [%d, %d]", req.N, ChunkValues, MinN, maxN)
	}
	res, err := cpuCompute(ctx, req.N, req.Seed, d.workers, cpuOptions{})
	if err != nil {
		return Commitment{}, err
	}
	d.last = res
	return res.commitment(), nil
}

func (d *cpuDevice) Prove(_ context.Context, cells []Cell) ([]Proof, error) {
	if d.last == nil {
		return nil, fmt.Errorf("cpu backend: nothing computed")
	}
	return d.last.prove(cells)
}

func (d *cpuDevice) Residency(_ context.Context, nonce Seed) ([]Hash, error) {
	if d.last == nil {
		return nil, fmt.Errorf("cpu backend: nothing computed")
	}
	return d.last.residency(nonce), nil
}

func (d *cpuDevice) Open(_ context.Context, ops []Opening) ([]OpeningProof, error) {
	if d.last == nil || d.last.trees == nil {
		return nil, fmt.Errorf("cpu backend: no residency round")
	}
	return d.last.open(ops)
}

func (d *cpuDevice) Close() error { d.last = nil; return nil }

// cpuOptions alter the computation; the zero value is the honest one.
// Tests use them to build dishonest workers.
type cpuOptions struct {
	// roundInput, when set, rounds every input value before multiplying.
	roundInput func(float32) float32
	// tamper, when set, alters C before it is hashed.
	tamper func(c []float32, n int)
	// multiply, when set, replaces the honest multiplication.
	multiply func(c, a, b []float32, n int)
}

// cpuResult is a computed C with its tree, and the output trees of its
// last residency round.
type cpuResult struct {
	n       int
	seed    Seed
	c       []float32
	levels  [][]Hash
	timings Timings
	trees   []residencyPass
}

// chunk writes chunk k of C into buf.
func (r *cpuResult) chunk(k int, buf *Chunk) { encodeChunk(buf, r.c[k*ChunkValues:]) }

func (r *cpuResult) root() Hash { return r.levels[len(r.levels)-1][0] }

// residency runs the residency round over C.
func (r *cpuResult) residency(nonce Seed) []Hash {
	r.trees = residencyTrees(r.n, r.root(), nonce, r.chunk)
	return residencyRoots(r.trees)
}

func (r *cpuResult) open(ops []Opening) ([]OpeningProof, error) {
	if r.trees == nil {
		return nil, fmt.Errorf("no residency round")
	}
	return openResidency(r.n, r.trees, r.levels, r.chunk, ops)
}

func (r *cpuResult) commitment() Commitment {
	return Commitment{Type: TypeCommit, N: r.n, Root: r.root(), Timings: r.timings}
}

// cpuCompute runs the whole pipeline: generate, multiply, hash, tree.
func cpuCompute(ctx context.Context, n int, seed Seed, workers int, opt cpuOptions) (*cpuResult, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	r := &cpuResult{n: n, seed: seed}
	t0 := time.Now()
	g := newGenerator(seed)
	a := make([]float32, n*n)
	b := make([]float32, n*n)
	parallelRows(workers, n, func(i int) {
		g.fillRowF32(a[i*n:(i+1)*n], MatrixA, i)
		g.fillRowF32(b[i*n:(i+1)*n], MatrixB, i)
	})
	if opt.roundInput != nil {
		for i := range a {
			a[i], b[i] = opt.roundInput(a[i]), opt.roundInput(b[i])
		}
	}
	t1 := time.Now()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.c = make([]float32, n*n)
	if opt.multiply != nil {
		opt.multiply(r.c, a, b, n)
	} else {
		multiply(ctx, r.c, a, b, n, workers)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opt.tamper != nil {
		opt.tamper(r.c, n)
	}
	t2 := time.Now()
	leaves := hashLeaves(r.c, n, workers)
	t3 := time.Now()
	r.levels = BuildTree(leaves)
	t4 := time.Now()
	r.timings = Timings{GenerateMS: ms(t1.Sub(t0)), MultiplyMS: ms(t2.Sub(t1)), HashMS: ms(t3.Sub(t2)), TreeMS: ms(t4.Sub(t3))}
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// parallelRows calls f for every row in [0, n) from workers goroutines.
func parallelRows(workers, n int, f func(i int)) {
	var wg sync.WaitGroup
	per := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// multiply computes c[i][j] = Σ_k a[i][k]·b[j][k] in fp32, four rows of a
// at a time against each row of b, each sum accumulated in order.
func multiply(ctx context.Context, c, a, b []float32, n, workers int) {
	var wg sync.WaitGroup
	next := make(chan int, n/4+1)
	for i := 0; i < n; i += 4 {
		next <- i
	}
	close(next)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if ctx.Err() != nil {
					return
				}
				a0, a1, a2, a3 := a[i*n:(i+1)*n], a[(i+1)*n:(i+2)*n], a[(i+2)*n:(i+3)*n], a[(i+3)*n:(i+4)*n]
				for j := 0; j < n; j++ {
					bj := b[j*n : (j+1)*n]
					var s0, s1, s2, s3 float32
					for k, bk := range bj {
						s0 += a0[k] * bk
						s1 += a1[k] * bk
						s2 += a2[k] * bk
						s3 += a3[k] * bk
					}
					c[i*n+j], c[(i+1)*n+j], c[(i+2)*n+j], c[(i+3)*n+j] = s0, s1, s2, s3
				}
			}
		}()
	}
	wg.Wait()
}

// hashLeaves hashes C chunk by chunk.
func hashLeaves(c []float32, n, workers int) []Hash {
	leaves := make([]Hash, Leaves(n))
	per := n / ChunkValues
	parallelRows(workers, n, func(i int) {
		var buf Chunk
		for q := 0; q < per; q++ {
			encodeChunk(&buf, c[i*n+q*ChunkValues:])
			leaves[i*per+q] = LeafHash(buf[:])
		}
	})
	return leaves
}

// encodeChunk writes the first ChunkValues of v little-endian into buf.
func encodeChunk(buf *Chunk, v []float32) {
	for k := 0; k < ChunkValues; k++ {
		binary.LittleEndian.PutUint32(buf[4*k:], math.Float32bits(v[k]))
	}
}

// prove opens cells of r.
func (r *cpuResult) prove(cells []Cell) ([]Proof, error) {
	out := make([]Proof, len(cells))
	for k, cell := range cells {
		if cell.I < 0 || cell.I >= r.n || cell.J < 0 || cell.J >= r.n {
			return nil, fmt.Errorf("cell (%d, %d) outside %d×%d", cell.I, cell.J, r.n, r.n)
		}
		p := Proof{I: cell.I, J: cell.J}
		start := cell.I*r.n + cell.J/ChunkValues*ChunkValues
		encodeChunk(&p.Chunk, r.c[start:])
		p.Path = TreePath(r.levels, ChunkIndex(r.n, cell.I, cell.J))
		out[k] = p
	}
	return out, nil
}
