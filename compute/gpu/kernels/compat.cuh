// compat.cuh lets the kernels of this folder be compiled twice from one source: by nvcc
// into PTX for the GPU, and by gcc as C for the CPU emulator (emu.c) that the tests run
// on machines without a GPU. Kernels are written in the C subset of CUDA C with these
// macros:
//
//	KERNEL(name)(params)  a kernel (extern "C", so that its PTX name is name)
//	DEV                   a device helper function
//	RESTRICT              __restrict__
//
// Parameters are pointers, long or double only: gorgonia.org/cu passes every kernel
// argument as 8 bytes, and the emulator's dispatcher (dispatch_gen.c) unpacks them so.
#ifndef DDPM_COMPAT_CUH
#define DDPM_COMPAT_CUH

#ifdef __CUDACC__

#define KERNEL(name) extern "C" __global__ void name
#define DEV static __device__ __forceinline__
#define RESTRICT __restrict__

// mulhi64 is the high half of the 128-bit product of a and b.
DEV unsigned long long mulhi64(unsigned long long a, unsigned long long b) { return __umul64hi(a, b); }

#else // the CPU emulator

#include <math.h>
#include <stdint.h>

typedef struct {
	unsigned int x, y, z;
} dim3;

// The emulator (emu.c) sets these before it runs each thread of a block.
extern dim3 threadIdx, blockIdx, blockDim, gridDim;

// emu_syncthreads suspends the calling thread until every thread of its block has
// reached the barrier (emu.c).
void emu_syncthreads(void);
#define __syncthreads() emu_syncthreads()

#define KERNEL(name) void name
#define DEV static inline
#define RESTRICT __restrict
// Blocks run one after another, so one static copy per kernel serves every block.
#define __shared__ static

// Rounded operations that nvcc must not fuse into FMAs; gcc compiles the emulator with
// -ffp-contract=off, so plain operators round each step the same way.
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline double __dsqrt_rn(double a) { return sqrt(a); }
static inline float __int_as_float(int i) {
	union { int i; float f; } u = {i};
	return u.f;
}

static inline unsigned long long mulhi64(unsigned long long a, unsigned long long b) {
	return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}

// Threads of the emulator never run at the same time: atomics are plain updates.
static inline unsigned long long atomicMin(unsigned long long *p, unsigned long long v) {
	unsigned long long old = *p;
	if (v < old) *p = v;
	return old;
}

#endif

// Helpers both compilers understand.
DEV long lmin(long a, long b) { return a < b ? a : b; }
DEV long lmax(long a, long b) { return a > b ? a : b; }

// Thread indices over a one-dimensional grid, as 64-bit numbers.
#define GLOBAL_ID ((long)blockIdx.x * blockDim.x + threadIdx.x)
#define GLOBAL_STRIDE ((long)gridDim.x * blockDim.x)

#endif
