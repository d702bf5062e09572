// Package kernels holds the device kernels of package gpu, written once in CUDA C
// (*.cu, see compat.cuh), and an emulator that runs the same sources compiled for the
// CPU: every test of a kernel and of the device executor runs on it where no GPU is,
// against the CPU ops of compute/ops. `make ptx` compiles all.cu to the PTX that
// package compute/cuda embeds.
package kernels

// #cgo CFLAGS: -O2 -Wall -Wno-unused-function
// #cgo LDFLAGS: -lm
// #include <stdlib.h>
// #include <string.h>
// #include "emu.h"
import "C"

import (
	"embed"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/ddpm-studio/ddpm-studio/compute/gpu"
)

// Sources are the kernel sources. Embedding them also makes the go command rebuild
// this package, and the emulator, when one of them changes: it tracks embedded files,
// not the files a C file includes.
//
//go:embed *.cu *.cuh
var Sources embed.FS

// emuMu serialises launches: the emulator keeps its state in C globals.
var emuMu sync.Mutex

// Emulator is a gpu.Backend that runs the kernels on the CPU, one block after another
// and the threads of a block as fibers (emu.c). Its memory is C memory on the host, so
// its Ptr values are host addresses. Matrix products run the sgemm kernel.
type Emulator struct {
	mu    sync.Mutex
	bufs  map[gpu.Ptr]alloc // live allocations by address
	Bytes int64             // bytes allocated now
	Peak  int64             // the most bytes allocated at once
	err   error             // first error of a launch, reported by the next Sync or copy out
}

// alloc is one allocation: C memory of size bytes, then the canary.
type alloc struct {
	p    unsafe.Pointer
	size int64
}

// NewEmulator returns an emulator with no memory allocated.
func NewEmulator() *Emulator { return &Emulator{bufs: map[gpu.Ptr]alloc{}} }

// Name returns "emulator".
func (e *Emulator) Name() string { return "emulator" }

// guard is the size of the canary after each allocation: Sync reports a kernel that
// wrote past the end of a buffer.
const guard = 256

const canary = 0xa5

// Alloc returns C memory aligned to 256 bytes, filled with NaN bytes (0xff) so that a
// kernel reading what nothing wrote yields NaN rather than a plausible zero.
func (e *Emulator) Alloc(bytes int64) (gpu.Ptr, error) {
	if bytes < 0 {
		return 0, fmt.Errorf("emulator: alloc of %d bytes", bytes)
	}
	size := max(256, (bytes+255)/256*256)
	p := C.aligned_alloc(256, C.size_t(size+guard))
	if p == nil {
		return 0, fmt.Errorf("emulator: out of memory for %d bytes", bytes)
	}
	C.memset(p, 0xff, C.size_t(size))
	C.memset(unsafe.Add(p, size), canary, guard)
	e.mu.Lock()
	defer e.mu.Unlock()
	ptr := gpu.Ptr(uintptr(p))
	e.bufs[ptr] = alloc{p, size}
	e.Bytes += size
	e.Peak = max(e.Peak, e.Bytes)
	return ptr, nil
}

// Free releases a buffer of Alloc.
func (e *Emulator) Free(p gpu.Ptr) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	a, ok := e.bufs[p]
	if !ok {
		return fmt.Errorf("emulator: free of %#x, which Alloc did not return", uint64(p))
	}
	delete(e.bufs, p)
	e.Bytes -= a.size
	C.free(a.p)
	return nil
}

// addr returns the host address of bytes bytes at p, which must lie inside one allocation.
func (e *Emulator) addr(p gpu.Ptr, bytes int64) (unsafe.Pointer, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for base, a := range e.bufs {
		if p >= base && int64(p-base)+bytes <= a.size {
			return unsafe.Add(a.p, p-base), nil
		}
	}
	return nil, fmt.Errorf("emulator: %d bytes at %#x are not inside one allocation", bytes, uint64(p))
}

// CopyIn copies host memory to the emulator's memory.
func (e *Emulator) CopyIn(dst gpu.Ptr, src unsafe.Pointer, bytes int64) error {
	d, err := e.addr(dst, bytes)
	if err != nil {
		return err
	}
	C.memcpy(d, src, C.size_t(bytes))
	return nil
}

// CopyOut copies the emulator's memory to host memory, or reports a kernel's error.
func (e *Emulator) CopyOut(dst unsafe.Pointer, src gpu.Ptr, bytes int64) error {
	if err := e.Sync(); err != nil {
		return err
	}
	s, err := e.addr(src, bytes)
	if err != nil {
		return err
	}
	C.memcpy(dst, s, C.size_t(bytes))
	return nil
}

// Copy copies between two buffers of the emulator.
func (e *Emulator) Copy(dst, src gpu.Ptr, bytes int64) error {
	d, err := e.addr(dst, bytes)
	if err != nil {
		return err
	}
	s, err := e.addr(src, bytes)
	if err != nil {
		return err
	}
	C.memmove(d, s, C.size_t(bytes))
	return nil
}

// Launch runs kernel k to completion.
func (e *Emulator) Launch(k *gpu.Kernel, grid, block gpu.Dim3, args []uint64) error {
	if len(args) != len(k.Params) {
		return fmt.Errorf("emulator: %s takes %d arguments, got %d", k.Name, len(k.Params), len(args))
	}
	if e.err != nil { // a GPU would not run work queued after a failed kernel either
		return nil
	}
	a := C.malloc(C.size_t(8 * max(1, len(args))))
	defer C.free(a)
	copy(unsafe.Slice((*uint64)(a), len(args)), args)
	emuMu.Lock()
	msg := C.emu_launch(C.int(k.Index), (*C.ulonglong)(a), C.long(grid.X), C.long(grid.Y), C.long(grid.Z),
		C.long(block.X), C.long(block.Y), C.long(block.Z))
	emuMu.Unlock()
	if msg != nil {
		e.err = fmt.Errorf("emulator: kernel %s: %s", k.Name, C.GoString(msg))
	}
	return nil
}

// Gemm runs the sgemm kernel.
func (e *Emulator) Gemm(g gpu.Gemm) error { return gpu.GemmKernel(e, g) }

// Sync reports the first error of a kernel since the emulator was made, and a
// buffer whose canary a kernel overwrote.
func (e *Emulator) Sync() error {
	if e.err != nil {
		return e.err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for p, a := range e.bufs {
		tail := unsafe.Slice((*byte)(unsafe.Add(a.p, a.size)), guard)
		for _, b := range tail {
			if b != canary {
				e.err = fmt.Errorf("emulator: a kernel wrote past the end of the %d-byte buffer at %#x", a.size, uint64(p))
				return e.err
			}
		}
	}
	return nil
}

// Close frees what is still allocated.
func (e *Emulator) Close() error {
	e.mu.Lock()
	ptrs := make([]gpu.Ptr, 0, len(e.bufs))
	for p := range e.bufs {
		ptrs = append(ptrs, p)
	}
	e.mu.Unlock()
	var errs []error
	for _, p := range ptrs {
		errs = append(errs, e.Free(p))
	}
	return errors.Join(errs...)
}
