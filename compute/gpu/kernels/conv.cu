// Column matrices of ops.Conv2d: a k×k convolution of x [N, cin, h, w] with the given
// stride and zero padding (top, left; bottom and right follow from oh and ow) becomes
// matrix products with col, whose row r = (c, ky, kx) and column (image i, pixel p)
// holds x[n0+i, c, oy·stride−top+ky, ox·stride−left+kx] (0 in the padding). Element
// (i, r, p) of col lives at i·bstride + r·ld + p: per image [kk, ohw] (bstride kk·ohw,
// ld ohw) for the forward pass and the input gradient, or one matrix [kk, imgs·ohw]
// (bstride ohw, ld imgs·ohw) for the weight gradient.

// im2col fills col for images n0 .. n0+imgs−1, one thread per element of col.
KERNEL(im2col)(float *RESTRICT col, const float *RESTRICT x, long n0, long imgs, long cin, long h, long w, long k,
               long stride, long top, long left, long oh, long ow, long ld, long bstride) {
	long ohw = oh * ow, kk = cin * k * k;
	for (long e = GLOBAL_ID; e < imgs * kk * ohw; e += GLOBAL_STRIDE) {
		long i = e / (kk * ohw), r = e / ohw % kk, p = e % ohw;
		long c = r / (k * k), ky = r / k % k, kx = r % k;
		long iy = p / ow * stride - top + ky, ix = p % ow * stride - left + kx;
		float v = 0;
		if (iy >= 0 && iy < h && ix >= 0 && ix < w) v = x[(((n0 + i) * cin + c) * h + iy) * w + ix];
		col[i * bstride + r * ld + p] = v;
	}
}

// col2im is the adjoint of im2col: dx[n0+i, c, iy, ix] is the sum of the elements of col
// that im2col copies from there, one thread per value of dx, each summing its own terms
// (no atomics: the result does not depend on the order threads run in).
KERNEL(col2im)(float *RESTRICT dx, const float *RESTRICT col, long n0, long imgs, long cin, long h, long w, long k,
               long stride, long top, long left, long oh, long ow, long ld, long bstride) {
	for (long e = GLOBAL_ID; e < imgs * cin * h * w; e += GLOBAL_STRIDE) {
		long i = e / (cin * h * w), c = e / (h * w) % cin, iy = e / w % h, ix = e % w;
		float s = 0;
		for (long ky = 0; ky < k; ky++) {
			long ty = iy + top - ky; // = oy·stride
			if (ty < 0 || ty % stride != 0 || ty / stride >= oh) continue;
			for (long kx = 0; kx < k; kx++) {
				long tx = ix + left - kx;
				if (tx < 0 || tx % stride != 0 || tx / stride >= ow) continue;
				long r = (c * k + ky) * k + kx;
				s += col[i * bstride + r * ld + ty / stride * ow + tx / stride];
			}
		}
		dx[(n0 * cin * h * w) + e] = s;
	}
}
