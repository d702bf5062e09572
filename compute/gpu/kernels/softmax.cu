// ops.Softmax over the last axis: y = softmax(scale·x) per row of w values, one block
// of RED_THREADS threads per row, the largest value subtracted before the exponential.
KERNEL(softmax_rows)(float *RESTRICT y, const float *RESTRICT x, long w, double scale) {
	__shared__ double buf[RED_THREADS];
	__shared__ float fbuf[RED_THREADS];
	const float *xr = x + (long)blockIdx.x * w;
	float *yr = y + (long)blockIdx.x * w;
	float sc = (float)scale;
	float m = -INFINITY;
	for (long i = threadIdx.x; i < w; i += RED_THREADS) m = fmaxf(m, xr[i] * sc);
	m = block_max(m, fbuf);
	double s = 0;
	for (long i = threadIdx.x; i < w; i += RED_THREADS) {
		float e = expf(xr[i] * sc - m);
		yr[i] = e;
		s += e;
	}
	float inv = (float)(1.0 / block_sum(s, buf));
	for (long i = threadIdx.x; i < w; i += RED_THREADS) yr[i] *= inv;
}

// softmax_grad_rows is the gradient of softmax_rows from its output y:
// dx = scale·y·(dy − Σ y·dy), per row.
KERNEL(softmax_grad_rows)(float *RESTRICT dx, const float *RESTRICT y, const float *RESTRICT dy, long w, double scale) {
	__shared__ double buf[RED_THREADS];
	long off = (long)blockIdx.x * w;
	double s = 0;
	for (long i = threadIdx.x; i < w; i += RED_THREADS) s += (double)y[off + i] * dy[off + i];
	float sf = (float)block_sum(s, buf), sc = (float)scale;
	for (long i = threadIdx.x; i < w; i += RED_THREADS) dx[off + i] = sc * y[off + i] * (dy[off + i] - sf);
}
