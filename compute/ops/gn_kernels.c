// Float32 GroupNorm(+swish) kernels, compiled for AVX2 and for baseline x86-64
// (target_clones picks one at load time); see gn_cgo.go. The pragma stands in
// for compiler flags that cgo does not accept: without them the loops calling
// exp_approx are not vectorised, nor the sums (reassociated; the result is
// still the same from run to run on one machine).
#pragma GCC optimize("O3", "no-math-errno", "no-trapping-math", "associative-math", "no-signed-zeros")
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "gn_kernels.h"

#include "kernels_math.h"

static inline float sigmoid(float z) { return 1.0f / (1.0f + exp_approx(-z)); }

// dswish is the derivative of swish(z) = z·sigmoid(z): s·(1 + z·(1−s)).
static inline float dswish(float z) {
	float s = sigmoid(z);
	return s * (1.0f + z * (1.0f - s));
}

// moments returns the mean of x[0..m) and 1/sqrt(var+eps), var the biased variance, in double.
CLONES static void moments(const float *restrict x, long m, double eps, double *mean, double *rstd) {
	double s = 0;
	for (long i = 0; i < m; i++) s += x[i];
	double mu = s / m, ss = 0;
	for (long i = 0; i < m; i++) {
		double d = x[i] - mu;
		ss += d * d;
	}
	*mean = mu;
	*rstd = 1.0 / sqrt(ss / m + eps);
}

CLONES static void affine(float *restrict y, const float *restrict x, long n, float a, float b, int act) {
	if (act) {
		for (long i = 0; i < n; i++) {
			float z = x[i] * a + b;
			y[i] = z * sigmoid(z);
		}
	} else {
		for (long i = 0; i < n; i++) y[i] = x[i] * a + b;
	}
}

void gn_forward_f32(float *y, const float *x, const float *gamma, const float *beta,
                    long lo, long hi, long groups, long cg, long hw, double eps, int act) {
	long m = cg * hw;
	for (long ng = lo; ng < hi; ng++) {
		double mean, rstd;
		moments(x + ng * m, m, eps, &mean, &rstd);
		for (long k = 0; k < cg; k++) {
			long ch = ng % groups * cg + k;
			double a = rstd * gamma[ch];
			double b = beta[ch] - mean * a;
			long off = ng * m + k * hw;
			affine(y + off, x + off, hw, (float)a, (float)b, act);
		}
	}
}

// dz is dy times swish'(x̂·γ+β) (or dy without the activation); sums of dz and dz·x̂.
CLONES static void channel_sums(const float *restrict x, const float *restrict dy, long n, float mean, float rstd,
                                float gm, float bt, int act, double *s1, double *s2) {
	float a = 0, b = 0;  // float partial sums vectorise; runs are at most a few thousand long
	for (long i = 0; i < n; i++) {
		float xh = (x[i] - mean) * rstd;
		float dz = dy[i];
		if (act) dz *= dswish(xh * gm + bt);
		a += dz;
		b += dz * xh;
	}
	*s1 = a;
	*s2 = b;
}

void gn_stats_f32(float *st, const float *x, const float *gamma, const float *beta, const float *dy,
                  long lo, long hi, long groups, long c, long cg, long hw, double eps, int act) {
	long m = cg * hw, w = 2 * groups + 2 * c;
	for (long ng = lo; ng < hi; ng++) {
		long g = ng % groups;
		float *row = st + ng / groups * w;
		double mean, rstd;
		moments(x + ng * m, m, eps, &mean, &rstd);
		row[g] = (float)mean;
		row[groups + g] = (float)rstd;
		for (long k = 0; k < cg; k++) {
			long ch = g * cg + k, off = ng * m + k * hw;
			double s1, s2;
			channel_sums(x + off, dy + off, hw, (float)mean, (float)rstd, gamma[ch], beta[ch], act, &s1, &s2);
			row[2 * groups + ch] = (float)s1;
			row[2 * groups + c + ch] = (float)s2;
		}
	}
}

CLONES static void channel_dx(float *restrict dx, const float *restrict x, const float *restrict dy, long n,
                              float mean, float rstd, float gm, float bt, float a, float b, int act) {
	for (long i = 0; i < n; i++) {
		float xh = (x[i] - mean) * rstd;
		float dz = dy[i];
		if (act) dz *= dswish(xh * gm + bt);
		dx[i] = rstd * (dz * gm - a - xh * b);
	}
}

void gn_dx_f32(float *dx, const float *x, const float *gamma, const float *beta, const float *dy, const float *st,
               long lo, long hi, long groups, long c, long cg, long hw, int act) {
	long m = cg * hw, w = 2 * groups + 2 * c;
	for (long ng = lo; ng < hi; ng++) {
		long g = ng % groups;
		const float *row = st + ng / groups * w;
		float mean = row[g], rstd = row[groups + g];
		double a = 0, b = 0;
		for (long ch = g * cg; ch < (g + 1) * cg; ch++) {
			a += (double)gamma[ch] * row[2 * groups + ch];
			b += (double)gamma[ch] * row[2 * groups + c + ch];
		}
		a /= m;
		b /= m;
		for (long k = 0; k < cg; k++) {
			long ch = g * cg + k, off = ng * m + k * hw;
			channel_dx(dx + off, x + off, dy + off, hw, mean, rstd, gamma[ch], beta[ch], (float)a, (float)b, act);
		}
	}
}
