package diffusion

import (
	"errors"
	"fmt"
	"math"
)

// Schedule kinds accepted by NewSchedule.
const (
	ScheduleLinear = "linear"
	ScheduleCosine = "cosine"
)

// DefaultT is the number of diffusion steps used by the paper.
const DefaultT = 1000

// Model variance types accepted by PMeanVariance, SampleDDPM and CalcBPDLoop
// (official model_var_type).
const (
	// VarianceFixedLarge is σ_t² = β_t (CIFAR-10 in the paper). At t = 0 the
	// log-variance is log β̃_1 instead of log β_0, as in the official code.
	VarianceFixedLarge = "fixedlarge"
	// VarianceFixedSmall is σ_t² = β̃_t, the posterior variance, with the
	// log clipped at t = 0 to log β̃_1 (LSUN and CelebA-HQ in the paper).
	VarianceFixedSmall = "fixedsmall"
)

// maxBeta is the clip Nichol & Dhariwal apply to β_t to avoid singularities
// at the end of the chain.
const maxBeta = 0.999

// cosineS is the small offset s of the cosine schedule.
const cosineS = 0.008

// Schedule is a noise schedule β_0..β_{T−1} with the float64 tables the
// official GaussianDiffusion2 precomputes. Index t is the code's index
// (paper step t+1). All slices have length T and must not be modified.
type Schedule struct {
	Kind string // "linear", "cosine", or the kind given to NewScheduleFromBetas
	T    int    // number of diffusion steps

	Betas                       []float64 // β_t
	Alphas                      []float64 // α_t = 1 − β_t
	AlphasCumprod               []float64 // ᾱ_t = Π_{s≤t} α_s
	AlphasCumprodPrev           []float64 // ᾱ_{t−1}, with ᾱ_{−1} = 1
	SqrtAlphasCumprod           []float64 // √ᾱ_t
	SqrtOneMinusAlphasCumprod   []float64 // √(1−ᾱ_t)
	LogOneMinusAlphasCumprod    []float64 // log(1−ᾱ_t)
	SqrtRecipAlphasCumprod      []float64 // √(1/ᾱ_t)
	SqrtRecipm1AlphasCumprod    []float64 // √(1/ᾱ_t − 1)
	PosteriorVariance           []float64 // β̃_t = β_t (1−ᾱ_{t−1})/(1−ᾱ_t); β̃_0 = 0
	PosteriorLogVarianceClipped []float64 // log(append(β̃_1, β̃_1..β̃_{T−1}))
	PosteriorMeanCoef1          []float64 // β_t √ᾱ_{t−1}/(1−ᾱ_t)
	PosteriorMeanCoef2          []float64 // (1−ᾱ_{t−1}) √α_t/(1−ᾱ_t)

	fixedLargeVariance    []float64 // β_t
	fixedLargeLogVariance []float64 // log(append(β̃_1, β_1..β_{T−1}))
}

// NewSchedule builds a schedule of T steps.
//
// "linear" is the official get_beta_schedule('linear'): β_t = linspace(1e-4,
// 0.02, T) for T = 1000. For other T both endpoints are multiplied by 1000/T
// (the extension of Nichol & Dhariwal 2021) so that ᾱ_{T−1} stays ≈ 4e-5 and
// the prior N(0, I) still matches q(x_T|x_0); β is clipped at 0.999, which
// only matters for T < 20.
//
// "cosine" is Nichol & Dhariwal (2021): ᾱ(t) = f(t)/f(0) with
// f(t) = cos²(((t/T)+s)/(1+s)·π/2), s = 0.008, and
// β_t = min(1 − ᾱ(t+1)/ᾱ(t), 0.999).
func NewSchedule(kind string, T int) (*Schedule, error) {
	if T < 2 {
		return nil, fmt.Errorf("diffusion: schedule needs T ≥ 2 steps, got %d", T)
	}
	betas := make([]float64, T)
	switch kind {
	case ScheduleLinear:
		scale := float64(DefaultT) / float64(T)
		start, end := scale*1e-4, scale*0.02
		for i := range betas {
			// np.linspace: start + i·step, with the last value exactly end.
			b := start + float64(i)*(end-start)/float64(T-1)
			if i == T-1 {
				b = end
			}
			betas[i] = math.Min(b, maxBeta)
		}
	case ScheduleCosine:
		f := func(t float64) float64 {
			c := math.Cos((t/float64(T) + cosineS) / (1 + cosineS) * math.Pi / 2)
			return c * c
		}
		for i := range betas {
			betas[i] = math.Min(1-f(float64(i+1))/f(float64(i)), maxBeta)
		}
	default:
		return nil, fmt.Errorf("diffusion: unknown schedule kind %q (want %q or %q)", kind, ScheduleLinear, ScheduleCosine)
	}
	return NewScheduleFromBetas(kind, betas)
}

