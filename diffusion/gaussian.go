package diffusion

import (
	"fmt"
	"math"
)

// The functions in this file are the equations of the paper, one each, as in
// the official diffusion_utils_2.py. They work element by element on flat
// float32 batches: x holds len(t) examples of len(x)/len(t) values each, and
// example i uses timestep t[i]. Coefficients and arithmetic are float64;
// results are rounded to float32 once. Per-t quantities (variances) are
// returned per example as float64. They panic, like an out-of-range index,
// when the lengths disagree or a t is outside [0, T); the samplers and
// CalcBPDLoop check their inputs and return errors instead.

// perExample returns the number of values per example and checks the t's.
func (s *Schedule) perExample(n int, t []int, what string) int {
	if len(t) == 0 || n%len(t) != 0 {
		panic(fmt.Sprintf("diffusion: %s: %d values do not split into len(t) = %d examples", what, n, len(t)))
	}
	for i, ti := range t {
		if ti < 0 || ti >= s.T {
			panic(fmt.Sprintf("diffusion: %s: t[%d] = %d outside [0, %d)", what, i, ti, s.T))
		}
	}
	return n / len(t)
}

func sameLen(what string, a, b int) {
	if a != b {
		panic(fmt.Sprintf("diffusion: %s: lengths %d and %d differ", what, a, b))
	}
}

// QSample draws x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε from q(x_t|x_0) with the given noise (eq. 4; code q_sample).
func (s *Schedule) QSample(x0 []float32, t []int, noise []float32) []float32 {
	sameLen("QSample", len(x0), len(noise))
	xt := make([]float32, len(x0))
	s.qSampleInto(xt, x0, t, noise)
	return xt
}

func (s *Schedule) qSampleInto(xt, x0 []float32, t []int, noise []float32) {
	d := s.perExample(len(x0), t, "QSample")
	for i, ti := range t {
		a, b := s.SqrtAlphasCumprod[ti], s.SqrtOneMinusAlphasCumprod[ti]
		for j := i * d; j < (i+1)*d; j++ {
			xt[j] = float32(a*float64(x0[j]) + b*float64(noise[j]))
		}
	}
}

// QMeanVariance is q(x_t|x_0) = N(√ᾱ_t x_0, (1−ᾱ_t) I) (eq. 4; code q_mean_variance).
// variance and logVariance are per example.
func (s *Schedule) QMeanVariance(x0 []float32, t []int) (mean []float32, variance, logVariance []float64) {
	d := s.perExample(len(x0), t, "QMeanVariance")
	mean = make([]float32, len(x0))
	variance = make([]float64, len(t))
	logVariance = make([]float64, len(t))
	for i, ti := range t {
		a := s.SqrtAlphasCumprod[ti]
		for j := i * d; j < (i+1)*d; j++ {
			mean[j] = float32(a * float64(x0[j]))
		}
		variance[i] = 1 - s.AlphasCumprod[ti]
		logVariance[i] = s.LogOneMinusAlphasCumprod[ti]
	}
	return mean, variance, logVariance
}

// QPosteriorMeanVariance is q(x_{t−1}|x_t,x_0) = N(μ̃_t(x_t,x_0), β̃_t I) (eqs. 6–7; code q_posterior_mean_variance).
// variance (β̃_t, 0 at t = 0) and logVarianceClipped (log β̃_1 at t = 0) are per example.
func (s *Schedule) QPosteriorMeanVariance(x0, xt []float32, t []int) (mean []float32, variance, logVarianceClipped []float64) {
	sameLen("QPosteriorMeanVariance", len(x0), len(xt))
	d := s.perExample(len(x0), t, "QPosteriorMeanVariance")
	mean = make([]float32, len(x0))
	variance = make([]float64, len(t))
	logVarianceClipped = make([]float64, len(t))
	for i, ti := range t {
		c1, c2 := s.PosteriorMeanCoef1[ti], s.PosteriorMeanCoef2[ti]
		for j := i * d; j < (i+1)*d; j++ {
			mean[j] = float32(c1*float64(x0[j]) + c2*float64(xt[j]))
		}
		variance[i] = s.PosteriorVariance[ti]
		logVarianceClipped[i] = s.PosteriorLogVarianceClipped[ti]
	}
	return mean, variance, logVarianceClipped
}

// PredictStartFromNoise is x̂_0 = √(1/ᾱ_t) x_t − √(1/ᾱ_t − 1) ε̂, eq. 4 solved for x_0 (eq. 15; code _predict_xstart_from_eps).
func (s *Schedule) PredictStartFromNoise(xt []float32, t []int, eps []float32) []float32 {
	sameLen("PredictStartFromNoise", len(xt), len(eps))
	d := s.perExample(len(xt), t, "PredictStartFromNoise")
	x0 := make([]float32, len(xt))
	for i, ti := range t {
		a, b := s.SqrtRecipAlphasCumprod[ti], s.SqrtRecipm1AlphasCumprod[ti]
		for j := i * d; j < (i+1)*d; j++ {
			x0[j] = float32(a*float64(xt[j]) - b*float64(eps[j]))
		}
	}
	return x0
}

