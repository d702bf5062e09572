package kernels

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ddpm-studio/ddpm-studio/compute/gpu"
)

func upload(t *testing.T, e *Emulator, v []float32) gpu.Ptr {
	t.Helper()
	p, err := e.Alloc(4 * int64(len(v)))
	if err != nil {
		t.Fatal(err)
	}
	if err := gpu.Upload(e, p, v); err != nil {
		t.Fatal(err)
	}
	return p
}

func download(t *testing.T, e *Emulator, p gpu.Ptr, n int) []float32 {
	t.Helper()
	out := make([]float32, n)
	if err := gpu.Download(e, out, p); err != nil {
		t.Fatal(err)
	}
	return out
}

func randVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// TestGemmKernel checks the sgemm kernel against a float64 triple loop (the definition of
// the product) on shapes that are and are not multiples of its 64×64 tiles and 16-deep
// steps, all four transpose cases, batches with a shared A, padded leading dimensions, and
// β = 0 over a C full of NaN (which must not be read) as well as β ≠ 0.
func TestGemmKernel(t *testing.T) {
	e := NewEmulator()
	defer e.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		m, n, k, batch int
		ta, tb         bool
		beta           float32
		shareA         bool
	}{
		{1, 1, 1, 1, false, false, 0, false},
		{70, 33, 17, 1, false, false, 0, false},
		{64, 64, 16, 2, false, true, 0.5, false},
		{5, 130, 40, 3, true, false, 0, true},
		{67, 9, 100, 2, true, true, -1, false},
	} {
		ra, ca := c.m, c.k
		if c.ta {
			ra, ca = ca, ra
		}
		rb, cb := c.k, c.n
		if c.tb {
			rb, cb = cb, rb
		}
		lda, ldb, ldc := ca+3, cb+1, c.n+2 // padded rows
		sa, sb, sc := ra*lda, rb*ldb, c.m*ldc
		if c.shareA {
			sa = 0
		}
		a := randVec(rng, max(sa, ra*lda)*c.batch)
		b := randVec(rng, sb*c.batch)
		c0 := randVec(rng, sc*c.batch)
		if c.beta == 0 {
			for i := range c0 {
				c0[i] = float32(math.NaN())
			}
		}
		pa, pb, pc := upload(t, e, a), upload(t, e, b), upload(t, e, c0)
		alpha := float32(1.5)
		err := e.Gemm(gpu.Gemm{TA: c.ta, TB: c.tb, M: c.m, N: c.n, K: c.k, Alpha: alpha, Beta: c.beta,
			A: pa, LDA: lda, SA: sa, B: pb, LDB: ldb, SB: sb, C: pc, LDC: ldc, SC: sc, Batch: c.batch})
		if err != nil {
			t.Fatal(err)
		}
		got := download(t, e, pc, len(c0))
		var worst float64
		for z := 0; z < c.batch; z++ {
			for i := 0; i < c.m; i++ {
				for j := 0; j < c.n; j++ {
					var s float64
					for l := 0; l < c.k; l++ {
						var av, bv float32
						if c.ta {
							av = a[z*sa+l*lda+i]
						} else {
							av = a[z*sa+i*lda+l]
						}
						if c.tb {
							bv = b[z*sb+j*ldb+l]
						} else {
							bv = b[z*sb+l*ldb+j]
						}
						s += float64(av) * float64(bv)
					}
					want := float64(alpha) * s
					if c.beta != 0 {
						want += float64(c.beta) * float64(c0[z*sc+i*ldc+j])
					}
					worst = max(worst, math.Abs(float64(got[z*sc+i*ldc+j])-want)/max(1, math.Abs(want)))
				}
				for j := c.n; j < ldc; j++ { // padding between rows is left alone
					if g, w := got[z*sc+i*ldc+j], c0[z*sc+i*ldc+j]; math.Float32bits(g) != math.Float32bits(w) {
						t.Fatalf("%+v: wrote the padding of row %d", c, i)
					}
				}
			}
		}
		if worst > 1e-5 || math.IsNaN(worst) {
			t.Errorf("%+v: max error %.3g", c, worst)
		}
	}
}

// TestDropoutMaskMatchesGoPCG checks the dropout_mask kernel, which jumps ahead in
// PCG-DXSM, against math/rand/v2's PCG stepped one number at a time, on a mask of two
// and a half blocks with an odd length (the last draw's second value falls outside).
func TestDropoutMaskMatchesGoPCG(t *testing.T) {
	e := NewEmulator()
	defer e.Close()
	n := 2*gpu.MaskBlock + 12345
	p, err := e.Alloc(4 * int64(n))
	if err != nil {
		t.Fatal(err)
	}
	const seed = 0x0123456789abcdef
	drop, keep := uint32(0x1999999a), float32(1/0.9)
	if err := gpu.DropoutMask(e, p, n, seed, drop, keep); err != nil {
		t.Fatal(err)
	}
	got := download(t, e, p, n)
	for b := 0; b*gpu.MaskBlock < n; b++ {
		r := rand.NewPCG(seed, uint64(b))
		lo, hi := b*gpu.MaskBlock, min((b+1)*gpu.MaskBlock, n)
		for i := lo; i < hi; i += 2 {
			u := r.Uint64()
			for j, bits := range []uint32{uint32(u), uint32(u >> 32)} {
				if i+j >= hi {
					break
				}
				want := keep
				if bits < drop {
					want = 0
				}
				if got[i+j] != want {
					t.Fatalf("value %d (block %d): %v, want %v", i+j, b, got[i+j], want)
				}
			}
		}
	}
}

// TestEmulatorReportsBadLaunch launches a block of more than the 1024 threads a GPU allows.
func TestEmulatorReportsBadLaunch(t *testing.T) {
	e := NewEmulator()
	defer e.Close()
	if err := e.Launch(&gpu.Kernels[0], gpu.Dim3{X: 1, Y: 1, Z: 1}, gpu.Dim3{X: 2048, Y: 1, Z: 1}, []uint64{0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(); err == nil || !strings.Contains(err.Error(), "bad launch") {
		t.Fatalf("block of 2048 threads: %v", err)
	}
}
