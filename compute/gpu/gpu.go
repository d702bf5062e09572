// Package gpu runs the U-Net's operations on a device: the interface a device
// implements (Backend: memory, copies, kernel launches and matrix products in one
// stream), and for every op of package compute/ops the launches of the kernels in
// compute/gpu/kernels that compute it. Package compute lowers a compiled graph to calls
// of these functions; package compute/cuda implements Backend on an NVIDIA GPU, and
// compute/gpu/kernels on the CPU (an emulator of the same kernel sources, for tests).
//
// Values are float32 in NCHW layout, as on the CPU. Every function only queues work:
// errors of a kernel that already ran surface at the next Backend call that waits
// (a copy to the host or Sync).
package gpu

//go:generate go run ./kernels/gen

import (
	"fmt"
	"unsafe"
)

// Ptr is a device address; on the emulator, the address of C memory on the host.
type Ptr uint64

// Add returns p advanced by n float32 values.
func (p Ptr) Add(n int) Ptr { return p + Ptr(4*n) }

// Dim3 is the size of a grid (in blocks) or of a block (in threads).
type Dim3 struct{ X, Y, Z int }

// Kernel is a kernel of compute/gpu/kernels/all.cu.
type Kernel struct {
	Name   string
	Index  int      // position in Kernels: the emulator's number for it
	Params []string // the C declarations of its parameters
}

// Backend is a device. Its calls are made from one goroutine at a time and run in
// order, as in one CUDA stream.
type Backend interface {
	// Name is a short name for messages ("cuda", "emulator").
	Name() string
	// Alloc returns a buffer of at least bytes bytes, aligned to 256 bytes, with arbitrary contents.
	Alloc(bytes int64) (Ptr, error)
	// Free releases a buffer of Alloc.
	Free(p Ptr) error
	// CopyIn copies bytes from host memory to the device; src may be reused on return.
	CopyIn(dst Ptr, src unsafe.Pointer, bytes int64) error
	// CopyOut copies bytes from the device to host memory once the queued work is done.
	CopyOut(dst unsafe.Pointer, src Ptr, bytes int64) error
	// Copy copies bytes between two device buffers.
	Copy(dst, src Ptr, bytes int64) error
	// Launch queues kernel k over grid blocks of block threads; each argument is 8 bytes
	// (a Ptr, an int64 or a float64's bits) in the order of k's parameters.
	Launch(k *Kernel, grid, block Dim3, args []uint64) error
	// Gemm queues a matrix product.
	Gemm(g Gemm) error
	// Sync waits for the queued work and reports the first error of a kernel.
	Sync() error
}

// Upload copies a float32 slice to the device at dst.
func Upload(be Backend, dst Ptr, src []float32) error {
	if len(src) == 0 {
		return nil
	}
	return be.CopyIn(dst, unsafe.Pointer(unsafe.SliceData(src)), 4*int64(len(src)))
}

// Download copies len(dst) float32 values from the device at src.
func Download(be Backend, dst []float32, src Ptr) error {
	if len(dst) == 0 {
		return nil
	}
	return be.CopyOut(unsafe.Pointer(unsafe.SliceData(dst)), src, 4*int64(len(dst)))
}

// UploadWords copies 8-byte words (addresses, sizes) to the device at dst.
func UploadWords(be Backend, dst Ptr, src []uint64) error {
	if len(src) == 0 {
		return nil
	}
	return be.CopyIn(dst, unsafe.Pointer(unsafe.SliceData(src)), 8*int64(len(src)))
}

// DownloadWords copies len(dst) 8-byte words from the device at src.
func DownloadWords(be Backend, dst []uint64, src Ptr) error {
	if len(dst) == 0 {
		return nil
	}
	return be.CopyOut(unsafe.Pointer(unsafe.SliceData(dst)), src, 8*int64(len(dst)))
}

// Threads is the block size of the elementwise kernels.
const Threads = 256

// maxBlocks bounds the grid of a grid-stride kernel: more blocks than the GPU can hold
// at once only add scheduling.
const maxBlocks = 1 << 15

// grid1 is the grid of a grid-stride kernel over n values.
func grid1(n int) Dim3 { return Dim3{max(1, min(maxBlocks, (n+Threads-1)/Threads)), 1, 1} }

var threads1 = Dim3{Threads, 1, 1}

// redBlock is the block of the kernels that reduce with block_sum or block_max.
var redBlock = Dim3{RedThreads, 1, 1}

// checkGrid reports a grid dimension beyond what a launch allows (2³¹−1 blocks in x).
func checkGrid(what string, n int) error {
	if n < 1 || n > 1<<31-1 {
		return fmt.Errorf("%s: %d blocks in one launch", what, n)
	}
	return nil
}
