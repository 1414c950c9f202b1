// Package cuda is the Proof-of-GPU CUDA backend. It loads the CUDA driver
// (libcuda) and cuBLAS at run time with purego, without cgo, generates A and
// B on the GPU with the Philox kernel of kernels.cu (shipped as PTX),
// multiplies with cublasGemmEx (fp16 inputs, fp32 accumulation and output,
// tensor cores allowed) and hashes C and builds the Merkle tree on the GPU.
//
// Importing purego makes a binary dynamically linked, so only the separate
// nicompute-pog binary imports this package; nicompute stays static (it is
// bind-mounted as sshd into images that may have no C library).
package cuda

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/nicompute/nicompute/internal/pog"
)

//go:generate nvcc -ptx -arch=compute_70 -O3 -o kernels.ptx kernels.cu

//go:embed kernels.ptx
var kernelsPTX string

// PTX returns the embedded kernels (PTX text).
func PTX() string { return kernelsPTX }

// Kernel names in kernels.cu.
const (
	kernelGenerate = "pog_generate"
	kernelLeaves   = "pog_hash_leaves"
	kernelLevel    = "pog_merkle_level"
)

// Backend is the CUDA backend.
type Backend struct {
	// LibCUDA and LibCUBLAS are library paths or names; empty searches the
	// defaults (libcuda.so.1; libcublas.so.13, .12, .11 on the loader path,
	// in /usr/local/cuda and in Python wheels' nvidia/cublas/lib).
	LibCUDA, LibCUBLAS string
	// Devices are the device ordinals to use; empty means all.
	Devices []int
}

// Name returns "cuda".
func (Backend) Name() string { return "cuda" }

// Simulated returns false.
func (Backend) Simulated() bool { return false }

// Open loads the libraries, initialises the driver and opens every selected
// device: a context, the kernels and a cuBLAS handle each, and a small
// warm-up computation so the timed one does not pay for loading them.
func (b Backend) Open(ctx context.Context) ([]pog.Device, error) {
	d, err := loadDriver(b.LibCUDA, b.LibCUBLAS)
	if err != nil {
		return nil, err
	}
	if err := d.cuErr("cuInit", d.cuInit(0)); err != nil {
		return nil, fmt.Errorf("initialise the CUDA driver (%s): %w", d.cudaPath, err)
	}
	var count int32
	if err := d.cuErr("cuDeviceGetCount", d.cuDeviceGetCount(&count)); err != nil {
		return nil, err
	}
	ords := b.Devices
	if len(ords) == 0 {
		for i := range int(count) {
			ords = append(ords, i)
		}
	}
	if len(ords) == 0 {
		return nil, errors.New("no CUDA device visible")
	}
	var devs []pog.Device
	fail := func(err error) ([]pog.Device, error) {
		for _, dev := range devs {
			dev.Close()
		}
		return nil, err
	}
	for i, ord := range ords {
		if ord < 0 || ord >= int(count) {
			return fail(fmt.Errorf("device %d: only %d visible", ord, count))
		}
		dev, err := openDevice(d, i, int32(ord))
		if err != nil {
			return fail(fmt.Errorf("device %d: %w", ord, err))
		}
		devs = append(devs, dev)
	}
	for _, dev := range devs {
		if _, err := dev.Compute(ctx, pog.DeviceRequest{N: warmUpN}); err != nil {
			return fail(fmt.Errorf("warm-up on %s: %w", dev.Info().Name, err))
		}
	}
	return devs, nil
}

// warmUpN is the size of the computation Open runs on each device.
const warmUpN = 1024

// device is one GPU. Every driver call runs on the device's own OS thread,
// where its context is current.
type device struct {
	d     *driver
	info  pog.GPUInfo
	calls chan func() // never closed
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once

	// Owned by the device thread.
	ord                 int32
	cuctx, mod, blas    uintptr
	fGen, fLeaves, fLvl uintptr
	mem                 uint64 // allocation base, 0 when none
	memSize             uint64
	plan                *plan // of the last Compute, nil when none
	// nonce and roots are the last residency round's.
	nonce pog.Seed
	roots []pog.Hash
}

