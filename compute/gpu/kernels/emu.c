// The CPU emulator of the device kernels (all.cu, compiled here as C through
// compat.cuh). A launch runs the blocks of the grid one after another; within a block,
// every CUDA thread is a fiber with a stack of its own, run in turn on the calling
// thread until it reaches __syncthreads() or returns. A barrier is passed when every
// fiber of the block has reached it; a block some of whose threads return while others
// wait at a barrier is an error (undefined behaviour on a GPU). Fibers run in order of
// their thread index, and in reverse order after every other barrier, so a kernel that
// reads shared memory another thread writes without a barrier between them reads stale
// values in one of the two orders.
#pragma GCC optimize("O2", "fp-contract=off")
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu.h"
#include "all.cu"

dim3 threadIdx, blockIdx, blockDim, gridDim;

enum { RUNNING, AT_BARRIER, DONE };

typedef struct {
	void *sp;
	int state;
} fiber;

#define STACK_BYTES (64 << 10)

static fiber *fibers;
static char *stacks;
static long nfibers;
static void *sched_sp;
static long cur;
static int cur_kernel;
static const unsigned long long *cur_args;
static char errbuf[256];

void emu_dispatch(int kernel, const unsigned long long *args); // dispatch_gen.c

#if defined(__x86_64__)
// emu_swap saves the callee-saved registers and the stack pointer of the running
// context in *save and resumes the context whose stack pointer is to.
void emu_swap(void **save, void *to);
__asm__(".text\n"
        ".globl emu_swap\n"
        ".type emu_swap,@function\n"
        "emu_swap:\n"
        "\tpushq %rbp\n\tpushq %rbx\n\tpushq %r12\n\tpushq %r13\n\tpushq %r14\n\tpushq %r15\n"
        "\tmovq %rsp, (%rdi)\n"
        "\tmovq %rsi, %rsp\n"
        "\tpopq %r15\n\tpopq %r14\n\tpopq %r13\n\tpopq %r12\n\tpopq %rbx\n\tpopq %rbp\n"
        "\tret\n"
        ".size emu_swap, .-emu_swap\n");
#else
#error "the kernel emulator switches fibers with x86-64 code"
#endif

// fiber_main runs the kernel for the current thread and returns to the scheduler.
static void fiber_main(void) {
	emu_dispatch(cur_kernel, cur_args);
	fibers[cur].state = DONE;
	emu_swap(&fibers[cur].sp, sched_sp);
	abort(); // a finished fiber is never resumed
}

// fiber_start prepares fiber t's stack so that switching to it enters fiber_main as if
// called: six zero registers for emu_swap to pop, then fiber_main's address for its ret.
static void fiber_start(long t) {
	char *top = stacks + (t + 1) * (long)STACK_BYTES;
	top = (char *)((unsigned long)top & ~15UL);
	void **sp = (void **)(top - 64);
	memset(sp, 0, 64);
	sp[6] = (void *)fiber_main;
	fibers[t].sp = sp;
	fibers[t].state = RUNNING;
}

void emu_syncthreads(void) {
	fibers[cur].state = AT_BARRIER;
	emu_swap(&fibers[cur].sp, sched_sp);
}

static void set_thread(long t) {
	threadIdx.x = t % blockDim.x;
	threadIdx.y = t / blockDim.x % blockDim.y;
	threadIdx.z = t / (blockDim.x * blockDim.y);
}

// run_block runs every thread of the current block; it returns 0, or -1 with errbuf set.
static int run_block(long threads) {
	for (long t = 0; t < threads; t++) fiber_start(t);
	for (long phase = 0;; phase++) {
		long done = 0, waiting = 0;
		for (long i = 0; i < threads; i++) {
			long t = phase % 2 ? threads - 1 - i : i;
			if (fibers[t].state == DONE) {
				done++;
				continue;
			}
			cur = t;
			set_thread(t);
			fibers[t].state = RUNNING;
			emu_swap(&sched_sp, fibers[t].sp);
			if (fibers[t].state == DONE) done++;
			else waiting++;
		}
		if (waiting == 0) return 0;
		if (done > 0) {
			snprintf(errbuf, sizeof errbuf, "block (%u,%u,%u): %ld threads wait at __syncthreads while %ld have returned",
			         blockIdx.x, blockIdx.y, blockIdx.z, waiting, done);
			return -1;
		}
	}
}

const char *emu_launch(int kernel, const unsigned long long *args, long gx, long gy, long gz, long bx, long by, long bz) {
	long threads = bx * by * bz;
	if (threads < 1 || threads > 1024 || gx < 1 || gy < 1 || gz < 1) {
		snprintf(errbuf, sizeof errbuf, "bad launch: grid %ldx%ldx%ld, block %ldx%ldx%ld", gx, gy, gz, bx, by, bz);
		return errbuf;
	}
	if (threads > nfibers) {
		free(fibers);
		free(stacks);
		fibers = calloc(threads, sizeof *fibers);
		stacks = malloc(threads * (long)STACK_BYTES);
		if (!fibers || !stacks) {
			nfibers = 0;
			return "out of memory for the emulator's stacks";
		}
		nfibers = threads;
	}
	cur_kernel = kernel;
	cur_args = args;
	gridDim.x = gx, gridDim.y = gy, gridDim.z = gz;
	blockDim.x = bx, blockDim.y = by, blockDim.z = bz;
	for (long z = 0; z < gz; z++)
		for (long y = 0; y < gy; y++)
			for (long x = 0; x < gx; x++) {
				blockIdx.x = x, blockIdx.y = y, blockIdx.z = z;
				if (run_block(threads) != 0) return errbuf;
			}
	return NULL;
}
