// Group normalisation (optionally fused with swish), as ops.GroupNorm and
// ops.GroupNormSwish: x [N, C, hw] in groups of cg consecutive channels, m = cg·hw
// values per sample and group. One block of RED_THREADS threads per (sample, group)
// computes the mean and 1/√(σ²+eps) in float64, in two passes as the CPU does.

// gn_moments returns the mean of x[0..m) and sets *rstd to 1/√(var+eps).
DEV double gn_moments(const float *RESTRICT x, long m, double eps, double *buf, double *rstd) {
	double s = 0;
	for (long i = threadIdx.x; i < m; i += RED_THREADS) s += x[i];
	double mean = block_sum(s, buf) / m;
	double ss = 0;
	for (long i = threadIdx.x; i < m; i += RED_THREADS) {
		double d = x[i] - mean;
		ss += d * d;
	}
	*rstd = 1.0 / sqrt(block_sum(ss, buf) / m + eps);
	return mean;
}

// gn_forward is y = act(x̂·γ + β), act swish when act is set; grid: N·groups blocks.
KERNEL(gn_forward)(float *RESTRICT y, const float *RESTRICT x, const float *RESTRICT gamma, const float *RESTRICT beta,
                   long groups, long cg, long hw, double eps, long act) {
	__shared__ double buf[RED_THREADS];
	long ng = blockIdx.x, m = cg * hw;
	const float *xs = x + ng * m;
	float *ys = y + ng * m;
	double rstd;
	double mean = gn_moments(xs, m, eps, buf, &rstd);
	for (long i = threadIdx.x; i < m; i += RED_THREADS) {
		long ch = ng % groups * cg + i / hw;
		double a = rstd * gamma[ch];
		float z = xs[i] * (float)a + (float)(beta[ch] - mean * a);
		ys[i] = act ? z * sigmoid(z) : z;
	}
}

// gn_stats writes the backward statistics of sample n into row n of st [N, 2G+2C]: the
// mean and 1/√(σ²+eps) of each group g at g and G+g, then for each channel c the sums
// over its hw values of dz and dz·x̂ at 2G+c and 2G+C+c, dz being dy times swish' of the
// affine output (or dy without act). Grid: N·groups blocks.
KERNEL(gn_stats)(float *RESTRICT st, const float *RESTRICT x, const float *RESTRICT gamma, const float *RESTRICT beta,
                 const float *RESTRICT dy, long groups, long c, long cg, long hw, double eps, long act) {
	__shared__ double buf[RED_THREADS];
	long ng = blockIdx.x, m = cg * hw, g = ng % groups;
	float *row = st + ng / groups * (2 * groups + 2 * c);
	double rstd;
	double mean = gn_moments(x + ng * m, m, eps, buf, &rstd);
	float meanf = (float)mean, rstdf = (float)rstd;
	for (long k = 0; k < cg; k++) {
		long ch = g * cg + k, off = ng * m + k * hw;
		float gm = gamma[ch], bt = beta[ch];
		double s1 = 0, s2 = 0;
		for (long i = threadIdx.x; i < hw; i += RED_THREADS) {
			float xh = (x[off + i] - meanf) * rstdf;
			float dz = dy[off + i];
			if (act) dz *= dswish(xh * gm + bt);
			s1 += dz;
			s2 += dz * xh;
		}
		s1 = block_sum(s1, buf);
		s2 = block_sum(s2, buf);
		if (threadIdx.x == 0) {
			row[2 * groups + ch] = (float)s1;
			row[2 * groups + c + ch] = (float)s2;
		}
	}
	if (threadIdx.x == 0) {
		row[g] = meanf;
		row[groups + g] = rstdf;
	}
}

// gn_dx is dL/dx = rstd·(dz·γ − mean(dz·γ) − x̂·mean(dz·γ·x̂)) from the statistics of
// gn_stats, one thread per value of x (n values in all).
KERNEL(gn_dx)(float *RESTRICT dx, const float *RESTRICT x, const float *RESTRICT gamma, const float *RESTRICT beta,
              const float *RESTRICT dy, const float *RESTRICT st, long n, long groups, long c, long cg, long hw, long act) {
	long w = 2 * groups + 2 * c;
	for (long i = GLOBAL_ID; i < n; i += GLOBAL_STRIDE) {
		long img = i / (c * hw), ch = i / hw % c, g = ch / cg;
		const float *row = st + img * w;
		float mean = row[g], rstd = row[groups + g];
		double a = 0, b = 0;
		for (long k = g * cg; k < (g + 1) * cg; k++) {
			a += (double)gamma[k] * row[2 * groups + k];
			b += (double)gamma[k] * row[2 * groups + c + k];
		}
		float af = (float)(a / (cg * hw)), bf = (float)(b / (cg * hw));
		float gm = gamma[ch];
		float xh = (x[i] - mean) * rstd;
		float dz = dy[i];
		if (act) dz *= dswish(xh * gm + beta[ch]);
		dx[i] = rstd * (dz * gm - af - xh * bf);
	}
}

// gn_param_grad sums over the n rows of st [n, w] the values at off+ch into out[ch]:
// off 2G gives dL/dβ, 2G+C gives dL/dγ.
KERNEL(gn_param_grad)(float *RESTRICT out, const float *RESTRICT st, long n, long w, long off, long c) {
	for (long ch = GLOBAL_ID; ch < c; ch += GLOBAL_STRIDE) {
		double s = 0;
		for (long b = 0; b < n; b++) s += st[b * w + off + ch];
		out[ch] = (float)s;
	}
}
