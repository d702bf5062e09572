package diffusion

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Progress describes one step of a sampler, for live display.
//
// Xt and X0 are the sampler's working buffers: they are valid only during
// the callback and must be neither modified nor kept (copy them to keep
// them).
type Progress struct {
	Step  int       // 1-based step counter, 1..Steps
	Steps int       // number of network evaluations in the run
	T     int       // timestep (code index 0..T−1) the network was evaluated at in this step
	Xt    []float32 // x_t, the network's input at this step (N×C×H×W)
	X0    []float32 // x̂_0 predicted from x_t, clipped to [−1, 1]
}

// ProgressFunc receives a Progress after every sampler step, on the
// sampler's goroutine; it should return quickly.
type ProgressFunc func(Progress)

// SampleDDPM runs Algorithm 2 as official p_sample_loop: for t = T−1 … 0,
// x̂_0 = PredictStartFromNoise(x_t, t, ε_θ(x_t, t)) clipped to [−1, 1],
// x_{t−1} = μ̃_t(x̂_0, x_t) + σ_t z with z ~ N(0, I), and no noise at t = 0
// (so the result is the clipped x̂_0 of the last step). variance is
// "fixedlarge" (σ² = β) or "fixedsmall" (σ² = β̃). xT (usually N(0, I)) is
// not modified. The noise z is drawn from rng element by element, in order,
// at every step but the last. progress, if not nil, is called after each of
// the T steps. It stops with ctx.Err() when ctx is done.
func (s *Schedule) SampleDDPM(ctx context.Context, net Denoiser, xT []float32, shape Shape, variance string, rng *rand.Rand, progress ProgressFunc) ([]float32, error) {
	_, logV, err := s.ModelVariance(variance)
	if err != nil {
		return nil, err
	}
	if err := checkShape("SampleDDPM", xT, shape); err != nil {
		return nil, err
	}
	if net == nil || rng == nil {
		return nil, errors.New("diffusion: SampleDDPM needs a denoiser and an rng")
	}
	x := append([]float32(nil), xT...)
	next := make([]float32, len(x))
	x0 := make([]float32, len(x))
	tv := make([]int, shape.N)
	for step := 1; step <= s.T; step++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t := s.T - step
		fillInts(tv, t)
		eps, err := predict(ctx, net, x, tv, shape)
		if err != nil {
			return nil, err
		}
		ra, rm1 := s.SqrtRecipAlphasCumprod[t], s.SqrtRecipm1AlphasCumprod[t]
		c1, c2 := s.PosteriorMeanCoef1[t], s.PosteriorMeanCoef2[t]
		sd := math.Exp(0.5 * logV[t])
		for j := range x {
			xj := float64(x[j])
			p := clip1(ra*xj - rm1*float64(eps[j])) // eq. 15, clipped
			x0[j] = float32(p)
			m := c1*p + c2*xj // eq. 7
			if t > 0 {
				m += sd * rng.NormFloat64()
			}
			next[j] = float32(m)
		}
		if progress != nil {
			progress(Progress{Step: step, Steps: s.T, T: t, Xt: x, X0: x0})
		}
		x, next = next, x
	}
	return x, nil
}

// DDIMTimesteps returns the ascending timesteps τ_i = ⌊i·T/steps⌋,
// i = 0 … steps−1, that SampleDDIM visits (in reverse). They are evenly
// spaced, always include t = 0, and equal the DDIM repository's "uniform"
// skip range(0, T, T/steps) whenever steps divides T (e.g. 0, 20, …, 980 for
// T = 1000, steps = 50). steps must be in [1, T].
func DDIMTimesteps(T, steps int) ([]int, error) {
	if steps < 1 || steps > T {
		return nil, fmt.Errorf("diffusion: DDIM needs 1 ≤ steps ≤ T = %d, got %d", T, steps)
	}
	seq := make([]int, steps)
	for i := range seq {
		seq[i] = i * T / steps
	}
	return seq, nil
}

// SampleDDIM runs the generalised sampler of Song, Meng & Ermon (2020),
// eq. 12, on the timesteps of DDIMTimesteps(T, steps), from the largest down
// to 0:
//
//	x̂_0 = clip(PredictStartFromNoise(x_t, t, ε_θ(x_t, t)), −1, 1)
//	ε'  = PredictNoiseFromStart(x_t, t, x̂_0)
//	σ   = η √((1−ᾱ_prev)/(1−ᾱ_t)) √(1−ᾱ_t/ᾱ_prev)
//	x_prev = √ᾱ_prev x̂_0 + √(1−ᾱ_prev−σ²) ε' + σ z
//
// with ᾱ_prev = 1 after t = 0, so the last step returns x̂_0. Clipping x̂_0
// and then re-deriving ε' from it (as improved-diffusion's ddim_sample) keeps
// x_t = √ᾱ_t x̂_0 + √(1−ᾱ_t) ε' exact, so with η = 1 and steps = T the update
// is the DDPM step with σ² = β̃ ("fixedsmall"). eta must be in [0, 1]; η = 0
// is deterministic and does not use rng (which may then be nil). z is drawn
// element by element, in order, at every step with σ > 0. xT is not
// modified; progress, if not nil, is called after each of the steps. It
// stops with ctx.Err() when ctx is done.
func (s *Schedule) SampleDDIM(ctx context.Context, net Denoiser, xT []float32, shape Shape, steps int, eta float64, rng *rand.Rand, progress ProgressFunc) ([]float32, error) {
	seq, err := DDIMTimesteps(s.T, steps)
	if err != nil {
		return nil, err
	}
	if !(eta >= 0 && eta <= 1) {
		return nil, fmt.Errorf("diffusion: DDIM needs 0 ≤ η ≤ 1, got %g", eta)
	}
	if err := checkShape("SampleDDIM", xT, shape); err != nil {
		return nil, err
	}
	if net == nil {
		return nil, errors.New("diffusion: SampleDDIM needs a denoiser")
	}
	if eta > 0 && rng == nil {
		return nil, errors.New("diffusion: SampleDDIM with η > 0 needs an rng")
	}
	x := append([]float32(nil), xT...)
	next := make([]float32, len(x))
	x0 := make([]float32, len(x))
	tv := make([]int, shape.N)
	for i := steps - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t := seq[i]
		fillInts(tv, t)
		eps, err := predict(ctx, net, x, tv, shape)
		if err != nil {
			return nil, err
		}
		at := s.AlphasCumprod[t]
		ap := 1.0
		if i > 0 {
			ap = s.AlphasCumprod[seq[i-1]]
		}
		sqrtAt, sqrt1mAt := math.Sqrt(at), math.Sqrt(1-at)
		sigma := eta * math.Sqrt((1-ap)/(1-at)) * math.Sqrt(1-at/ap)
		cEps := math.Sqrt(math.Max(0, 1-ap-sigma*sigma))
		sqrtAp := math.Sqrt(ap)
		for j := range x {
			xj := float64(x[j])
			p := clip1((xj - sqrt1mAt*float64(eps[j])) / sqrtAt)
			e := (xj - sqrtAt*p) / sqrt1mAt
			x0[j] = float32(p)
			m := sqrtAp*p + cEps*e
			if sigma > 0 {
				m += sigma * rng.NormFloat64()
			}
			next[j] = float32(m)
		}
		if progress != nil {
			progress(Progress{Step: steps - i, Steps: steps, T: t, Xt: x, X0: x0})
		}
		x, next = next, x
	}
	return x, nil
}
