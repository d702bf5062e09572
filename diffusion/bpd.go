package diffusion

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
)

// BPD is the variational bound of a batch in bits per dimension, as official
// calc_bpd_loop returns it.
type BPD struct {
	Total     []float64 // per example: Σ_t Terms_t + Prior (total_bpd_b)
	Prior     []float64 // per example: KL(q(x_T|x_0) ‖ N(0, I)) (prior_bpd_b)
	MeanTotal float64   // mean of Total over the batch
	MeanPrior float64   // mean of Prior over the batch
	Terms     []float64 // length T: batch mean of term t; Terms[0] is the decoder NLL, the others are L_{t}
	MSE       []float64 // length T: batch mean of meanflat((x̂_0 − x_0)²) at t, x̂_0 clipped
}

// VBTermsBPD is one term of the bound in bits/dim per example (eq. 5; code _vb_terms_bpd):
// KL(q(x_{t−1}|x_t,x_0) ‖ p_θ(x_{t−1}|x_t)) for t > 0 and the discretized
// decoder NLL −log p_θ(x_0|x_1) for t = 0, each averaged over the example's
// dimensions and divided by ln 2. The model mean comes from PMeanVariance
// with the given variance type and clipping; predX0 is its x̂_0. The q
// posterior uses the clipped log-variance, as the official code does.
func (s *Schedule) VBTermsBPD(x0, xt []float32, t []int, eps []float32, variance string, clip bool) (terms []float64, predX0 []float32, err error) {
	_, logV, err := s.ModelVariance(variance)
	if err != nil {
		return nil, nil, err
	}
	sameLen("VBTermsBPD", len(x0), len(xt))
	sameLen("VBTermsBPD", len(x0), len(eps))
	mean := make([]float32, len(xt))
	predX0 = make([]float32, len(xt))
	terms = make([]float64, len(t))
	s.vbTermsInto(terms, mean, predX0, x0, xt, t, eps, logV, clip)
	return terms, predX0, nil
}

func (s *Schedule) vbTermsInto(terms []float64, mean, predX0, x0, xt []float32, t []int, eps []float32, logV []float64, clip bool) {
	s.pMeanInto(mean, predX0, xt, t, eps, clip)
	d := len(x0) / len(t)
	for i, ti := range t {
		lv := logV[ti]
		var sum float64
		if ti == 0 {
			logScale := 0.5 * lv
			for j := i * d; j < (i+1)*d; j++ {
				sum -= DiscretizedGaussianLogLikelihood(float64(x0[j]), float64(mean[j]), logScale)
			}
		} else {
			c1, c2 := s.PosteriorMeanCoef1[ti], s.PosteriorMeanCoef2[ti]
			qlv := s.PosteriorLogVarianceClipped[ti]
			for j := i * d; j < (i+1)*d; j++ {
				qm := c1*float64(x0[j]) + c2*float64(xt[j])
				sum += NormalKL(qm, qlv, float64(mean[j]), lv)
			}
		}
		terms[i] = sum / float64(d) / math.Ln2
	}
}

// PriorBPD is KL(q(x_T|x_0) ‖ N(0, I)) in bits/dim per example (L_T of eq. 5; code _prior_bpd).
// It is ≈ 1e-5 for the linear schedule with T = 1000 and data in [−1, 1].
func (s *Schedule) PriorBPD(x0 []float32, shape Shape) ([]float64, error) {
	if err := checkShape("PriorBPD", x0, shape); err != nil {
		return nil, err
	}
	T := s.T - 1
	a, lv := s.SqrtAlphasCumprod[T], s.LogOneMinusAlphasCumprod[T]
	d := len(x0) / shape.N
	out := make([]float64, shape.N)
	for i := range out {
		var sum float64
		for j := i * d; j < (i+1)*d; j++ {
			sum += NormalKL(a*float64(x0[j]), lv, 0, 0)
		}
		out[i] = sum / float64(d) / math.Ln2
	}
	return out, nil
}

// CalcBPDLoop evaluates the full variational bound of a batch in bits/dim as
// official calc_bpd_loop with clip_denoised=True: for t = T−1 down to 0 it
// draws fresh noise from rng (element by element, in order), forms
// x_t = QSample(x0, t, noise), calls the network once on the whole batch at
// that t, and records VBTermsBPD and the x̂_0 MSE; then it adds PriorBPD. That
// is T network evaluations of N images each. x0 must be data in [−1, 1] on
// the 256-level grid (x/127.5 − 1). progress, if not nil, is called after
// each t with (done, T). It stops with ctx.Err() when ctx is done.
func (s *Schedule) CalcBPDLoop(ctx context.Context, net Denoiser, x0 []float32, shape Shape, variance string, rng *rand.Rand, progress func(done, total int)) (BPD, error) {
	_, logV, err := s.ModelVariance(variance)
	if err != nil {
		return BPD{}, err
	}
	if err := checkShape("CalcBPDLoop", x0, shape); err != nil {
		return BPD{}, err
	}
	if net == nil || rng == nil {
		return BPD{}, errors.New("diffusion: CalcBPDLoop needs a denoiser and an rng")
	}
	n := shape.N
	d := len(x0) / n
	res := BPD{
		Total: make([]float64, n),
		Terms: make([]float64, s.T),
		MSE:   make([]float64, s.T),
	}
	noise := make([]float32, len(x0))
	xt := make([]float32, len(x0))
	mean := make([]float32, len(x0))
	predX0 := make([]float32, len(x0))
	terms := make([]float64, n)
	tv := make([]int, n)
	for t := s.T - 1; t >= 0; t-- {
		if err := ctx.Err(); err != nil {
			return BPD{}, err
		}
		fillInts(tv, t)
		for j := range noise {
			noise[j] = float32(rng.NormFloat64())
		}
		s.qSampleInto(xt, x0, tv, noise)
		eps, err := predict(ctx, net, xt, tv, shape)
		if err != nil {
			return BPD{}, err
		}
		s.vbTermsInto(terms, mean, predX0, x0, xt, tv, eps, logV, true)
		var termSum, mseSum float64
		for i := range n {
			res.Total[i] += terms[i]
			termSum += terms[i]
			var se float64
			for j := i * d; j < (i+1)*d; j++ {
				e := float64(predX0[j]) - float64(x0[j])
				se += e * e
			}
			mseSum += se / float64(d)
		}
		res.Terms[t] = termSum / float64(n)
		res.MSE[t] = mseSum / float64(n)
		if progress != nil {
			progress(s.T-t, s.T)
		}
	}
	res.Prior, err = s.PriorBPD(x0, shape)
	if err != nil {
		return BPD{}, err
	}
	for i := range n {
		res.Total[i] += res.Prior[i]
		res.MeanTotal += res.Total[i]
		res.MeanPrior += res.Prior[i]
	}
	res.MeanTotal /= float64(n)
	res.MeanPrior /= float64(n)
	return res, nil
}