// PredictNoiseFromStart is ε = (√(1/ᾱ_t) x_t − x_0)/√(1/ᾱ_t − 1), the inverse of PredictStartFromNoise (eq. 4; improved-diffusion _predict_eps_from_xstart).
func (s *Schedule) PredictNoiseFromStart(xt []float32, t []int, x0 []float32) []float32 {
	sameLen("PredictNoiseFromStart", len(xt), len(x0))
	d := s.perExample(len(xt), t, "PredictNoiseFromStart")
	eps := make([]float32, len(xt))
	for i, ti := range t {
		a, b := s.SqrtRecipAlphasCumprod[ti], s.SqrtRecipm1AlphasCumprod[ti]
		for j := i * d; j < (i+1)*d; j++ {
			eps[j] = float32((a*float64(xt[j]) - float64(x0[j])) / b)
		}
	}
	return eps
}

// PMeanVariance is p_θ(x_{t−1}|x_t) = N(μ̃_t(x̂_0(x_t, ε̂), x_t), σ_t² I) for an ε-predicting model (eqs. 11–12 via x̂_0; code p_mean_variance).
// x̂_0 is clipped to [−1, 1] before it enters μ̃ when clip is true; predX0 is
// that (possibly clipped) x̂_0. variance is "fixedlarge" or "fixedsmall" (see
// ModelVariance); modelVariance and modelLogVariance are per example.
func (s *Schedule) PMeanVariance(xt []float32, t []int, eps []float32, variance string, clip bool) (mean []float32, modelVariance, modelLogVariance []float64, predX0 []float32, err error) {
	v, logV, err := s.ModelVariance(variance)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	sameLen("PMeanVariance", len(xt), len(eps))
	mean = make([]float32, len(xt))
	predX0 = make([]float32, len(xt))
	s.pMeanInto(mean, predX0, xt, t, eps, clip)
	modelVariance = make([]float64, len(t))
	modelLogVariance = make([]float64, len(t))
	for i, ti := range t {
		modelVariance[i], modelLogVariance[i] = v[ti], logV[ti]
	}
	return mean, modelVariance, modelLogVariance, predX0, nil
}

// pMeanInto writes the model mean μ̃(x̂_0, x_t) and x̂_0 (clipped if asked).
func (s *Schedule) pMeanInto(mean, predX0, xt []float32, t []int, eps []float32, clip bool) {
	d := s.perExample(len(xt), t, "PMeanVariance")
	for i, ti := range t {
		ra, rm1 := s.SqrtRecipAlphasCumprod[ti], s.SqrtRecipm1AlphasCumprod[ti]
		c1, c2 := s.PosteriorMeanCoef1[ti], s.PosteriorMeanCoef2[ti]
		for j := i * d; j < (i+1)*d; j++ {
			x := float64(xt[j])
			x0 := ra*x - rm1*float64(eps[j])
			if clip {
				x0 = clip1(x0)
			}
			predX0[j] = float32(x0)
			mean[j] = float32(c1*x0 + c2*x)
		}
	}
}

// clip1 clips to [−1, 1] like tf.clip_by_value; NaN stays NaN.
func clip1(x float64) float64 {
	if x > 1 {
		return 1
	}
	if x < -1 {
		return -1
	}
	return x
}

// NormalKL is KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) in nats, for one element (code normal_kl).
func NormalKL(mean1, logvar1, mean2, logvar2 float64) float64 {
	d := mean1 - mean2
	return 0.5 * (-1 + logvar2 - logvar1 + math.Exp(logvar1-logvar2) + d*d*math.Exp(-logvar2))
}

// ApproxStandardNormalCDF is the tanh approximation of Φ(x) used by the official code (code approx_standard_normal_cdf).
func ApproxStandardNormalCDF(x float64) float64 {
	return 0.5 * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
}

// DiscretizedGaussianLogLikelihood is log ∫ N(y; mean, e^{2 logScale}) dy over the bin of x, the decoder of eq. 13 (code discretized_gaussian_log_likelihood).
// x is data in [−1, 1] on the 256-level grid; its bin is x ± 1/255, open to
// −∞ when x < −0.999 and to +∞ when x > 0.999. Probabilities are floored at
// 1e-12 before the log, as in the official code.
func DiscretizedGaussianLogLikelihood(x, mean, logScale float64) float64 {
	centered := x - mean
	invStdv := math.Exp(-logScale)
	cdfPlus := ApproxStandardNormalCDF(invStdv * (centered + 1.0/255))
	cdfMin := ApproxStandardNormalCDF(invStdv * (centered - 1.0/255))
	switch {
	case x < -0.999:
		return math.Log(math.Max(cdfPlus, 1e-12))
	case x > 0.999:
		return math.Log(math.Max(1-cdfMin, 1e-12))
	default:
		return math.Log(math.Max(cdfPlus-cdfMin, 1e-12))
	}
}
