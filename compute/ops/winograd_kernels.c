// Float32 transforms of the Winograd F(2×2, 3×3) convolution (see winograd.go): the
// input tiles into the 16 matrices V[ξ] [cin, P] and the 16 products M[ξ] [cout, P] back
// into 2×2 output tiles, P the tiles of images n0..n1 in (image, tile row, tile column)
// order; rows of the matrices are ld ≥ P floats apart, and the matrices plane floats.
#pragma GCC optimize("O3")
#include <stdlib.h>
#include "winograd_kernels.h"
#include "kernels_math.h"

CLONES void wino_input_f32(float *restrict v, const float *restrict x, long n0, long n1, long cin, long h, long w, long th, long tw, long ld, long plane) {
	long tiles = th * tw;
	long ph = 2 * th + 2, pw = 2 * tw + 2; // the plane with a zero border: tiles need no bounds checks
	float *pad = calloc(ph * pw, sizeof(float));
	if (!pad) abort(); // as Go would on running out of memory
	for (long n = n0; n < n1; n++) {
		for (long c = 0; c < cin; c++) {
			const float *xc = x + (n * cin + c) * h * w;
			for (long iy = 0; iy < h; iy++)
				for (long ix = 0; ix < w; ix++) pad[(iy + 1) * pw + ix + 1] = xc[iy * w + ix];
			float *vc = v + c * ld + (n - n0) * tiles;
			for (long i = 0; i < th; i++) {
				const float *r0 = pad + 2 * i * pw, *r1 = r0 + pw, *r2 = r1 + pw, *r3 = r2 + pw;
				float *vt = vc + i * tw;
				for (long j = 0; j < tw; j++) {
					float t[4][4]; // Bᵀ d, d the 4×4 tile at rows 2i.., columns 2j.. of pad
					for (long s = 0; s < 4; s++) {
						float d0 = r0[2 * j + s], d1 = r1[2 * j + s], d2 = r2[2 * j + s], d3 = r3[2 * j + s];
						t[0][s] = d0 - d2;
						t[1][s] = d1 + d2;
						t[2][s] = d2 - d1;
						t[3][s] = d1 - d3;
					}
					for (long r = 0; r < 4; r++) { // (Bᵀ d) B
						vt[(4 * r + 0) * plane + j] = t[r][0] - t[r][2];
						vt[(4 * r + 1) * plane + j] = t[r][1] + t[r][2];
						vt[(4 * r + 2) * plane + j] = t[r][2] - t[r][1];
						vt[(4 * r + 3) * plane + j] = t[r][1] - t[r][3];
					}
				}
			}
			// Rows and columns past the image stay zero: only the image area is rewritten.
		}
	}
	free(pad);
}

CLONES void wino_output_f32(float *restrict y, const float *restrict m, const float *restrict bias, long n0, long n1, long cout, long h, long w, long th, long tw, long ld, long plane) {
	long tiles = th * tw;
	for (long n = n0; n < n1; n++) {
		for (long c = 0; c < cout; c++) {
			float *yc = y + (n * cout + c) * h * w;
			const float *mc = m + c * ld + (n - n0) * tiles;
			for (long i = 0; i < th; i++) {
				for (long j = 0; j < tw; j++) {
					long at = i * tw + j;
					float q[4][4];
					for (long k = 0; k < 16; k++) q[k / 4][k % 4] = mc[k * plane + at];
					float s[2][4]; // Aᵀ m
					for (long b = 0; b < 4; b++) {
						s[0][b] = q[0][b] + q[1][b] + q[2][b];
						s[1][b] = q[1][b] - q[2][b] - q[3][b];
					}
					for (long r = 0; r < 2; r++) { // (Aᵀ m) A
						long oy = 2 * i + r;
						if (oy >= h) continue;
						float y0 = s[r][0] + s[r][1] + s[r][2], y1 = s[r][1] - s[r][2] - s[r][3];
						yc[oy * w + 2 * j] = y0 + bias[c];
						if (2 * j + 1 < w) yc[oy * w + 2 * j + 1] = y1 + bias[c];
					}
				}
			}
		}
	}
}

// wino_grad_output_f32 is the adjoint of wino_output_f32 (bias aside): it turns the 2×2
// tiles of dy into the 16 matrices A dY Aᵀ [cout, P], the gradient of the products M.
// Pixels past the image's right or bottom edge count as zero.
CLONES void wino_grad_output_f32(float *restrict m, const float *restrict dy, long n0, long n1, long cout, long h, long w, long th, long tw, long ld, long plane) {
	long tiles = th * tw;
	for (long n = n0; n < n1; n++) {
		for (long c = 0; c < cout; c++) {
			const float *dc = dy + (n * cout + c) * h * w;
			float *mc = m + c * ld + (n - n0) * tiles;
			for (long i = 0; i < th; i++) {
				for (long j = 0; j < tw; j++) {
					float d[2][2] = {{0, 0}, {0, 0}};
					for (long r = 0; r < 2; r++) {
						long oy = 2 * i + r;
						if (oy >= h) continue;
						d[r][0] = dc[oy * w + 2 * j];
						if (2 * j + 1 < w) d[r][1] = dc[oy * w + 2 * j + 1];
					}
					float a[4][2]; // A dY, A = [[1,0],[1,1],[1,−1],[0,−1]]
					for (long s = 0; s < 2; s++) {
						a[0][s] = d[0][s];
						a[1][s] = d[0][s] + d[1][s];
						a[2][s] = d[0][s] - d[1][s];
						a[3][s] = -d[1][s];
					}
					float *mt = mc + i * tw + j;
					for (long r = 0; r < 4; r++) { // (A dY) Aᵀ
						mt[(4 * r + 0) * plane] = a[r][0];
						mt[(4 * r + 1) * plane] = a[r][0] + a[r][1];
						mt[(4 * r + 2) * plane] = a[r][0] - a[r][1];
						mt[(4 * r + 3) * plane] = -a[r][1];
					}
				}
			}
		}
	}
}
