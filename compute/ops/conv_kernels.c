// Float32 im2col and col2im (see conv.go for their definition); the same loops
// as the Go versions, where the compiler inlines and vectorises the short row
// copies that Go hands to memmove one call at a time.
#pragma GCC optimize("O3")
#include <string.h>
#include "conv_kernels.h"
#include "kernels_math.h"

CLONES void im2col_f32(float *restrict col, const float *restrict x, const struct conv_geom *g, long n0, long n1) {
	long cols = (n1 - n0) * g->ohw, kk = g->cin * g->k * g->k;
	for (long r = 0; r < kk; r++) {
		long c = r / (g->k * g->k), ky = r / g->k % g->k, kx = r % g->k;
		float *row = col + r * cols;
		for (long n = n0; n < n1; n++) {
			const float *plane = x + (n * g->cin + c) * g->h * g->w;
			float *out = row + (n - n0) * g->ohw;
			for (long oy = 0; oy < g->oh; oy++) {
				long iy = oy * g->stride - g->top + ky;
				float *dst = out + oy * g->ow;
				if (iy < 0 || iy >= g->h) {
					for (long ox = 0; ox < g->ow; ox++) dst[ox] = 0;
					continue;
				}
				const float *src = plane + iy * g->w;
				for (long ox = 0; ox < g->ow; ox++) {
					long ix = ox * g->stride - g->left + kx;
					dst[ox] = (ix >= 0 && ix < g->w) ? src[ix] : 0.0f;
				}
			}
		}
	}
}

CLONES void col2im_f32(float *restrict dx, const float *restrict col, const struct conv_geom *g, long n0, long n1) {
	long cols = (n1 - n0) * g->ohw, kk = g->cin * g->k * g->k;
	for (long r = 0; r < kk; r++) {
		long c = r / (g->k * g->k), ky = r / g->k % g->k, kx = r % g->k;
		const float *row = col + r * cols;
		for (long n = n0; n < n1; n++) {
			float *plane = dx + (n * g->cin + c) * g->h * g->w;
			const float *in = row + (n - n0) * g->ohw;
			for (long oy = 0; oy < g->oh; oy++) {
				long iy = oy * g->stride - g->top + ky;
				if (iy < 0 || iy >= g->h) continue;
				float *dst = plane + iy * g->w;
				const float *src = in + oy * g->ow;
				if (g->stride == 1) {
					long lo = g->left - kx > 0 ? g->left - kx : 0;
					long hi = g->w + g->left - kx < g->ow ? g->w + g->left - kx : g->ow;
					float *d = dst - g->left + kx;
					for (long ox = lo; ox < hi; ox++) d[ox] += src[ox];
					continue;
				}
				for (long ox = 0; ox < g->ow; ox++) {
					long ix = ox * g->stride - g->left + kx;
					if (ix >= 0 && ix < g->w) dst[ix] += src[ox];
				}
			}
		}
	}
}
