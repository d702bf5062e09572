// all.cu is the one translation unit of the device kernels: nvcc compiles it to the
// PTX module that the CUDA backend loads (make ptx), and emu.c includes it for the CPU
// emulator. The order matters: later files use the helpers of earlier ones.
#include "compat.cuh"

#include "elementwise.cu"
#include "reduce.cu"
#include "groupnorm.cu"
#include "softmax.cu"
#include "conv.cu"
#include "gemm.cu"
#include "optim.cu"
