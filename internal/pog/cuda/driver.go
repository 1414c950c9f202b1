package cuda

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

// driver holds the CUDA driver API and cuBLAS entry points, resolved at run
// time with purego (no cgo). Types follow cuda.h and cublas_api.h on 64-bit
// Linux: CUresult and enums are int32, CUdevice int32, handles uintptr,
// CUdeviceptr uint64.
type driver struct {
	cudaPath, cublasPath string

	cuInit                    func(flags uint32) int32
	cuDriverGetVersion        func(v *int32) int32
	cuGetErrorName            func(res int32, str **byte) int32
	cuDeviceGetCount          func(n *int32) int32
	cuDeviceGet               func(dev *int32, ordinal int32) int32
	cuDeviceGetName           func(name []byte, length int32, dev int32) int32
	cuDeviceTotalMem          func(bytes *uint64, dev int32) int32
	cuDeviceGetUuid           func(uuid []byte, dev int32) int32
	cuDevicePrimaryCtxRetain  func(ctx *uintptr, dev int32) int32
	cuDevicePrimaryCtxRelease func(dev int32) int32
	cuCtxSetCurrent           func(ctx uintptr) int32
	cuCtxSynchronize          func() int32
	cuModuleLoadData          func(mod *uintptr, image []byte) int32
	cuModuleUnload            func(mod uintptr) int32
	cuModuleGetFunction       func(fn *uintptr, mod uintptr, name string) int32
	cuMemAlloc                func(ptr *uint64, size uint64) int32
	cuMemFree                 func(ptr uint64) int32
	cuMemGetInfo              func(free, total *uint64) int32
	cuMemcpyDtoH              func(dst []byte, src uint64, size uint64) int32
	cuMemcpyHtoD              func(dst uint64, src []byte, size uint64) int32
	cuMemcpyDtoD              func(dst, src uint64, size uint64) int32
	cuLaunchKernel            func(fn uintptr, gx, gy, gz, bx, by, bz, shared uint32, stream uintptr, params []unsafe.Pointer, extra unsafe.Pointer) int32

	cublasCreate        func(handle *uintptr) int32
	cublasDestroy       func(handle uintptr) int32
	cublasGetStatusName func(status int32) string // nil before CUDA 11.4
	cublasGemmEx        func(handle uintptr, transa, transb, m, n, k int32, alpha unsafe.Pointer,
		a uint64, atype, lda int32, b uint64, btype, ldb int32, beta unsafe.Pointer,
		c uint64, ctype, ldc int32, compute, algo int32) int32
}

// Default library names. libcuda comes with the driver (the NVIDIA
// container toolkit mounts it); cuBLAS comes with the image's CUDA runtime,
// newest major version first.
func defaultLibCUDA() []string { return []string{"libcuda.so.1", "libcuda.so"} }

func defaultLibCUBLAS() []string {
	return []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"}
}

// cublasDirs are where CUDA images and Python wheels keep cuBLAS when it is
// not on the loader's path (PyTorch images ship it inside site-packages).
func cublasDirs() []string {
	dirs := []string{"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/local/cuda/targets/sbsa-linux/lib", "/opt/conda/lib"}
	for _, pat := range []string{
		"/opt/conda/lib/python3*/site-packages/nvidia/cublas/lib",
		"/opt/conda/envs/*/lib/python3*/site-packages/nvidia/cublas/lib",
		"/usr/local/lib/python3*/dist-packages/nvidia/cublas/lib",
		"/usr/local/lib/python3*/site-packages/nvidia/cublas/lib",
		"/usr/lib/python3/dist-packages/nvidia/cublas/lib",
	} {
		m, _ := filepath.Glob(pat)
		sort.Sort(sort.Reverse(sort.StringSlice(m)))
		dirs = append(dirs, m...)
	}
	return dirs
}

// ErrNoDriver wraps failures to load libcuda: no NVIDIA driver is visible.
var ErrNoDriver = errors.New("NVIDIA driver library (libcuda) not found: run the worker where the GPU and its driver are visible (a container started with GPU access through the NVIDIA container toolkit)")

// ErrNoCUBLAS wraps failures to load cuBLAS.
var ErrNoCUBLAS = errors.New("cuBLAS (libcublas) not found: use an image with the CUDA runtime libraries, or pass its path")