func openDevice(d *driver, index int, ord int32) (*device, error) {
	dev := &device{d: d, ord: ord, calls: make(chan func()), quit: make(chan struct{}), done: make(chan struct{})}
	go dev.loop()
	err := dev.run(func() error {
		var cudev int32
		if err := d.cuErr("cuDeviceGet", d.cuDeviceGet(&cudev, ord)); err != nil {
			return err
		}
		name := make([]byte, 256)
		if err := d.cuErr("cuDeviceGetName", d.cuDeviceGetName(name, int32(len(name)), cudev)); err != nil {
			return err
		}
		var mem uint64
		if err := d.cuErr("cuDeviceTotalMem", d.cuDeviceTotalMem(&mem, cudev)); err != nil {
			return err
		}
		uuid := make([]byte, 16)
		if err := d.cuErr("cuDeviceGetUuid", d.cuDeviceGetUuid(uuid, cudev)); err != nil {
			return err
		}
		dev.info = pog.GPUInfo{Index: index, Name: cName(name), MemoryBytes: mem, UUID: formatUUID(uuid)}
		// Out-parameters are locals: C writes only into plain memory.
		var cuctx, mod, fn, blas uintptr
		if err := d.cuErr("cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain(&cuctx, cudev)); err != nil {
			return err
		}
		dev.cuctx = cuctx
		if err := d.cuErr("cuCtxSetCurrent", d.cuCtxSetCurrent(dev.cuctx)); err != nil {
			return err
		}
		image := append([]byte(kernelsPTX), 0)
		if err := d.cuErr("cuModuleLoadData", d.cuModuleLoadData(&mod, image)); err != nil {
			return fmt.Errorf("load kernels: %w", err)
		}
		dev.mod = mod
		for _, k := range []struct {
			dst  *uintptr
			name string
		}{{&dev.fGen, kernelGenerate}, {&dev.fLeaves, kernelLeaves}, {&dev.fLvl, kernelLevel}} {
			if err := d.cuErr("cuModuleGetFunction "+k.name, d.cuModuleGetFunction(&fn, mod, k.name)); err != nil {
				return err
			}
			*k.dst = fn
		}
		if err := d.blasErr("cublasCreate", d.cublasCreate(&blas)); err != nil {
			return err
		}
		dev.blas = blas
		return nil
	})
	if err != nil {
		dev.Close()
		return nil, err
	}
	return dev, nil
}

// loop runs calls on one locked OS thread until Close.
func (dev *device) loop() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(dev.done)
	for {
		select {
		case f := <-dev.calls:
			f()
		case <-dev.quit:
			return
		}
	}
}

// run executes f on the device thread with the context current.
func (dev *device) run(f func() error) error {
	errc := make(chan error, 1)
	select {
	case dev.calls <- func() {
		if dev.cuctx != 0 {
			if err := dev.d.cuErr("cuCtxSetCurrent", dev.d.cuCtxSetCurrent(dev.cuctx)); err != nil {
				errc <- err
				return
			}
		}
		errc <- f()
	}:
	case <-dev.done:
		return errors.New("device closed")
	}
	return <-errc
}

func (dev *device) Info() pog.GPUInfo { return dev.info }