// NewScheduleFromBetas builds the tables for an arbitrary β sequence, for
// example one stored in a checkpoint. It requires T ≥ 2 and 0 < β_t ≤ 1 as
// the official code asserts, plus 0 < ᾱ_t so that every table is finite
// (this rejects a β_t = 1 that the official code would accept).
// The betas slice is copied.
func NewScheduleFromBetas(kind string, betas []float64) (*Schedule, error) {
	T := len(betas)
	if T < 2 {
		return nil, fmt.Errorf("diffusion: schedule needs T ≥ 2 steps, got %d", T)
	}
	for i, b := range betas {
		if !(b > 0 && b <= 1) {
			return nil, fmt.Errorf("diffusion: β_%d = %g is outside (0, 1]", i, b)
		}
	}
	s := &Schedule{Kind: kind, T: T}
	mk := func() []float64 { return make([]float64, T) }
	s.Betas = append([]float64(nil), betas...)
	s.Alphas, s.AlphasCumprod, s.AlphasCumprodPrev = mk(), mk(), mk()
	s.SqrtAlphasCumprod, s.SqrtOneMinusAlphasCumprod, s.LogOneMinusAlphasCumprod = mk(), mk(), mk()
	s.SqrtRecipAlphasCumprod, s.SqrtRecipm1AlphasCumprod = mk(), mk()
	s.PosteriorVariance, s.PosteriorLogVarianceClipped = mk(), mk()
	s.PosteriorMeanCoef1, s.PosteriorMeanCoef2 = mk(), mk()
	s.fixedLargeVariance, s.fixedLargeLogVariance = mk(), mk()

	prod := 1.0
	for t, b := range s.Betas {
		a := 1 - b
		s.Alphas[t] = a
		s.AlphasCumprodPrev[t] = prod
		prod *= a
		s.AlphasCumprod[t] = prod
	}
	if s.AlphasCumprod[T-1] <= 0 {
		// Some β_t = 1 (or the product underflowed): √(1/ᾱ_t) would be infinite.
		return nil, fmt.Errorf("diffusion: ᾱ_%d = %g; every table needs ᾱ_t > 0 (β_t < 1)", T-1, s.AlphasCumprod[T-1])
	}
	for t, b := range s.Betas {
		ac, acp := s.AlphasCumprod[t], s.AlphasCumprodPrev[t]
		s.SqrtAlphasCumprod[t] = math.Sqrt(ac)
		s.SqrtOneMinusAlphasCumprod[t] = math.Sqrt(1 - ac)
		s.LogOneMinusAlphasCumprod[t] = math.Log(1 - ac)
		s.SqrtRecipAlphasCumprod[t] = math.Sqrt(1 / ac)
		s.SqrtRecipm1AlphasCumprod[t] = math.Sqrt(1/ac - 1)
		s.PosteriorVariance[t] = b * (1 - acp) / (1 - ac)
		s.PosteriorMeanCoef1[t] = b * math.Sqrt(acp) / (1 - ac)
		s.PosteriorMeanCoef2[t] = (1 - acp) * math.Sqrt(s.Alphas[t]) / (1 - ac)
	}
	if s.AlphasCumprod[0] >= 1 || s.PosteriorVariance[1] <= 0 {
		return nil, errors.New("diffusion: schedule is degenerate (ᾱ_0 = 1 or β̃_1 = 0)")
	}
	// The posterior variance is 0 at t = 0; the official code replaces it by β̃_1 in the log.
	s.PosteriorLogVarianceClipped[0] = math.Log(s.PosteriorVariance[1])
	for t := 1; t < T; t++ {
		s.PosteriorLogVarianceClipped[t] = math.Log(s.PosteriorVariance[t])
	}
	copy(s.fixedLargeVariance, s.Betas)
	s.fixedLargeLogVariance[0] = math.Log(s.PosteriorVariance[1])
	for t := 1; t < T; t++ {
		s.fixedLargeLogVariance[t] = math.Log(s.Betas[t])
	}
	return s, nil
}

// ModelVariance returns the per-t tables (σ_t², log σ_t²) of the reverse
// process p(x_{t−1}|x_t) for a fixed variance type, as official
// p_mean_variance: "fixedlarge" (β_t, log(append(β̃_1, β_1..))) or
// "fixedsmall" (β̃_t, posterior_log_variance_clipped). The slices must not be
// modified.
func (s *Schedule) ModelVariance(variance string) (v, logV []float64, err error) {
	switch variance {
	case VarianceFixedLarge:
		return s.fixedLargeVariance, s.fixedLargeLogVariance, nil
	case VarianceFixedSmall:
		return s.PosteriorVariance, s.PosteriorLogVarianceClipped, nil
	}
	return nil, nil, fmt.Errorf("diffusion: unknown variance type %q (want %q or %q)", variance, VarianceFixedLarge, VarianceFixedSmall)
}
