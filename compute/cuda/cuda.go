//go:build ddpmcuda

package cuda

// #cgo CFLAGS: -I${SRCDIR}/shim
// #cgo LDFLAGS: -lcuda -ldl
// #include "shim.h"
import "C"

import (
	_ "embed"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/ddpm-studio/ddpm-studio/compute/gpu"
)

// ptx is compute/gpu/kernels/all.cu compiled by nvcc for compute_80 (make ptx).
//
//go:embed kernels.ptx
var ptx string

// minMajor is the oldest compute capability the PTX (compute_80) can be compiled for.
const minMajor = 8

// Backend is a gpu.Backend on an NVIDIA GPU through the CUDA driver API
// (gorgonia.org/cu): the device's primary context, one stream, the embedded kernels and
// cuBLAS where a library is found. Its methods may be called from any goroutine, one at
// a time; each makes the context current on its thread.
type Backend struct {
	dev    cu.Device
	ctx    cu.CUContext
	stream cu.Stream
	mod    cu.Module
	fns    []cu.Function // by gpu.Kernel.Index
	blas   *cublas       // nil: the sgemm kernel
	noBLAS bool          // use the sgemm kernel although cuBLAS was found

	mu          sync.Mutex
	sizes       map[gpu.Ptr]int64 // live allocations
	bytes, peak int64             // allocated now, and the most at once
}

// Open loads the NVIDIA driver, takes GPU 0 and loads the kernels. It returns a
// one-line description and, where the driver, a GPU or the kernels cannot be used, an
// error that says why in words.
func Open() (*Backend, string, error) {
	var msg [512]C.char
	if C.ddpm_cuda_load(&msg[0], C.int(len(msg))) != C.DDPM_CUDA_OK {
		return nil, "", errors.New(C.GoString(&msg[0]))
	}
	n, err := cu.NumDevices()
	if err != nil {
		return nil, "", fmt.Errorf("the NVIDIA driver cannot count its GPUs: %v", err)
	}
	if n == 0 {
		return nil, "", errors.New("the NVIDIA driver sees no GPU")
	}
	dev, err := cu.GetDevice(0)
	if err != nil {
		return nil, "", fmt.Errorf("GPU 0: %v", err)
	}
	name, _ := dev.Name()
	major, minor, err := dev.ComputeCapability()
	if err != nil {
		return nil, "", fmt.Errorf("GPU 0 (%s): %v", name, err)
	}
	if major < minMajor {
		return nil, "", fmt.Errorf("GPU 0 (%s) has compute capability %d.%d; the kernels of this build need %d.0 or newer (Ampere, Hopper or later)", name, major, minor, minMajor)
	}
	mem, _ := dev.TotalMem()
	b := &Backend{dev: dev, sizes: map[gpu.Ptr]int64{}}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if b.ctx, err = dev.RetainPrimaryCtx(); err != nil {
		return nil, "", fmt.Errorf("GPU 0 (%s): context: %v", name, err)
	}
	fail := func(format string, args ...any) (*Backend, string, error) {
		b.Close()
		return nil, "", fmt.Errorf("GPU 0 (%s): "+format, append([]any{name}, args...)...)
	}
	if err := cu.SetCurrentContext(b.ctx); err != nil {
		return fail("context: %v", err)
	}
	if b.stream, err = cu.MakeStream(cu.DefaultStream); err != nil {
		return fail("stream: %v", err)
	}
	log := &cu.JITErrorLogBuffer{Buffer: make([]byte, 1<<14)}
	if b.mod, err = cu.LoadDataEx(ptx, log); err != nil {
		return fail("compile the kernels for sm_%d%d: %v: %s", major, minor, err, strings.TrimRight(string(log.Buffer), "\x00"))
	}
	for _, k := range gpu.Kernels {
		f, err := b.mod.Function(k.Name)
		if err != nil {
			return fail("kernel %s: %v", k.Name, err)
		}
		b.fns = append(b.fns, f)
	}
	blasNote := "matrix products: own kernels"
	if bl, err := openCuBLAS(b.stream); err != nil {
		blasNote += " (" + err.Error() + ")"
	} else {
		b.blas = bl
		blasNote = "matrix products: " + bl.name
	}
	desc := fmt.Sprintf("CUDA: %s (sm_%d%d, %.1f GiB), driver %s, %s, fp32 without TF32", name, major, minor,
		float64(mem)/(1<<30), driverVersion(), blasNote)
	return b, desc, nil
}

// driverVersion is the CUDA version the driver supports, as "13.0".
func driverVersion() string {
	v := cu.Version()
	if v <= 0 {
		return "unknown"
	}
	return fmt.Sprintf("%d.%d", v/1000, v%1000/10)
}

