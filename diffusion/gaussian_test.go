package diffusion

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestQSampleStatistics(t *testing.T) {
	s := mustSchedule(t, "linear", 1000)
	rng := rand.New(rand.NewPCG(1, 2))
	x0 := []float32{-1, -0.3, 0.5, 1, 0.9, -0.7}
	ts := []int{0, 10, 500, 999, 250, 750} // one t per example, 1 value each
	const M = 40000
	sum := make([]float64, len(x0))
	sum2 := make([]float64, len(x0))
	for range M {
		xt := s.QSample(x0, ts, randn(rng, len(x0), 1))
		for j, v := range xt {
			sum[j] += float64(v)
			sum2[j] += float64(v) * float64(v)
		}
	}
	ab := closedFormAlphaBar(s.Betas)
	mean, variance, logVar := s.QMeanVariance(x0, ts)
	for j := range x0 {
		m := sum[j] / M
		v := sum2[j]/M - m*m
		wantM := math.Sqrt(ab[ts[j]]) * float64(x0[j])
		wantV := 1 - ab[ts[j]]
		if se := math.Sqrt(wantV / M); !near(m, wantM, 5*se) {
			t.Errorf("t=%d: sample mean %v, want %v ± %v", ts[j], m, wantM, 5*se)
		}
		if se := wantV * math.Sqrt(2.0/M); !near(v, wantV, 5*se) {
			t.Errorf("t=%d: sample variance %v, want %v ± %v", ts[j], v, wantV, 5*se)
		}
		if !near(float64(mean[j]), wantM, 1e-6) || !relNear(variance[j], wantV, 1e-12) || !relNear(logVar[j], math.Log(wantV), 1e-9) {
			t.Errorf("QMeanVariance t=%d: %v %v %v", ts[j], mean[j], variance[j], logVar[j])
		}
	}
}

func TestQSampleIsEq4(t *testing.T) {
	s := mustSchedule(t, "cosine", 100)
	x0 := []float32{0.25, -0.5, 1, 0.75}
	eps := []float32{1.5, -2, 0.1, 0.3}
	ts := []int{3, 97}
	xt := s.QSample(x0, ts, eps)
	ab := closedFormAlphaBar(s.Betas)
	for j := range x0 {
		a := ab[ts[j/2]]
		want := math.Sqrt(a)*float64(x0[j]) + math.Sqrt(1-a)*float64(eps[j])
		if !near(float64(xt[j]), want, 1e-6) {
			t.Fatalf("x_t[%d] = %v, want %v", j, xt[j], want)
		}
	}
}

// The posterior q(x_{t−1}|x_t,x_0) ∝ q(x_t|x_{t−1}) q(x_{t−1}|x_0): a product
// of Gaussians in x_{t−1}, completed here independently of eq. 7.
func TestPosteriorIsBayes(t *testing.T) {
	for _, kind := range []string{"linear", "cosine"} {
		s := mustSchedule(t, kind, 1000)
		ab := closedFormAlphaBar(s.Betas)
		rng := rand.New(rand.NewPCG(3, 4))
		for _, ti := range []int{1, 2, 10, 300, 998, 999} {
			x0 := randn(rng, 8, 0.6)
			xt := randn(rng, 8, 1)
			ts := []int{ti, ti}
			mean, variance, logVar := s.QPosteriorMeanVariance(x0, xt, ts)
			beta, abPrev := s.Betas[ti], ab[ti-1]
			prec := (1-beta)/beta + 1/(1-abPrev)
			wantVar := 1 / prec
			for j := range x0 {
				want := (math.Sqrt(1-beta)*float64(xt[j])/beta + math.Sqrt(abPrev)*float64(x0[j])/(1-abPrev)) / prec
				if !near(float64(mean[j]), want, 2e-6*(1+math.Abs(want))) {
					t.Fatalf("%s t=%d: μ̃[%d] = %v, Bayes %v", kind, ti, j, mean[j], want)
				}
			}
			if !relNear(variance[0], wantVar, 1e-6) || !relNear(logVar[1], math.Log(wantVar), 1e-6) {
				t.Fatalf("%s t=%d: β̃ = %v (log %v), Bayes %v", kind, ti, variance[0], logVar[1], wantVar)
			}
		}
		// At t = 0 the posterior is a point mass at x_0.
		x0 := []float32{0.3, -0.9}
		mean, variance, _ := s.QPosteriorMeanVariance(x0, []float32{5, -7}, []int{0})
		if !near(float64(mean[0]), 0.3, 1e-7) || !near(float64(mean[1]), -0.9, 1e-7) || variance[0] != 0 {
			t.Fatalf("%s t=0: %v %v", kind, mean, variance)
		}
	}
}

