// Sums, in float64 like the CPU ops, by a tree over the RED_THREADS threads of a block:
// the order is fixed, so a result is the same from run to run.

// Kernels that call block_sum or block_max must be launched with exactly RED_THREADS
// threads per block.
#define RED_THREADS 256

// block_sum returns the sum of v over the threads of the block, to every thread; buf is
// a __shared__ array of RED_THREADS doubles. Every thread of the block must call it.
DEV double block_sum(double v, double *buf) {
	buf[threadIdx.x] = v;
	__syncthreads();
	for (int s = RED_THREADS / 2; s > 0; s >>= 1) {
		if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
		__syncthreads();
	}
	double r = buf[0];
	__syncthreads(); // buf is free again once every thread has read the sum
	return r;
}

// block_max returns the largest v over the threads of the block, as block_sum.
DEV float block_max(float v, float *buf) {
	buf[threadIdx.x] = v;
	__syncthreads();
	for (int s = RED_THREADS / 2; s > 0; s >>= 1) {
		if (threadIdx.x < s && buf[threadIdx.x + s] > buf[threadIdx.x]) buf[threadIdx.x] = buf[threadIdx.x + s];
		__syncthreads();
	}
	float r = buf[0];
	__syncthreads();
	return r;
}

// plane_sums is the gradient of ops.AddChannels for t: out[p] = Σ of plane p of x
// [planes, hw]; one block per plane.
KERNEL(plane_sums)(float *RESTRICT out, const float *RESTRICT x, long hw) {
	__shared__ double buf[RED_THREADS];
	const float *p = x + (long)blockIdx.x * hw;
	double s = 0;
	for (long i = threadIdx.x; i < hw; i += RED_THREADS) s += p[i];
	s = block_sum(s, buf);
	if (threadIdx.x == 0) out[blockIdx.x] = (float)s;
}

// channel_sums is a convolution's bias gradient: out[c] = Σ over images n and pixels of
// dy[n,c,·] for dy [imgs, c, hw]; one block per channel.
KERNEL(channel_sums)(float *RESTRICT out, const float *RESTRICT dy, long imgs, long c, long hw) {
	__shared__ double buf[RED_THREADS];
	long ch = blockIdx.x;
	double s = 0;
	for (long i = threadIdx.x; i < imgs * hw; i += RED_THREADS) s += dy[(i / hw * c + ch) * hw + i % hw];
	s = block_sum(s, buf);
	if (threadIdx.x == 0) out[ch] = (float)s;
}

// column_sums is Gorgonia's sumOp over the leading axis: out[j] = Σ_i x[i, j] for x
// [rows, cols] (the gradient of a dense layer's bias); one thread per column.
KERNEL(column_sums)(float *RESTRICT out, const float *RESTRICT x, long rows, long cols) {
	for (long j = GLOBAL_ID; j < cols; j += GLOBAL_STRIDE) {
		double s = 0;
		for (long i = 0; i < rows; i++) s += x[i * cols + j];
		out[j] = (float)s;
	}
}

// sum_partial writes to part[blockIdx.x] the sum of the values of x (squared, with
// square set) that its grid-stride loop visits; sum_final adds the partial sums.
KERNEL(sum_partial)(double *RESTRICT part, const float *RESTRICT x, long n, long square) {
	__shared__ double buf[RED_THREADS];
	double s = 0;
	for (long i = GLOBAL_ID; i < n; i += GLOBAL_STRIDE) {
		double v = x[i];
		s += square ? v * v : v;
	}
	s = block_sum(s, buf);
	if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// sum_final adds the nparts partial sums of sum_partial, in one block, into *out64 and,
// if out32 is not null, *out32 as a float (Gorgonia's sumOp over every axis: the loss).
KERNEL(sum_final)(double *RESTRICT out64, float *RESTRICT out32, const double *RESTRICT part, long nparts) {
	__shared__ double buf[RED_THREADS];
	double s = 0;
	for (long i = threadIdx.x; i < nparts; i += RED_THREADS) s += part[i];
	s = block_sum(s, buf);
	if (threadIdx.x == 0) {
		*out64 = s;
		if (out32) *out32 = (float)s;
	}
}
