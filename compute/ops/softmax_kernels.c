// Float32 softmax rows and their gradient (see softmax.go), vectorised: the
// attention's softmax over 196×196 scores per image was an eighth of a
// forward pass in Go, whose compiler does not vectorise the exponential.
// Sums are reassociated (vectorised); results are the same from run to run
// on one machine.
#pragma GCC optimize("O3", "no-math-errno", "no-trapping-math", "associative-math", "no-signed-zeros")
#include "softmax_kernels.h"
#include "kernels_math.h"

// softmax_rows_f32 writes y = softmax(scale·x) along rows lo..hi of width w.
CLONES void softmax_rows_f32(float *restrict y, const float *restrict x, long lo, long hi, long w, float scale) {
	for (long r = lo; r < hi; r++) {
		const float *xr = x + r * w;
		float *yr = y + r * w;
		float m = -__builtin_inff();
		for (long i = 0; i < w; i++) m = xr[i] * scale > m ? xr[i] * scale : m;
		float s = 0;
		for (long i = 0; i < w; i++) {
			float e = exp_approx(xr[i] * scale - m);
			yr[i] = e;
			s += e;
		}
		float inv = 1.0f / s;
		for (long i = 0; i < w; i++) yr[i] *= inv;
	}
}

// softmax_grad_rows_f32 writes dx = scale · y ⊙ (dy − Σ y ⊙ dy) along rows lo..hi.
CLONES void softmax_grad_rows_f32(float *restrict dx, const float *restrict y, const float *restrict dy, long lo, long hi, long w, float scale) {
	for (long r = lo; r < hi; r++) {
		const float *yr = y + r * w, *dyr = dy + r * w;
		float *dxr = dx + r * w;
		float s = 0;
		for (long i = 0; i < w; i++) s += yr[i] * dyr[i];
		for (long i = 0; i < w; i++) dxr[i] = scale * yr[i] * (dyr[i] - s);
	}
}