func TestPredictStartFromNoiseInvertsQSample(t *testing.T) {
	s := mustSchedule(t, "linear", 1000)
	rng := rand.New(rand.NewPCG(5, 6))
	const d = 64
	ts := []int{0, 1, 100, 500, 900, 999}
	x0 := gridImages(rng, d*len(ts))
	eps := randn(rng, len(x0), 1)
	xt := s.QSample(x0, ts, eps)
	got := s.PredictStartFromNoise(xt, ts, eps)
	gotEps := s.PredictNoiseFromStart(xt, ts, x0)
	const u = 1.0 / (1 << 23) // float32 unit roundoff ×2
	for j := range x0 {
		ti := ts[j/d]
		// Errors allowed: the rounding of x_t and ε, amplified by the coefficients.
		ra, rm1 := s.SqrtRecipAlphasCumprod[ti], s.SqrtRecipm1AlphasCumprod[ti]
		tol := 2 * u * (ra*math.Abs(float64(xt[j])) + rm1*math.Abs(float64(eps[j])) + 1)
		if !near(float64(got[j]), float64(x0[j]), tol) {
			t.Fatalf("t=%d: x̂0 = %v, x0 = %v (tol %v)", ti, got[j], x0[j], tol)
		}
		tolE := 2 * u * (ra*math.Abs(float64(xt[j])) + 1 + 1/rm1) / rm1 * 4
		if !near(float64(gotEps[j]), float64(eps[j]), tolE+2*u) {
			t.Fatalf("t=%d: ε from x0 = %v, ε = %v", ti, gotEps[j], eps[j])
		}
	}
}

func TestPMeanVariance(t *testing.T) {
	s := mustSchedule(t, "linear", 1000)
	rng := rand.New(rand.NewPCG(7, 8))
	const d = 12
	ts := []int{0, 1, 50, 999}
	x0 := gridImages(rng, d*len(ts))
	eps := randn(rng, len(x0), 1)
	xt := s.QSample(x0, ts, eps)
	qMean, _, qLogVar := s.QPosteriorMeanVariance(x0, xt, ts)
	for _, variance := range []string{"fixedlarge", "fixedsmall"} {
		mean, v, lv, pred, err := s.PMeanVariance(xt, ts, eps, variance, true)
		if err != nil {
			t.Fatal(err)
		}
		for j := range x0 {
			// With the true ε, x̂0 = x0 and the model mean is the posterior mean.
			if !near(float64(pred[j]), float64(x0[j]), 2e-4) || !near(float64(mean[j]), float64(qMean[j]), 2e-5) {
				t.Fatalf("%s t=%d: x̂0 %v vs %v, mean %v vs %v", variance, ts[j/d], pred[j], x0[j], mean[j], qMean[j])
			}
		}
		for i, ti := range ts {
			if variance == "fixedsmall" && (lv[i] != qLogVar[i] || v[i] != s.PosteriorVariance[ti]) {
				t.Fatalf("fixedsmall t=%d: %v %v", ti, v[i], lv[i])
			}
			if variance == "fixedlarge" && (v[i] != s.Betas[ti] || (ti > 0 && lv[i] != math.Log(s.Betas[ti]))) {
				t.Fatalf("fixedlarge t=%d: %v %v", ti, v[i], lv[i])
			}
		}
	}
	// Clipping: an ε̂ that puts x̂0 far outside [−1, 1].
	xt1 := []float32{0, 0}
	eps1 := []float32{-50, 50}
	_, _, _, pred, _ := s.PMeanVariance(xt1, []int{10}, eps1, "fixedsmall", true)
	if pred[0] != 1 || pred[1] != -1 {
		t.Fatalf("clipped x̂0 = %v", pred)
	}
	mean, _, _, pred, _ := s.PMeanVariance(xt1, []int{10}, eps1, "fixedsmall", false)
	want := s.SqrtRecipm1AlphasCumprod[10] * 50
	if !relNear(float64(pred[0]), want, 1e-6) || !relNear(float64(mean[0]), s.PosteriorMeanCoef1[10]*want, 1e-6) {
		t.Fatalf("unclipped x̂0 = %v mean %v, want %v", pred, mean, want)
	}
	if _, _, _, _, err := s.PMeanVariance(xt1, []int{10}, eps1, "learned", true); err == nil {
		t.Fatal("unknown variance accepted")
	}
}