// loadDriver opens libcuda and cuBLAS: the given paths, or the default names
// and locations when empty.
func loadDriver(libCUDA, libCUBLAS string) (*driver, error) {
	d := &driver{}
	cudaNames := defaultLibCUDA()
	if libCUDA != "" {
		cudaNames = []string{libCUDA}
	}
	h, path, err := dlopenFirst(cudaNames, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoDriver, err)
	}
	d.cudaPath = path
	syms := []struct {
		fptr any
		name string
	}{
		{&d.cuInit, "cuInit"},
		{&d.cuDriverGetVersion, "cuDriverGetVersion"},
		{&d.cuGetErrorName, "cuGetErrorName"},
		{&d.cuDeviceGetCount, "cuDeviceGetCount"},
		{&d.cuDeviceGet, "cuDeviceGet"},
		{&d.cuDeviceGetName, "cuDeviceGetName"},
		{&d.cuDeviceTotalMem, "cuDeviceTotalMem_v2"},
		{&d.cuDeviceGetUuid, "cuDeviceGetUuid"},
		{&d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"},
		{&d.cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2"},
		{&d.cuCtxSetCurrent, "cuCtxSetCurrent"},
		{&d.cuCtxSynchronize, "cuCtxSynchronize"},
		{&d.cuModuleLoadData, "cuModuleLoadData"},
		{&d.cuModuleUnload, "cuModuleUnload"},
		{&d.cuModuleGetFunction, "cuModuleGetFunction"},
		{&d.cuMemAlloc, "cuMemAlloc_v2"},
		{&d.cuMemFree, "cuMemFree_v2"},
		{&d.cuMemGetInfo, "cuMemGetInfo_v2"},
		{&d.cuMemcpyDtoH, "cuMemcpyDtoH_v2"},
		{&d.cuMemcpyHtoD, "cuMemcpyHtoD_v2"},
		{&d.cuMemcpyDtoD, "cuMemcpyDtoD_v2"},
		{&d.cuLaunchKernel, "cuLaunchKernel"},
	}
	for _, s := range syms {
		if err := register(s.fptr, h, s.name); err != nil {
			return nil, fmt.Errorf("%s: %w (driver too old? CUDA 11 or newer is needed)", path, err)
		}
	}

	blasNames := defaultLibCUBLAS()
	var dirs []string
	if libCUBLAS != "" {
		blasNames = []string{libCUBLAS}
	} else {
		dirs = cublasDirs()
	}
	hb, bpath, err := dlopenFirst(blasNames, dirs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoCUBLAS, err)
	}
	d.cublasPath = bpath
	for _, s := range []struct {
		fptr any
		name string
	}{
		{&d.cublasCreate, "cublasCreate_v2"},
		{&d.cublasDestroy, "cublasDestroy_v2"},
		{&d.cublasGemmEx, "cublasGemmEx"},
	} {
		if err := register(s.fptr, hb, s.name); err != nil {
			return nil, fmt.Errorf("%s: %w (cuBLAS 11 or newer is needed)", bpath, err)
		}
	}
	_ = register(&d.cublasGetStatusName, hb, "cublasGetStatusName") // optional
	return d, nil
}

// dlopenFirst opens the first library of names that loads, each tried by
// name (the loader's search path) and then in each of dirs.
func dlopenFirst(names, dirs []string) (uintptr, string, error) {
	var errs []string
	try := func(path string) (uintptr, bool) {
		h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			errs = append(errs, err.Error())
			return 0, false
		}
		return h, true
	}
	for _, name := range names {
		if h, ok := try(name); ok {
			return h, name, nil
		}
		if strings.Contains(name, "/") {
			continue
		}
		for _, dir := range dirs {
			p := filepath.Join(dir, name)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			if h, ok := try(p); ok {
				return h, p, nil
			}
		}
	}
	return 0, "", errors.New(strings.Join(errs, "; "))
}

// register binds fptr to symbol name of library h, or reports it missing.
func register(fptr any, h uintptr, name string) error {
	sym, err := purego.Dlsym(h, name)
	if err != nil || sym == 0 {
		return fmt.Errorf("symbol %s missing", name)
	}
	purego.RegisterFunc(fptr, sym)
	return nil
}

// cuErr turns a CUresult into an error naming the call and the result.
func (d *driver) cuErr(call string, res int32) error {
	if res == 0 {
		return nil
	}
	return &Error{Call: call, Code: res, Name: d.resultName(res)}
}

func (d *driver) resultName(res int32) string {
	var p *byte
	if d.cuGetErrorName == nil || d.cuGetErrorName(res, &p) != 0 || p == nil {
		return ""
	}
	return cString(p, 64)
}

// blasErr turns a cublasStatus_t into an error.
func (d *driver) blasErr(call string, status int32) error {
	if status == 0 {
		return nil
	}
	name := ""
	if d.cublasGetStatusName != nil {
		name = d.cublasGetStatusName(status)
	}
	return &Error{Call: call, Code: status, Name: name}
}

// Error is a failed CUDA driver or cuBLAS call.
type Error struct {
	Call string
	Code int32
	Name string
}

func (e *Error) Error() string {
	if e.Name != "" {
		return fmt.Sprintf("%s: %s (%d)", e.Call, e.Name, e.Code)
	}
	return fmt.Sprintf("%s: error %d", e.Call, e.Code)
}

// cString copies a NUL-terminated C string of at most limit bytes.
func cString(p *byte, limit int) string {
	var b []byte
	for i := 0; i < limit; i++ {
		c := *(*byte)(unsafe.Add(unsafe.Pointer(p), i))
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}
