// Package cuda is the NVIDIA GPU backend of package gpu, built with the tag ddpmcuda
// (make build-cuda): the training step (forward, backward, global-norm clipping, Adam,
// EMA, dropout masks) and sampling run on the GPU, with the weights, the optimizer state
// and the activations kept there between steps. Package compute opens it through
// OpenDevice("cuda"|"auto"); without the tag this package is empty. README.md says how to
// build, test and check it.
//
// Decisions, and why:
//
//   - Build tag ddpmcuda, not cuda: Gorgonia v0.9.18 tags its own files cuda; with that
//     tag Gorgonia switches to its cuDNN/cudagen engine, which needs cudnn.h and kernels
//     generated on a machine with a GPU, and the build fails in gorgonia.org/cu/dnn.
//   - The driver API through gorgonia.org/cu v0.9.6 (the person we build for asked for
//     it): the device's primary context, one stream, cuModuleLoadDataEx of the PTX,
//     cuLaunchKernel, async copies. cu passes every kernel argument as 8 bytes, so the
//     kernels take only pointers, long, unsigned long long and double. cu compiles
//     against CUDA 11.8's cuda.h from Debian bookworm's non-free component (CUDA 13's
//     cuda.h maps cuCtxCreate to a 4-argument _v4 that cu does not call).
//   - Kernels in CUDA C (compute/gpu/kernels/*.cu), compiled by nvcc 11.8 to PTX for
//     compute_80 and embedded (kernels.ptx, go:embed): the driver compiles the PTX for the
//     GPU at first use (sm_90 on an H100/H200; cached by the driver), so a user needs
//     only the driver. Older GPUs (compute capability below 8.0) are refused in words.
//     make ptx writes kernels.ptx; make check-cuda (CI) requires it to be exactly what
//     nvcc makes from the committed sources, and ptxas -arch=sm_90 to assemble it.
//   - No load-time dependency on libcuda.so.1: cu's cgo links -lcuda, and a binary so
//     linked dies in the dynamic loader where no driver is installed. make build-cuda
//     links instead build/cuda/libcuda.a, made from shim/shim.c: one trampoline per
//     driver function cu calls (shim/symbols.inc, 159 functions, listed from cu's
//     compiled package by scripts/cuda-shim-symbols.sh and checked by make check-cuda),
//     jumping through a slot that ddpm_cuda_load fills from dlopen("libcuda.so.1") on
//     first use. cu calls cuInit(0) in a package initialiser and exits the process if it
//     fails; the shim's cuInit defers that call to ddpm_cuda_load, so the program starts
//     and OpenDevice says "no NVIDIA driver (…)" or "the NVIDIA driver found no usable
//     GPU (cuInit: …)" in one line. The trampolines are x86-64 code (jmp *slot(%rip)):
//     they pass the arguments through untouched, so no prototype is needed.
//   - Matrix products (convolutions as im2col + GEMM, the dense layers, attention) run in
//     cuBLAS where one is found at run time: libcublas.so.13, .12 or .11 ($DDPM_LIBCUBLAS
//     first), by dlopen, never a link-time dependency, in CUBLAS_DEFAULT_MATH mode (plain
//     float32, no TF32 tensor cores). cuBLAS is NVIDIA's tuned GEMM for every GPU
//     generation; ours (sgemm in gemm.cu, 64×64 tiles, 4×4 per thread) is the fallback
//     where no cuBLAS is installed and what the emulator runs; scripts/gpu-check.sh checks
//     both on the GPU. The GPU machines have cuBLAS for CUDA 13 as Python wheels
//     (nvidia-cublas): gpu-check.sh puts their lib folder on LD_LIBRARY_PATH.
//   - Convolutions: im2col into scratch, then one strided-batched GEMM per chunk of
//     images (W shared, stride 0) writing NCHW directly; the input gradient by the
//     transposed GEMM and a gather-form col2im (each input value sums its own terms: no
//     atomics, the same result every run); the weight gradient by one GEMM per chunk over
//     all its pixels (dy laid out [cout, imgs·ohw]), accumulated with β = 1. 1×1
//     convolutions need no column matrix. Chunks hold as many images as fit in a scratch
//     budget (512 MiB on the GPU), placed in the graph's arena for that step alone.
//     Implicit GEMM or Winograd kernels of our own may beat this; gpu-check.sh measures
//     the step against PyTorch (cuDNN) first.
//   - Reductions (GroupNorm statistics, softmax, bias gradients, the loss, the global
//     norm) sum in float64 in a fixed tree per block, as the CPU sums in float64: the
//     same result every run, and within 1e-6 of the CPU's.
//   - Adam and the EMA are one kernel spelled with rounded operations (__fmul_rn, …) in
//     the CPU's order, so that, given the same gradients, the GPU's new weights, moments
//     and EMA are the CPU's bit for bit; it runs twice per step, first only checking that
//     every new value is finite (a step that would make one Inf or NaN is refused with
//     the state untouched), then storing them.
//   - Dropout masks are drawn on the device from the trainer's stream, with the CPU's
//     generator (PCG-DXSM of math/rand/v2, one generator per block of 65,536 values,
//     jumped ahead in O(log n) per thread): the same bits as the CPU's, so a run moves
//     between devices and resumes exactly. Drawing them on the host instead costs, per
//     cifar10 step at batch 128, 140 M values: 0.59 s on two cores of an AMD EPYC
//     (BenchmarkHostMasksCIFAR10), then 560 MB of float32 (or 17.5 MB of bits) to copy to
//     the GPU every step; on the GPU they are a few thousand threads' work.
//   - Between steps only the loss and the gradient norm (and the check word of the
//     update) come back; sampling copies x_t up and ε̂ down at each step (PredictEps takes
//     host slices: 0.8 MB each way for 64 cifar10 images).
//   - One device, one stream, one goroutine at a time (compute.Device's mutex); every
//     call makes the primary context current on its OS thread, so the backend can be
//     used from any goroutine.
package cuda