func TestEquationFunctionsPanicOnBadInput(t *testing.T) {
	s := mustSchedule(t, "linear", 10)
	for name, f := range map[string]func(){
		"len mismatch": func() { s.QSample(make([]float32, 4), []int{1}, make([]float32, 3)) },
		"split":        func() { s.QSample(make([]float32, 5), []int{1, 2}, make([]float32, 5)) },
		"t range":      func() { s.PredictStartFromNoise(make([]float32, 4), []int{10}, make([]float32, 4)) },
		"t negative":   func() { s.QMeanVariance(make([]float32, 4), []int{-1}) },
		"no t":         func() { s.QPosteriorMeanVariance(nil, nil, nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestNormalKL(t *testing.T) {
	if kl := NormalKL(0.3, -1, 0.3, -1); kl != 0 {
		t.Fatalf("KL(p‖p) = %v", kl)
	}
	if kl := NormalKL(1, 0, 0, 0); !near(kl, 0.5, 1e-15) {
		t.Fatalf("KL(N(1,1)‖N(0,1)) = %v, want 0.5", kl)
	}
	// KL(N(0,4)‖N(0,1)) = ½(4 − 1 − ln 4).
	if kl := NormalKL(0, math.Log(4), 0, 0); !near(kl, 0.5*(3-math.Log(4)), 1e-14) {
		t.Fatalf("KL(N(0,4)‖N(0,1)) = %v", kl)
	}
	// Numeric ∫ p log(p/q) with Simpson's rule.
	for _, c := range [][4]float64{{0, 0, 1, 0}, {0.5, -2, -0.3, 0.7}, {-1, 1, 2, -1}, {0.01, math.Log(1e-4), 0, math.Log(2e-4)}} {
		m1, lv1, m2, lv2 := c[0], c[1], c[2], c[3]
		s1, s2 := math.Exp(0.5*lv1), math.Exp(0.5*lv2)
		logN := func(x, m, s float64) float64 { return -0.5*math.Log(2*math.Pi) - math.Log(s) - (x-m)*(x-m)/(2*s*s) }
		const n = 20000
		a, b := m1-14*s1, m1+14*s1
		h := (b - a) / n
		var sum float64
		for i := 0; i <= n; i++ {
			x := a + float64(i)*h
			w := 2.0
			if i == 0 || i == n {
				w = 1
			} else if i%2 == 1 {
				w = 4
			}
			lp := logN(x, m1, s1)
			sum += w * math.Exp(lp) * (lp - logN(x, m2, s2))
		}
		num := sum * h / 3
		if got := NormalKL(m1, lv1, m2, lv2); !near(got, num, 1e-8*(1+num)) {
			t.Errorf("NormalKL%v = %v, numeric %v", c, got, num)
		}
	}
}

func TestApproxStandardNormalCDF(t *testing.T) {
	maxErr := 0.0
	for x := -8.0; x <= 8; x += 0.001 {
		exact := 0.5 * (1 + math.Erf(x/math.Sqrt2))
		maxErr = math.Max(maxErr, math.Abs(ApproxStandardNormalCDF(x)-exact))
	}
	// The tanh approximation's worst error is 1.79e-4 (near |x| ≈ 2.4).
	if maxErr > 1.8e-4 {
		t.Fatalf("max |approx − Φ| = %v", maxErr)
	}
	if ApproxStandardNormalCDF(0) != 0.5 {
		t.Fatal("Φ(0) ≠ ½")
	}
}

func TestDiscretizedGaussianSumsToOne(t *testing.T) {
	for _, mean := range []float64{-1, -0.5, 0, 0.013, 0.7, 1, 1.3} {
		for _, scale := range []float64{0.002, 0.0074, 0.05, 0.3, 1, 3} {
			// On the exact grid the 256 bins tile the real line: Σ p = 1 up to
			// the 1e-12 floors.
			var total, total32 float64
			for k := 0; k < 256; k++ {
				x := float64(k)/127.5 - 1
				total += math.Exp(DiscretizedGaussianLogLikelihood(x, mean, math.Log(scale)))
				// As stored in float32 images, the bins move by ≤ 6e-8.
				x32 := float64(float32(x))
				total32 += math.Exp(DiscretizedGaussianLogLikelihood(x32, mean, math.Log(scale)))
			}
			if !near(total, 1, 1e-9) {
				t.Errorf("mean %v scale %v: Σ p = %v", mean, scale, total)
			}
			if !near(total32, 1, 1e-5) {
				t.Errorf("float32 grid, mean %v scale %v: Σ p = %v", mean, scale, total32)
			}
		}
	}
	// A single bin against the exact Gaussian mass (the approximate Φ is good to ~3e-4).
	Phi := func(z float64) float64 { return 0.5 * (1 + math.Erf(z/math.Sqrt2)) }
	sc := 0.01
	got := math.Exp(DiscretizedGaussianLogLikelihood(0.2, 0.2, math.Log(sc)))
	if want := Phi(1/255.0/sc) - Phi(-1/255.0/sc); !near(got, want, 6e-4) {
		t.Fatalf("interior bin %v, want %v", got, want)
	}
	got = math.Exp(DiscretizedGaussianLogLikelihood(-1, -1, math.Log(sc)))
	if want := Phi(1 / 255.0 / sc); !near(got, want, 3e-4) {
		t.Fatalf("left edge bin %v, want %v", got, want)
	}
	// Far from the mean the probability is floored at 1e-12.
	if got := DiscretizedGaussianLogLikelihood(0.5, -0.5, math.Log(0.001)); got != math.Log(1e-12) {
		t.Fatalf("floor: %v", got)
	}
}
