// sgemm is C = α·op(A)·op(B) + β·C for row-major matrices (op(A) [m, k], op(B) [k, n],
// C [m, n]), batched: matrix z of a batch starts sa·z (sb·z, sc·z) floats after the
// first. It is the matrix product where no cuBLAS library is found, and the one the CPU
// emulator runs. Tiles of GEMM_TILE×GEMM_TILE values of C per block of 16×16 threads,
// each thread computing 4×4 values 16 apart (rows ty+16i, columns tx+16j), over steps of
// GEMM_K along k staged in shared memory. With β = 0, C is not read (it may hold NaN).
// Grid: (⌈n/64⌉, ⌈m/64⌉, batch); block (16, 16).
#define GEMM_TILE 64
#define GEMM_K 16

KERNEL(sgemm)(float *RESTRICT c, const float *RESTRICT a, const float *RESTRICT b, long m, long n, long k,
              long lda, long ldb, long ldc, long ta, long tb, double alpha, double beta, long sa, long sb, long sc) {
	__shared__ float as[GEMM_K][GEMM_TILE + 1];
	__shared__ float bs[GEMM_K][GEMM_TILE + 1];
	const float *az = a + (long)blockIdx.z * sa;
	const float *bz = b + (long)blockIdx.z * sb;
	float *cz = c + (long)blockIdx.z * sc;
	long row0 = (long)blockIdx.y * GEMM_TILE, col0 = (long)blockIdx.x * GEMM_TILE;
	int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
	float acc[4][4];
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++) acc[i][j] = 0;
	for (long k0 = 0; k0 < k; k0 += GEMM_K) {
		// Each thread loads 4 values of each tile: element (kk, rr) of the 16×64 tile.
		for (int l = 0; l < 4; l++) {
			int e = tid + 256 * l;
			int kk, rr;
			if (ta) { // A [k, m]: consecutive threads read consecutive rows of op(A)
				kk = e / GEMM_TILE;
				rr = e % GEMM_TILE;
			} else { // A [m, k]: consecutive threads read along k
				rr = e / GEMM_K;
				kk = e % GEMM_K;
			}
			long row = row0 + rr, kq = k0 + kk;
			float v = 0;
			if (row < m && kq < k) v = ta ? az[kq * lda + row] : az[row * lda + kq];
			as[kk][rr] = v;
			if (tb) { // B [n, k]
				rr = e / GEMM_K;
				kk = e % GEMM_K;
			} else { // B [k, n]
				kk = e / GEMM_TILE;
				rr = e % GEMM_TILE;
			}
			long col = col0 + rr;
			kq = k0 + kk;
			v = 0;
			if (col < n && kq < k) v = tb ? bz[col * ldb + kq] : bz[kq * ldb + col];
			bs[kk][rr] = v;
		}
		__syncthreads();
		for (int kk = 0; kk < GEMM_K; kk++) {
			float av[4], bv[4];
			for (int i = 0; i < 4; i++) av[i] = as[kk][ty + 16 * i];
			for (int j = 0; j < 4; j++) bv[j] = bs[kk][tx + 16 * j];
			for (int i = 0; i < 4; i++)
				for (int j = 0; j < 4; j++) acc[i][j] += av[i] * bv[j];
		}
		__syncthreads();
	}
	float al = (float)alpha, be = (float)beta;
	for (int i = 0; i < 4; i++) {
		long row = row0 + ty + 16 * i;
		if (row >= m) continue;
		for (int j = 0; j < 4; j++) {
			long col = col0 + tx + 16 * j;
			if (col >= n) continue;
			float *p = cz + row * ldc + col;
			*p = be == 0 ? al * acc[i][j] : al * acc[i][j] + be * *p;
		}
	}
}