// do runs f on a thread whose current context is the GPU's.
func (b *Backend) do(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cu.SetCurrentContext(b.ctx); err != nil {
		return fmt.Errorf("cuda: %v", err)
	}
	if err := f(); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	return nil
}

// Name returns "cuda".
func (b *Backend) Name() string { return "cuda" }

// Alloc allocates device memory (aligned to 256 bytes at least).
func (b *Backend) Alloc(bytes int64) (gpu.Ptr, error) {
	var p cu.DevicePtr
	err := b.do(func() (err error) {
		p, err = cu.MemAlloc(max(bytes, 4))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("allocate %.1f MiB on the GPU: %w", float64(bytes)/(1<<20), err)
	}
	b.mu.Lock()
	b.sizes[gpu.Ptr(p)] = bytes
	b.bytes += bytes
	b.peak = max(b.peak, b.bytes)
	b.mu.Unlock()
	return gpu.Ptr(p), nil
}

// Free releases device memory.
func (b *Backend) Free(p gpu.Ptr) error {
	b.mu.Lock()
	b.bytes -= b.sizes[p]
	delete(b.sizes, p)
	b.mu.Unlock()
	return b.do(func() error { return cu.MemFree(cu.DevicePtr(p)) })
}

// CopyIn copies host memory to the device in the stream.
func (b *Backend) CopyIn(dst gpu.Ptr, src unsafe.Pointer, bytes int64) error {
	return b.do(func() error { return cu.MemcpyHtoDAsync(cu.DevicePtr(dst), src, bytes, b.stream) })
}

// CopyOut copies device memory to the host once the stream's work is done.
func (b *Backend) CopyOut(dst unsafe.Pointer, src gpu.Ptr, bytes int64) error {
	return b.do(func() error {
		if err := cu.MemcpyDtoHAsync(dst, cu.DevicePtr(src), bytes, b.stream); err != nil {
			return err
		}
		return b.stream.Synchronize()
	})
}

// Copy copies between device buffers in the stream.
func (b *Backend) Copy(dst, src gpu.Ptr, bytes int64) error {
	return b.do(func() error { return cu.MemcpyDtoDAsync(cu.DevicePtr(dst), cu.DevicePtr(src), bytes, b.stream) })
}

// Launch queues a kernel in the stream.
func (b *Backend) Launch(k *gpu.Kernel, grid, block gpu.Dim3, args []uint64) error {
	params := make([]unsafe.Pointer, len(args))
	for i := range args {
		params[i] = unsafe.Pointer(&args[i])
	}
	return b.do(func() error {
		if err := b.fns[k.Index].Launch(grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, 0, b.stream, params); err != nil {
			return fmt.Errorf("launch %s: %v", k.Name, err)
		}
		return nil
	})
}

// Gemm runs a matrix product through cuBLAS, or the sgemm kernel where no cuBLAS was found.
func (b *Backend) Gemm(g gpu.Gemm) error {
	if b.blas == nil || b.noBLAS {
		return gpu.GemmKernel(b, g)
	}
	if err := g.Check(); err != nil {
		return err
	}
	return b.do(func() error { return b.blas.gemm(g) })
}

// Sync waits for the stream and reports the first error of its work.
func (b *Backend) Sync() error { return b.do(func() error { return b.stream.Synchronize() }) }

// MemInfo returns the GPU's free and total memory.
func (b *Backend) MemInfo() (free, total int64, err error) {
	err = b.do(func() (err error) {
		free, total, err = cu.MemInfo()
		return err
	})
	return free, total, err
}

// PeakBytes is the most device memory this backend had allocated at once.
func (b *Backend) PeakBytes() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}

// ResetPeak makes PeakBytes count from the memory allocated now.
func (b *Backend) ResetPeak() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.peak = b.bytes
}

// UseCuBLAS makes matrix products run in cuBLAS (on, where it was found) or in the
// sgemm kernel, and reports whether they run in cuBLAS (for scripts/gpu-check.sh, which
// checks both).
func (b *Backend) UseCuBLAS(on bool) bool {
	b.noBLAS = !on
	return b.blas != nil && on
}

// Close releases the kernels, the stream and the context.
func (b *Backend) Close() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var errs []error
	if b.ctx != (cu.CUContext{}) {
		cu.SetCurrentContext(b.ctx)
		if b.blas != nil {
			b.blas.close()
		}
		if b.mod != (cu.Module{}) {
			errs = append(errs, b.mod.Unload())
		}
		if b.stream != (cu.Stream{}) {
			errs = append(errs, b.stream.Destroy())
		}
		errs = append(errs, b.dev.ReleasePrimaryCtx())
	}
	return errors.Join(errs...)
}
