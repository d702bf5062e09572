// libcuda.a: a stand-in for the NVIDIA driver library that gorgonia.org/cu links
// (-lcuda), so that a binary built with -tags cuda needs no libcuda.so.1 to start.
// make build-cuda compiles this file into build/cuda/libcuda.a and puts that folder
// first on the linker's path (CGO_LDFLAGS=-L...), where -lcuda finds it before the
// system's libcuda.so.
//
// Every driver function cu calls (symbols.inc) is a two-instruction trampoline that
// jumps through a slot: until ddpm_cuda_load succeeds the slot answers
// CUDA_ERROR_NOT_INITIALIZED; ddpm_cuda_load dlopens libcuda.so.1 (or $DDPM_LIBCUDA)
// and fills every slot from it (CUDA_ERROR_NOT_SUPPORTED for a function the driver
// lacks). The trampolines pass their arguments through untouched, so no prototype is
// needed. cu calls cuInit(0) in a package initialiser and exits the process if it
// fails; cuInit here only records its flags until ddpm_cuda_load, which calls the
// driver's cuInit, so the binary starts where no driver or no GPU is and the program
// says so in words instead.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "shim.h"

#if !defined(__x86_64__)
#error "the libcuda shim's trampolines are written for x86-64"
#endif

typedef int CUresult;
enum { CUDA_SUCCESS = 0, CUDA_ERROR_NOT_INITIALIZED = 3, CUDA_ERROR_NOT_SUPPORTED = 801 };

static CUresult not_loaded(void) { return CUDA_ERROR_NOT_INITIALIZED; }
static CUresult not_in_driver(void) { return CUDA_ERROR_NOT_SUPPORTED; }

// One slot and one trampoline per function.
#define SYM(name)                                                                          \
	__attribute__((visibility("hidden"))) void *ddpm_slot_##name = (void *)not_loaded; \
	__asm__(".text\n.globl " #name "\n.type " #name ",@function\n" #name ":\n"        \
	        "\tjmp *ddpm_slot_" #name "(%rip)\n.size " #name ", .-" #name "\n");
#include "symbols.inc"
#undef SYM

static const struct {
	const char *name;
	void **slot;
} syms[] = {
#define SYM(name) {#name, &ddpm_slot_##name},
#include "symbols.inc"
#undef SYM
};

static unsigned init_flags;
static CUresult (*real_init)(unsigned);

CUresult cuInit(unsigned flags) {
	if (!real_init) { // before ddpm_cuda_load: remember the flags for it
		init_flags = flags;
		return CUDA_SUCCESS;
	}
	return real_init(flags);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int status = DDPM_CUDA_NO_DRIVER;
static char message[512];

static void load(void) {
	const char *lib = getenv("DDPM_LIBCUDA");
	if (!lib || !*lib) lib = "libcuda.so.1";
	void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(message, sizeof message, "no NVIDIA driver (%s)", dlerror());
		return;
	}
	CUresult (*init)(unsigned) = (CUresult(*)(unsigned))dlsym(h, "cuInit");
	if (!init) {
		snprintf(message, sizeof message, "%s is not an NVIDIA driver library (it has no cuInit)", lib);
		return;
	}
	for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
		void *f = dlsym(h, syms[i].name);
		*syms[i].slot = f ? f : (void *)not_in_driver;
	}
	CUresult r = init(init_flags);
	if (r != CUDA_SUCCESS) {
		const char *s = NULL;
		CUresult (*str)(CUresult, const char **) = (CUresult(*)(CUresult, const char **))dlsym(h, "cuGetErrorString");
		if (str) str(r, &s);
		snprintf(message, sizeof message, "the NVIDIA driver found no usable GPU (cuInit: %s, error %d)", s ? s : "unknown error", r);
		status = DDPM_CUDA_NO_GPU;
		return;
	}
	real_init = init;
	status = DDPM_CUDA_OK;
}

int ddpm_cuda_load(char *msg, int len) {
	pthread_once(&once, load);
	if (status != DDPM_CUDA_OK && len > 0) snprintf(msg, len, "%s", message);
	return status;
}
