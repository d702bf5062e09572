// The training step after the gradients: Adam (TensorFlow's form) with the EMA, and the
// dropout masks. Both must give the CPU's values bit for bit (compute/train.go), so the
// arithmetic is spelled with rounded operations in the CPU's order: nvcc would otherwise
// fuse a·b + c into one FMA, which rounds once instead of twice.

// adam_ema updates, for each of the n values of the flat arrays, Adam's moments m and v
// from the gradient g times sc, the weight w, and the EMA e (d·e + (1−d)·w, or w when
// ema is 0), as compute.Trainer does. Without commit it only computes the new values and
// records in *bad the smallest 4·i + what over the values i that are not finite, what
// being 0 for m, 1 v, 2 w, 3 e; with commit it stores them.
KERNEL(adam_ema)(float *RESTRICT w, float *RESTRICT m, float *RESTRICT v, float *RESTRICT e, const float *RESTRICT g, long n,
                 double beta1, double beta2, double scale, double lrt, double eps, long ema, double decay, long commit,
                 unsigned long long *RESTRICT bad) {
	float b1 = (float)beta1, b2 = (float)beta2, sc = (float)scale, d = (float)decay;
	float c1 = __fsub_rn(1.0f, b1), c2 = __fsub_rn(1.0f, b2), cd = __fsub_rn(1.0f, d);
	for (long i = GLOBAL_ID; i < n; i += GLOBAL_STRIDE) {
		float gi = __fmul_rn(g[i], sc);
		float mi = __fadd_rn(__fmul_rn(b1, m[i]), __fmul_rn(c1, gi));
		float vi = __fadd_rn(__fmul_rn(b2, v[i]), __fmul_rn(__fmul_rn(c2, gi), gi));
		double step = __ddiv_rn(__dmul_rn(lrt, (double)mi), __dadd_rn(__dsqrt_rn((double)vi), eps));
		float wi = __fsub_rn(w[i], (float)step);
		float ei = ema ? __fadd_rn(__fmul_rn(d, e[i]), __fmul_rn(cd, wi)) : wi;
		if (commit) {
			m[i] = mi;
			v[i] = vi;
			w[i] = wi;
			e[i] = ei;
			continue;
		}
		long what = !isfinite(mi) ? 0 : !isfinite(vi) ? 1 : !isfinite(wi) ? 2 : !isfinite(ei) ? 3 : -1;
		if (what >= 0) atomicMin(bad, (unsigned long long)(4 * i + what));
	}
}

// PCG-DXSM, the generator of Go's math/rand/v2 PCG: a 128-bit LCG state (hi, lo)
// stepped by state·mul + inc before each output.
#define PCG_MUL_HI 2549297995355413924ULL
#define PCG_MUL_LO 4865540595714422341ULL
#define PCG_INC_HI 6364136223846793005ULL
#define PCG_INC_LO 1442695040888963407ULL

typedef struct {
	unsigned long long hi, lo;
} u128;

DEV u128 mul128(u128 a, u128 b) {
	u128 r;
	r.lo = a.lo * b.lo;
	r.hi = mulhi64(a.lo, b.lo) + a.hi * b.lo + a.lo * b.hi;
	return r;
}

DEV u128 add128(u128 a, u128 b) {
	u128 r;
	r.lo = a.lo + b.lo;
	r.hi = a.hi + b.hi + (r.lo < a.lo);
	return r;
}

// pcg_advance returns the state delta steps after s, in O(log delta) (F. Brown,
// "Random number generation with arbitrary strides", 1994).
DEV u128 pcg_advance(u128 s, unsigned long long delta) {
	u128 am = {0, 1}, ap = {0, 0}, cm = {PCG_MUL_HI, PCG_MUL_LO}, cp = {PCG_INC_HI, PCG_INC_LO}, one = {0, 1};
	while (delta > 0) {
		if (delta & 1) {
			am = mul128(am, cm);
			ap = add128(mul128(ap, cm), cp);
		}
		cp = mul128(add128(cm, one), cp);
		cm = mul128(cm, cm);
		delta >>= 1;
	}
	return add128(mul128(am, s), ap);
}

// pcg_next steps *s and returns the DXSM output, as (*rand.PCG).Uint64.
DEV unsigned long long pcg_next(u128 *s) {
	u128 mul = {PCG_MUL_HI, PCG_MUL_LO}, inc = {PCG_INC_HI, PCG_INC_LO};
	*s = add128(mul128(*s, mul), inc);
	unsigned long long hi = s->hi;
	hi ^= hi >> 32;
	hi *= 0xda942042e4dd58b5ULL;
	hi ^= hi >> 48;
	hi *= s->lo | 1;
	return hi;
}

// Dropout masks as compute.Trainer.fillMasks draws them: the n values are split into
// blocks of MASK_BLOCK, block b drawn from PCG(seed, b), two values per 64 bits (the low
// 32 bits first): 0 where the 32 bits are below drop, keep elsewhere. Each thread draws
// MASK_RUN numbers of one block, starting MASK_RUN·r numbers in, r = its index within
// the block's threads. Launch ⌈n/MASK_BLOCK⌉·MASK_BLOCK/(2·MASK_RUN) threads.
#define MASK_BLOCK 65536
#define MASK_RUN 64

KERNEL(dropout_mask)(float *RESTRICT y, long n, unsigned long long seed, long drop, double keep) {
	const long per = MASK_BLOCK / (2 * MASK_RUN); // threads per block of values
	long blocks = (n + MASK_BLOCK - 1) / MASK_BLOCK;
	for (long t = GLOBAL_ID; t < blocks * per; t += GLOBAL_STRIDE) {
		long b = t / per, r = t % per;
		long lo = b * MASK_BLOCK, len = lmin(MASK_BLOCK, n - lo);
		long j0 = r * MASK_RUN;
		if (2 * j0 >= len) continue;
		u128 s = {seed, (unsigned long long)b};
		s = pcg_advance(s, (unsigned long long)j0);
		float kf = (float)keep;
		unsigned long long dr = (unsigned long long)drop;
		for (long j = j0; j < j0 + MASK_RUN && 2 * j < len; j++) {
			unsigned long long u = pcg_next(&s);
			y[lo + 2 * j] = (u & 0xffffffffULL) < dr ? 0.0f : kf;
			if (2 * j + 1 < len) y[lo + 2 * j + 1] = (u >> 32) < dr ? 0.0f : kf;
		}
	}
}
