// Elementwise kernels: one thread per value over a grid-stride loop, so any launch
// covers any n. Each mirrors the CPU op named in its comment (package ops or Gorgonia).

// sigmoid is 1/(1+e^−x); e^−x overflowing to +Inf gives the limit 0.
DEV float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// dswish is the derivative of swish(z) = z·sigmoid(z): s·(1 + z·(1−s)).
DEV float dswish(float z) {
	float s = sigmoid(z);
	return s * (1.0f + z * (1.0f - s));
}

// swish_fwd is ops.Swish: y = x·sigmoid(x).
KERNEL(swish_fwd)(float *RESTRICT y, const float *RESTRICT x, long n) {
	for (long i = GLOBAL_ID; i < n; i += GLOBAL_STRIDE) y[i] = x[i] * sigmoid(x[i]);
}

// swish_grad is the gradient of ops.Swish: dx = dy·swish'(x).
KERNEL(swish_grad)(float *RESTRICT dx, const float *RESTRICT x, const float *RESTRICT dy, long n) {
	for (long i = GLOBAL_ID; i < n; i += GLOBAL_STRIDE) dx[i] = dy[i] * dswish(x[i]);
}

// add is ops.Add: y = a + b.
KERNEL(add)(float *RESTRICT y, const float *RESTRICT a, const float *RESTRICT b, long n) {
	for (long i = GLOBAL_ID; i < n; i += GLOBAL_STRIDE) y[i] = a[i] + b[i];
}

// add_channels is ops.AddChannels: y[n,c,·] = h[n,c,·] + t[n,c] for planes of hw values.
KERNEL(add_channels)(float *RESTRICT y, const float *RESTRICT h, const float *RESTRICT t, long n, long hw) {
	for (long i = GLOBAL_ID; i < n; i += GLOBAL_STRIDE) y[i] = h[i] + t[i / hw];
}

// add_bias adds b[c] to every value of channel c of y [N,C,hw] in place (the bias of a
// convolution, after its matrix product).
KERNEL(add_bias)(float *RESTRICT y, const float *RESTRICT b, long n, long c, long hw) {
	for (long i = GLOBAL_ID; i < n; i += GLOBAL_STRIDE) y[i] += b[i / hw % c];
}

// upsample2x is ops.Upsample2x: y [planes, 2h, 2w] repeats each value of x [planes, h, w]
// in a 2×2 block.
KERNEL(upsample2x)(float *RESTRICT y, const float *RESTRICT x, long n, long h, long w) {
	for (long i = GLOBAL_ID; i < n; i += GLOBAL_STRIDE) {
		long plane = i / (4 * h * w), r = i % (4 * h * w);
		long oy = r / (2 * w), ox = r % (2 * w);
		y[i] = x[plane * h * w + oy / 2 * w + ox / 2];
	}
}

// sum2x2 is the gradient of ops.Upsample2x: dx [planes, h, w] sums each 2×2 block of
// dy [planes, 2h, 2w]; n is the size of dx.
KERNEL(sum2x2)(float *RESTRICT dx, const float *RESTRICT dy, long n, long h, long w) {
	for (long i = GLOBAL_ID; i < n; i += GLOBAL_STRIDE) {
		long plane = i / (h * w), r = i % (h * w);
		long y = r / w, x = r % w;
		const float *a = dy + plane * 4 * h * w + 2 * y * 2 * w + 2 * x;
		dx[i] = a[0] + a[1] + a[2 * w] + a[2 * w + 1];
	}
}

// concat is ops.ConcatChannels: per image, the la values of a then the lb values of b.
KERNEL(concat)(float *RESTRICT y, const float *RESTRICT a, const float *RESTRICT b, long n, long la, long lb) {
	for (long i = GLOBAL_ID; i < n; i += GLOBAL_STRIDE) {
		long img = i / (la + lb), r = i % (la + lb);
		y[i] = r < la ? a[img * la + r] : b[img * lb + r - la];
	}
}

// channels is the gradient of ops.ConcatChannels (its split): per image, the l values
// that start at off in x's images of stride values.
KERNEL(channels)(float *RESTRICT y, const float *RESTRICT x, long n, long stride, long off, long l) {
	for (long i = GLOBAL_ID; i < n; i += GLOBAL_STRIDE) y[i] = x[i / l * stride + off + i % l];
}

// Binary operations of Gorgonia's elemBinOp: op 0 +, 1 −, 2 ⊙ (product), 3 ÷. A
// step of 0 repeats an operand's first value (a scalar), 1 walks it.
KERNEL(binary)(float *RESTRICT y, const float *RESTRICT a, const float *RESTRICT b, long n, long op, long sa, long sb) {
	for (long i = GLOBAL_ID; i < n; i += GLOBAL_STRIDE) {
		float u = a[i * sa], v = b[i * sb];
		y[i] = op == 0 ? u + v : op == 1 ? u - v : op == 2 ? u * v : u / v;
	}
}

// Unary operations of Gorgonia's elemUnaryOp: op 0 negation, 1 square.
KERNEL(unary)(float *RESTRICT y, const float *RESTRICT x, long n, long op) {
	for (long i = GLOBAL_ID; i < n; i += GLOBAL_STRIDE) y[i] = op == 0 ? -x[i] : x[i] * x[i];
}

// transpose2d is Gorgonia's transposeOp of a matrix: y [cols, rows] = x [rows, cols]ᵀ.
KERNEL(transpose2d)(float *RESTRICT y, const float *RESTRICT x, long rows, long cols) {
	for (long i = GLOBAL_ID; i < rows * cols; i += GLOBAL_STRIDE) {
		long r = i / cols, c = i % cols;
		y[c * rows + r] = x[i];
	}
}

// repeat is Gorgonia's repeatOp along an axis of length 1: y [outer, times, inner]
// repeats x [outer, 1, inner].
KERNEL(repeat)(float *RESTRICT y, const float *RESTRICT x, long outer, long times, long inner) {
	for (long i = GLOBAL_ID; i < outer * times * inner; i += GLOBAL_STRIDE) y[i] = x[i / (times * inner) * inner + i % inner];
}

// nchw_to_cn lays the values of x [imgs, c, hw] out as y [c, imgs·hw], for the matrix
// products of the weight gradients.
KERNEL(nchw_to_cn)(float *RESTRICT y, const float *RESTRICT x, long imgs, long c, long hw) {
	for (long i = GLOBAL_ID; i < imgs * c * hw; i += GLOBAL_STRIDE) {
		long ch = i / (imgs * hw), r = i % (imgs * hw);
		y[i] = x[(r / hw * c + ch) * hw + r % hw];
	}
}

// gather copies segment s, lens[s] floats at the device address srcs[s], to
// dst + offs[s]; blockIdx.y is the segment (the gradients into one flat array).
KERNEL(gather)(float *RESTRICT dst, const unsigned long long *RESTRICT srcs, const long *RESTRICT offs, const long *RESTRICT lens) {
	long s = blockIdx.y;
	const float *src = (const float *)srcs[s];
	float *d = dst + offs[s];
	for (long i = GLOBAL_ID; i < lens[s]; i += GLOBAL_STRIDE) d[i] = src[i];
}
