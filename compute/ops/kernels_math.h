// Shared by the C kernels: the clone attribute and a vectorisable exponential.
#ifndef KERNELS_MATH_H
#define KERNELS_MATH_H
#include <stdint.h>
#include <string.h>

// AVX-512 where the CPU has it (16 floats a step), AVX2 (8) or baseline x86-64.
#if defined(__x86_64__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

// exp_approx is e^x for |x| < 87 to about 3 ulp: x = n·ln2 + r (Cody-Waite),
// e^r by its Taylor polynomial of degree 6, 2^n from the exponent bits.
// Written so that the compiler vectorises the loops that call it: n is rounded with
// rintf (to nearest even, one vroundps) and not roundf (ties away from zero), which
// AVX2 has no instruction for and which keeps such loops scalar
// (BenchmarkGroupNormSwish times them).
static inline float exp_approx(float x) {
	x = x < -87.0f ? -87.0f : (x > 87.0f ? 87.0f : x);
	float n = __builtin_rintf(x * 1.44269504088896341f);
	float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
	float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666679f + r * (0.00833333377f + r * 0.00138888892f)))));
	int32_t bits = ((int32_t)n + 127) << 23;
	float s;
	memcpy(&s, &bits, 4);
	return p * s;
}

#endif
