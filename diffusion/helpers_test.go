package diffusion

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
)

// closedFormAlphaBar is ᾱ_t = Π_{s≤t}(1−β_s), computed here without the
// package's tables.
func closedFormAlphaBar(betas []float64) []float64 {
	out := make([]float64, len(betas))
	for t := range betas {
		p := 1.0
		for s := 0; s <= t; s++ {
			p *= 1 - betas[s]
		}
		out[t] = p
	}
	return out
}

func mustSchedule(t testing.TB, kind string, T int) *Schedule {
	t.Helper()
	s, err := NewSchedule(kind, T)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func relNear(a, b, rel float64) bool { return math.Abs(a-b) <= rel*math.Max(math.Abs(a), math.Abs(b)) }

func randn(rng *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(scale * rng.NormFloat64())
	}
	return x
}

// gridImages returns values on the 256-level grid k/127.5 − 1, including ±1.
func gridImages(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		k := rng.IntN(256)
		switch i % 7 {
		case 0:
			k = 0
		case 1:
			k = 255
		}
		x[i] = float32(float64(k)/127.5 - 1)
	}
	return x
}

// oracle knows x0 and returns the ε for which x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε.
type oracle struct {
	s     *Schedule
	x0    []float32
	calls int
}

func (o *oracle) PredictEps(_ context.Context, xt []float32, t []int, shape Shape) ([]float32, error) {
	o.calls++
	d := len(xt) / shape.N
	eps := make([]float32, len(xt))
	for i, ti := range t {
		ac := 1.0
		for s := 0; s <= ti; s++ {
			ac *= 1 - o.s.Betas[s]
		}
		for j := i * d; j < (i+1)*d; j++ {
			eps[j] = float32((float64(xt[j]) - math.Sqrt(ac)*float64(o.x0[j])) / math.Sqrt(1-ac))
		}
	}
	return eps, nil
}

// gaussOpt is the exact E[ε|x_t] for data x0 ~ N(0, σ0²) per element:
// ε̂ = √(1−ᾱ) x_t / (ᾱ σ0² + 1 − ᾱ).
type gaussOpt struct {
	s      *Schedule
	sigma0 float64
}

func (g gaussOpt) PredictEps(_ context.Context, xt []float32, t []int, shape Shape) ([]float32, error) {
	d := len(xt) / shape.N
	eps := make([]float32, len(xt))
	for i, ti := range t {
		ac := g.s.AlphasCumprod[ti]
		k := math.Sqrt(1-ac) / (ac*g.sigma0*g.sigma0 + 1 - ac)
		for j := i * d; j < (i+1)*d; j++ {
			eps[j] = float32(k * float64(xt[j]))
		}
	}
	return eps, nil
}

type denoiserFunc func(ctx context.Context, xt []float32, t []int, shape Shape) ([]float32, error)

func (f denoiserFunc) PredictEps(ctx context.Context, xt []float32, t []int, shape Shape) ([]float32, error) {
	return f(ctx, xt, t, shape)
}

// wobbly is an arbitrary smooth non-linear denoiser for determinism tests.
var wobbly = denoiserFunc(func(_ context.Context, xt []float32, t []int, _ Shape) ([]float32, error) {
	out := make([]float32, len(xt))
	for j, v := range xt {
		out[j] = float32(math.Tanh(float64(v)) * (0.5 + float64(t[0]%7)/10))
	}
	return out, nil
})

func meanVar(x []float32) (m, v float64) {
	for _, a := range x {
		m += float64(a)
	}
	m /= float64(len(x))
	for _, a := range x {
		d := float64(a) - m
		v += d * d
	}
	return m, v / float64(len(x)-1)
}