// Compute runs the whole pipeline on the GPU. It is not interruptible once
// started; ctx is checked between phases.
func (dev *device) Compute(ctx context.Context, req pog.DeviceRequest) (pog.Commitment, error) {
	var cm pog.Commitment
	err := dev.run(func() error {
		dev.plan, dev.roots = nil, nil
		p, err := newPlan(req.N)
		if err != nil {
			return err
		}
		if err := dev.reserve(p.total); err != nil {
			return err
		}
		d := dev.d
		t0 := time.Now()
		for _, m := range []struct {
			matrix pog.Matrix
			off    uint64
		}{{pog.MatrixA, p.a}, {pog.MatrixB, p.b}} {
			k0, k1, c2, c3 := pog.KernelWords(req.Seed, m.matrix)
			if err := dev.launch(dev.fGen, uint64(req.N)*uint64(req.N)/8, 256,
				dev.mem+m.off, uint32(req.N), k0, k1, c2, c3); err != nil {
				return fmt.Errorf("generate: %w", err)
			}
		}
		if err := d.cuErr("cuCtxSynchronize", d.cuCtxSynchronize()); err != nil {
			return fmt.Errorf("generate: %w", err)
		}
		t1 := time.Now()
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, bl := range gemmBlocks(req.N) {
			if err := dev.gemmBlock(p, bl); err != nil {
				return err
			}
		}
		if err := d.cuErr("cuCtxSynchronize", d.cuCtxSynchronize()); err != nil {
			return fmt.Errorf("multiply: %w", err)
		}
		t2 := time.Now()
		if err := ctx.Err(); err != nil {
			return err
		}
		l0 := p.levels[0]
		if err := dev.launch(dev.fLeaves, l0.count, 128, dev.mem+p.c, dev.mem+l0.off, l0.count); err != nil {
			return fmt.Errorf("hash: %w", err)
		}
		if err := d.cuErr("cuCtxSynchronize", d.cuCtxSynchronize()); err != nil {
			return fmt.Errorf("hash: %w", err)
		}
		t3 := time.Now()
		for i := 1; i < len(p.levels); i++ {
			in, out := p.levels[i-1], p.levels[i]
			if err := dev.launch(dev.fLvl, out.count, 128, dev.mem+in.off, dev.mem+out.off, in.count); err != nil {
				return fmt.Errorf("tree level %d: %w", i, err)
			}
		}
		root := make([]byte, 32)
		if err := d.cuErr("cuMemcpyDtoH", d.cuMemcpyDtoH(root, dev.mem+p.root(), 32)); err != nil {
			return fmt.Errorf("tree: %w", err)
		}
		t4 := time.Now()
		cm = pog.Commitment{Type: pog.TypeCommit, N: req.N, Timings: pog.Timings{
			GenerateMS: ms(t1.Sub(t0)), MultiplyMS: ms(t2.Sub(t1)), HashMS: ms(t3.Sub(t2)), TreeMS: ms(t4.Sub(t3)),
		}}
		copy(cm.Root[:], root)
		dev.plan = p
		return nil
	})
	return cm, err
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// gemmBlock computes one row block of C (layout.go), copying the tail rows
// of A to the scratch first.
func (dev *device) gemmBlock(p *plan, bl block) error {
	d := dev.d
	if bl.scratch {
		src := dev.mem + p.a + 2*uint64(p.n)*uint64(bl.r0)
		if err := d.cuErr("cuMemcpyDtoD", d.cuMemcpyDtoD(dev.mem+p.scratch, src, 2*uint64(p.n)*uint64(bl.r1-bl.r0))); err != nil {
			return fmt.Errorf("multiply: copy the tail of A: %w", err)
		}
	}
	g := p.gemm(bl)
	alpha, beta := new(float32), new(float32)
	*alpha = 1
	st := d.cublasGemmEx(dev.blas, g.transa, g.transb, g.m, g.n, g.k, unsafe.Pointer(alpha),
		dev.mem+g.x, cudaR16F, g.lda, dev.mem+g.y, cudaR16F, g.ldb, unsafe.Pointer(beta),
		dev.mem+g.out, cudaR32F, g.ldc, cublasCompute32F, cublasGemmDefault)
	runtime.KeepAlive(alpha)
	runtime.KeepAlive(beta)
	return d.blasErr("cublasGemmEx", st)
}

// Residency runs the residency round (pog/residency.go) over the resident
// C: per pass the weights are copied to the device, one int8 GEMM computes
// every chunk's sums, and the leaf and level kernels build the pass's
// output tree, whose root seeds the next pass.
func (dev *device) Residency(ctx context.Context, nonce pog.Seed) ([]pog.Hash, error) {
	var roots []pog.Hash
	err := dev.run(func() error {
		p := dev.plan
		if p == nil {
			return errors.New("nothing computed")
		}
		d := dev.d
		prev, err := dev.readHash(p.root())
		if err != nil {
			return err
		}
		for pass := range pog.ResidencyPasses {
			if err := ctx.Err(); err != nil {
				return err
			}
			w := pog.NewResidencyWeights(nonce, pass, prev)
			wb := make([]byte, 0, pog.ResidencySums*pog.ChunkBytes)
			for q := range w.Rows {
				for _, v := range w.Rows[q] {
					wb = append(wb, byte(v))
				}
			}
			if err := d.cuErr("cuMemcpyHtoD", d.cuMemcpyHtoD(dev.mem+p.weights, wb, uint64(len(wb)))); err != nil {
				return fmt.Errorf("residency weights: %w", err)
			}
			g := p.residencyGemm()
			alpha, beta := new(int32), new(int32)
			*alpha = 1
			st := d.cublasGemmEx(dev.blas, g.transa, g.transb, g.m, g.n, g.k, unsafe.Pointer(alpha),
				dev.mem+g.x, cudaR8I, g.lda, dev.mem+g.y, cudaR8I, g.ldb, unsafe.Pointer(beta),
				dev.mem+g.out, cudaR32I, g.ldc, cublasCompute32I, cublasGemmDefault)
			runtime.KeepAlive(alpha)
			runtime.KeepAlive(beta)
			if err := d.blasErr("cublasGemmEx (residency)", st); err != nil {
				return err
			}
			lv := p.outLevels[pass]
			if err := dev.launch(dev.fLeaves, lv[0].count, 128, dev.mem+p.sums, dev.mem+lv[0].off, lv[0].count); err != nil {
				return fmt.Errorf("residency leaves: %w", err)
			}
			for i := 1; i < len(lv); i++ {
				if err := dev.launch(dev.fLvl, lv[i].count, 128, dev.mem+lv[i-1].off, dev.mem+lv[i].off, lv[i-1].count); err != nil {
					return fmt.Errorf("residency tree level %d: %w", i, err)
				}
			}
			if prev, err = dev.readHash(lv[len(lv)-1].off); err != nil {
				return err
			}
			roots = append(roots, prev)
		}
		dev.nonce = nonce
		dev.roots = roots
		return nil
	})
	return roots, err
}

// Open opens residency chunks: the chunk and its path from C's tree, and
// the output leaf, recomputed on the host from its chunks with the pass's
// weights, with its path from the pass's tree.
func (dev *device) Open(_ context.Context, ops []pog.Opening) ([]pog.OpeningProof, error) {
	var out []pog.OpeningProof
	err := dev.run(func() error {
		p := dev.plan
		if p == nil || dev.roots == nil {
			return errors.New("no residency round")
		}
		root, err := dev.readHash(p.root())
		if err != nil {
			return err
		}
		buf := make([]byte, pog.ChunksPerOutputLeaf*pog.ChunkBytes)
		for _, op := range ops {
			if op.Pass < 0 || op.Pass >= pog.ResidencyPasses || op.Chunk < 0 || op.Chunk >= pog.Leaves(p.n) {
				return fmt.Errorf("opening of pass %d chunk %d out of range", op.Pass, op.Chunk)
			}
			prev := root
			if op.Pass > 0 {
				prev = dev.roots[op.Pass-1]
			}
			w := pog.NewResidencyWeights(dev.nonce, op.Pass, prev)
			first := op.Chunk / pog.ChunksPerOutputLeaf * pog.ChunksPerOutputLeaf
			if err := dev.d.cuErr("cuMemcpyDtoH", dev.d.cuMemcpyDtoH(buf, dev.mem+p.chunkAt(first), uint64(len(buf)))); err != nil {
				return err
			}
			pr := pog.OpeningProof{Pass: op.Pass, Chunk: op.Chunk}
			k := op.Chunk - first
			copy(pr.Data[:], buf[k*pog.ChunkBytes:])
			for c := range pog.ChunksPerOutputLeaf {
				s := w.Sums(buf[c*pog.ChunkBytes : (c+1)*pog.ChunkBytes])
				for q, v := range s {
					binary.LittleEndian.PutUint32(pr.Out[4*(pog.ResidencySums*c+q):], uint32(v))
				}
			}
			if pr.Path, err = dev.readPath(siblings(p.levels, uint64(op.Chunk))); err != nil {
				return err
			}
			if pr.OutPath, err = dev.readPath(siblings(p.outLevels[op.Pass], uint64(op.Chunk/pog.ChunksPerOutputLeaf))); err != nil {
				return err
			}
			out = append(out, pr)
		}
		return nil
	})
	return out, err
}

// readHash copies the hash at off from the device.
func (dev *device) readHash(off uint64) (pog.Hash, error) {
	var h pog.Hash
	b := make([]byte, 32)
	if err := dev.d.cuErr("cuMemcpyDtoH", dev.d.cuMemcpyDtoH(b, dev.mem+off, 32)); err != nil {
		return h, err
	}
	copy(h[:], b)
	return h, nil
}

// readPath copies the hashes at offs from the device.
func (dev *device) readPath(offs []uint64) ([]pog.Hash, error) {
	out := make([]pog.Hash, 0, len(offs))
	for _, off := range offs {
		h, err := dev.readHash(off)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// reserve makes the allocation at least size bytes, failing clearly when
// the device lacks the memory.
func (dev *device) reserve(size uint64) error {
	d := dev.d
	if dev.mem != 0 && dev.memSize >= size {
		return nil
	}
	if dev.mem != 0 {
		if err := d.cuErr("cuMemFree", d.cuMemFree(dev.mem)); err != nil {
			return err
		}
		dev.mem, dev.memSize = 0, 0
	}
	var free, total uint64
	if err := d.cuErr("cuMemGetInfo", d.cuMemGetInfo(&free, &total)); err != nil {
		return err
	}
	if size > free {
		return fmt.Errorf("needs %.2f GB of device memory, %.2f GB of %.2f GB free", float64(size)/1e9, float64(free)/1e9, float64(total)/1e9)
	}
	var mem uint64
	if err := d.cuErr("cuMemAlloc", d.cuMemAlloc(&mem, size)); err != nil {
		return fmt.Errorf("allocate %.2f GB: %w", float64(size)/1e9, err)
	}
	dev.mem, dev.memSize = mem, size
	return nil
}

// launch starts kernel fn over items work items. Each argument is copied
// to its own heap cell; cuLaunchKernel reads them before returning.
func (dev *device) launch(fn uintptr, items uint64, threads uint32, args ...any) error {
	params := make([]unsafe.Pointer, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case uint64:
			p := new(uint64)
			*p = v
			params[i] = unsafe.Pointer(p)
		case uint32:
			p := new(uint32)
			*p = v
			params[i] = unsafe.Pointer(p)
		default:
			return fmt.Errorf("kernel argument %d has unsupported type %T", i, a)
		}
	}
	res := dev.d.cuLaunchKernel(fn, grid(items, threads), 1, 1, threads, 1, 1, 0, 0, params, nil)
	runtime.KeepAlive(params)
	return dev.d.cuErr("cuLaunchKernel", res)
}

// Prove copies each cell's chunk and Merkle path from device memory.
func (dev *device) Prove(_ context.Context, cells []pog.Cell) ([]pog.Proof, error) {
	var out []pog.Proof
	err := dev.run(func() error {
		p := dev.plan
		if p == nil {
			return errors.New("nothing computed")
		}
		d := dev.d
		buf := make([]byte, pog.ChunkBytes)
		for _, c := range cells {
			if c.I < 0 || c.I >= p.n || c.J < 0 || c.J >= p.n {
				return fmt.Errorf("cell (%d, %d) outside %d×%d", c.I, c.J, p.n, p.n)
			}
			pr := pog.Proof{I: c.I, J: c.J}
			if err := d.cuErr("cuMemcpyDtoH", d.cuMemcpyDtoH(buf, dev.mem+p.chunk(c.I, c.J), pog.ChunkBytes)); err != nil {
				return err
			}
			copy(pr.Chunk[:], buf)
			for _, off := range p.siblings(uint64(pog.ChunkIndex(p.n, c.I, c.J))) {
				var h pog.Hash
				if err := d.cuErr("cuMemcpyDtoH", d.cuMemcpyDtoH(buf[:32], dev.mem+off, 32)); err != nil {
					return err
				}
				copy(h[:], buf[:32])
				pr.Path = append(pr.Path, h)
			}
			out = append(out, pr)
		}
		return nil
	})
	return out, err
}

// Close frees the device's memory, cuBLAS handle, kernels and context and
// ends its thread. Only the first call does anything.
func (dev *device) Close() error {
	var err error
	dev.once.Do(func() { err = dev.close() })
	return err
}

func (dev *device) close() error {
	var errs []error
	err := dev.run(func() error {
		d := dev.d
		if dev.mem != 0 {
			errs = append(errs, d.cuErr("cuMemFree", d.cuMemFree(dev.mem)))
			dev.mem = 0
		}
		if dev.blas != 0 {
			errs = append(errs, d.blasErr("cublasDestroy", d.cublasDestroy(dev.blas)))
			dev.blas = 0
		}
		if dev.mod != 0 {
			errs = append(errs, d.cuErr("cuModuleUnload", d.cuModuleUnload(dev.mod)))
			dev.mod = 0
		}
		if dev.cuctx != 0 {
			var cudev int32
			if d.cuDeviceGet(&cudev, dev.ord) == 0 {
				errs = append(errs, d.cuErr("cuDevicePrimaryCtxRelease", d.cuDevicePrimaryCtxRelease(cudev)))
			}
			dev.cuctx = 0
		}
		return nil
	})
	close(dev.quit)
	<-dev.done
	return errors.Join(append(errs, err)...)
}

// cName returns the NUL-terminated string in b.
func cName(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// formatUUID formats a device UUID as nvidia-smi does.
func formatUUID(u []byte) string {
	return fmt.Sprintf("GPU-%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
