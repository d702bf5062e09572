// The loader of the libcuda shim (shim.c).
#ifndef DDPM_CUDA_SHIM_H
#define DDPM_CUDA_SHIM_H

enum { DDPM_CUDA_OK = 0, DDPM_CUDA_NO_DRIVER = 1, DDPM_CUDA_NO_GPU = 2 };

// ddpm_cuda_load loads the NVIDIA driver (once; later calls return the first result) and
// returns DDPM_CUDA_OK, or another status with the reason, in words, in msg.
int ddpm_cuda_load(char *msg, int len);

#endif
