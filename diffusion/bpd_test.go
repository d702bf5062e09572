package diffusion

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func TestCalcBPDLoopWithOracle(t *testing.T) {
	const T = 1000
	s := mustSchedule(t, "linear", T)
	rng := rand.New(rand.NewPCG(31, 32))
	x0 := gridImages(rng, smallShape.Size())
	d := smallShape.Size() / smallShape.N
	ab := closedFormAlphaBar(s.Betas)
	beta1Tilde := s.Betas[1] * (1 - ab[0]) / (1 - ab[1])
	Phi := func(z float64) float64 { return 0.5 * (1 + math.Erf(z/math.Sqrt2)) }

	// Prior: KL(N(√ᾱ x0, 1−ᾱ) ‖ N(0, 1)) = ½(−1 − ln(1−ᾱ) + (1−ᾱ) + ᾱ x0²) per element.
	aT := ab[T-1]
	wantPrior := make([]float64, smallShape.N)
	for i := range wantPrior {
		for j := i * d; j < (i+1)*d; j++ {
			x := float64(x0[j])
			wantPrior[i] += 0.5 * (-1 - math.Log(1-aT) + (1 - aT) + aT*x*x)
		}
		wantPrior[i] /= float64(d) * math.Ln2
	}
	// Decoder at t = 0 with mean x0 and σ² = β̃_1 (both variance types).
	sd := math.Sqrt(beta1Tilde)
	wantDecoderEx := make([]float64, smallShape.N)
	for j, v := range x0 {
		p := Phi(1/255.0/sd) - Phi(-1/255.0/sd)
		if v == -1 || v == 1 {
			p = Phi(1 / 255.0 / sd)
		}
		wantDecoderEx[j/d] -= math.Log(p) / float64(d) / math.Ln2
	}
	wantDecoder := (wantDecoderEx[0] + wantDecoderEx[1]) / 2

	for _, variance := range []string{"fixedsmall", "fixedlarge"} {
		var done []int
		res, err := s.CalcBPDLoop(context.Background(), &oracle{s: s, x0: x0}, x0, smallShape, variance, rng, func(n, total int) {
			if total != T {
				t.Fatalf("progress total %d", total)
			}
			done = append(done, n)
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(done) != T || done[0] != 1 || done[T-1] != T {
			t.Fatalf("progress: %d calls, first %v", len(done), done[:1])
		}
		if len(res.Terms) != T || len(res.MSE) != T || len(res.Total) != smallShape.N || len(res.Prior) != smallShape.N {
			t.Fatalf("result lengths %d %d %d %d", len(res.Terms), len(res.MSE), len(res.Total), len(res.Prior))
		}
		for i := range wantPrior {
			if !relNear(res.Prior[i], wantPrior[i], 1e-6) {
				t.Fatalf("prior[%d] = %v, closed form %v", i, res.Prior[i], wantPrior[i])
			}
			if res.Prior[i] < 1e-6 || res.Prior[i] > 1e-4 {
				t.Fatalf("prior[%d] = %v bits/dim, expected ≈ 1e-5", i, res.Prior[i])
			}
		}
		if !relNear(res.MeanPrior, (wantPrior[0]+wantPrior[1])/2, 1e-6) {
			t.Fatalf("mean prior %v", res.MeanPrior)
		}
		if !relNear(res.Terms[0], wantDecoder, 2e-3) {
			t.Fatalf("%s: decoder term %v, want %v", variance, res.Terms[0], wantDecoder)
		}
		var sum float64
		for tt := 1; tt < T; tt++ {
			want := 0.0 // the oracle's mean is the posterior mean
			if variance == "fixedlarge" {
				// Only the variances differ: ½(−1 + ln β − ln β̃ + β̃/β) per element.
				bt := s.Betas[tt]
				pv := bt * (1 - ab[tt-1]) / (1 - ab[tt])
				want = 0.5 * (-1 + math.Log(bt) - math.Log(pv) + pv/bt) / math.Ln2
			}
			if !near(res.Terms[tt], want, 1e-6+1e-6*want) {
				t.Fatalf("%s: term %d = %v, want %v", variance, tt, res.Terms[tt], want)
			}
			if res.MSE[tt] > 1e-8 {
				t.Fatalf("%s: mse %d = %v with the oracle", variance, tt, res.MSE[tt])
			}
			sum += res.Terms[tt]
		}
		for i := range res.Total {
			// With the oracle only the decoder term depends on the example.
			if want := wantDecoderEx[i] + sum + wantPrior[i]; !relNear(res.Total[i], want, 2e-3) {
				t.Fatalf("%s: total[%d] = %v, want %v", variance, i, res.Total[i], want)
			}
		}
		if want := res.Terms[0] + sum + res.MeanPrior; !relNear(res.MeanTotal, want, 1e-9) {
			t.Fatalf("%s: mean total %v, Σ terms + prior = %v", variance, res.MeanTotal, want)
		}
		t.Logf("%s: total %.4f bits/dim (decoder %.4f, L_1..L_T−1 %.4g, prior %.3g)", variance, res.MeanTotal, res.Terms[0], sum, res.MeanPrior)
	}
}

func TestVBTermsAgainstDirectKL(t *testing.T) {
	s := mustSchedule(t, "cosine", 100)
	rng := rand.New(rand.NewPCG(41, 42))
	ts := []int{0, 5, 99}
	d := 20
	x0 := gridImages(rng, d*len(ts))
	xt := s.QSample(x0, ts, randn(rng, len(x0), 1))
	epsHat := randn(rng, len(x0), 1) // a poor model
	terms, pred, err := s.VBTermsBPD(x0, xt, ts, epsHat, "fixedlarge", true)
	if err != nil {
		t.Fatal(err)
	}
	qm, _, qlv := s.QPosteriorMeanVariance(x0, xt, ts)
	pm, _, plv, pred2, _ := s.PMeanVariance(xt, ts, epsHat, "fixedlarge", true)
	for i, ti := range ts {
		var want float64
		for j := i * d; j < (i+1)*d; j++ {
			if pred[j] != pred2[j] {
				t.Fatal("x̂0 differs from PMeanVariance")
			}
			if ti == 0 {
				want -= DiscretizedGaussianLogLikelihood(float64(x0[j]), float64(pm[j]), 0.5*plv[i])
			} else {
				want += NormalKL(float64(qm[j]), qlv[i], float64(pm[j]), plv[i])
			}
		}
		want /= float64(d) * math.Ln2
		if !relNear(terms[i], want, 1e-5) || terms[i] <= 0 {
			t.Fatalf("t=%d: term %v, want %v", ti, terms[i], want)
		}
	}
}

func TestCalcBPDLoopErrors(t *testing.T) {
	s := mustSchedule(t, "linear", 10)
	rng := rand.New(rand.NewPCG(1, 2))
	x0 := make([]float32, smallShape.Size())
	o := &oracle{s: s, x0: x0}
	if _, err := s.CalcBPDLoop(context.Background(), o, x0[:7], smallShape, "fixedlarge", rng, nil); !errors.Is(err, ErrShape) {
		t.Fatalf("bad shape: %v", err)
	}
	if _, err := s.CalcBPDLoop(context.Background(), o, x0, smallShape, "learned", rng, nil); err == nil {
		t.Fatal("unknown variance accepted")
	}
	if _, err := s.CalcBPDLoop(context.Background(), o, x0, smallShape, "fixedlarge", nil, nil); err == nil {
		t.Fatal("nil rng accepted")
	}
	if _, err := s.PriorBPD(x0, Shape{N: 3, C: 3, H: 4, W: 4}); !errors.Is(err, ErrShape) {
		t.Fatalf("PriorBPD bad shape: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.CalcBPDLoop(ctx, o, x0, smallShape, "fixedlarge", rng, nil); !errors.Is(err, context.Canceled) || o.calls != 0 {
		t.Fatalf("cancelled: %v after %d calls", err, o.calls)
	}
}

// CalcBPDLoop is T calls of VBTermsBPD (clipped) on x_t drawn from fresh
// noise for t = T−1 … 0 in that order; replay its draws with a poor
// denoiser whose x̂0 leaves [−1, 1].
func TestCalcBPDLoopReplaysVBTerms(t *testing.T) {
	const T = 20
	s := mustSchedule(t, "linear", T)
	x0 := gridImages(rand.New(rand.NewPCG(51, 52)), smallShape.Size())
	zero := denoiserFunc(func(_ context.Context, xt []float32, _ []int, _ Shape) ([]float32, error) {
		return make([]float32, len(xt)), nil
	})
	for _, variance := range []string{"fixedlarge", "fixedsmall"} {
		res, err := s.CalcBPDLoop(context.Background(), zero, x0, smallShape, variance, rand.New(rand.NewPCG(7, 8)), nil)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(7, 8))
		total := make([]float64, smallShape.N)
		for tt := T - 1; tt >= 0; tt-- {
			ts := []int{tt, tt}
			xt := s.QSample(x0, ts, randn(rng, len(x0), 1))
			terms, pred, err := s.VBTermsBPD(x0, xt, ts, make([]float32, len(x0)), variance, true)
			if err != nil {
				t.Fatal(err)
			}
			var mse float64
			for j := range pred {
				if pred[j] < -1 || pred[j] > 1 {
					t.Fatal("x̂0 not clipped")
				}
				mse += (float64(pred[j]) - float64(x0[j])) * (float64(pred[j]) - float64(x0[j]))
			}
			mse /= float64(len(pred))
			if m := (terms[0] + terms[1]) / 2; !relNear(res.Terms[tt], m, 1e-12) || !relNear(res.MSE[tt], mse, 1e-12) {
				t.Fatalf("%s t=%d: term %v mse %v, replay %v %v", variance, tt, res.Terms[tt], res.MSE[tt], m, mse)
			}
			total[0] += terms[0]
			total[1] += terms[1]
		}
		prior, _ := s.PriorBPD(x0, smallShape)
		for i := range total {
			if !relNear(res.Total[i], total[i]+prior[i], 1e-12) {
				t.Fatalf("%s: total[%d] = %v, replay %v", variance, i, res.Total[i], total[i]+prior[i])
			}
		}
		if !relNear(res.MeanTotal, (res.Total[0]+res.Total[1])/2, 1e-12) {
			t.Fatalf("mean total %v", res.MeanTotal)
		}
	}
}
