package run

import (
	"context"
	"fmt"
	"image"
	"math"
	"math/rand/v2"

	"github.com/ddpm-studio/ddpm-studio/diffusion"
	"github.com/ddpm-studio/ddpm-studio/imgio"
)

// Images is a batch of images as plain floats, N×C×H×W in model space [−1, 1].
type Images struct {
	Data       []float32
	N, C, H, W int
}

// Frame is one step of a sampling: x_t and the prediction x̂0 at that step. Its
// buffers are the sampler's: valid during the callback only.
type Frame struct {
	Step, Steps int // denoising step (1-based) and how many there are
	T           int // the diffusion timestep of Xt
	Xt, X0      Images
}

func frameOf(p diffusion.Progress, s diffusion.Shape) Frame {
	im := func(d []float32) Images { return Images{Data: d, N: s.N, C: s.C, H: s.H, W: s.W} }
	return Frame{Step: p.Step, Steps: p.Steps, T: p.T, Xt: im(p.Xt), X0: im(p.X0)}
}

// GridImage lays images out cols per row (0: a square), as every grid of the program.
func GridImage(im Images, cols int) *image.RGBA {
	return imgio.Grid(im.Data, im.N, im.C, im.H, im.W, cols, imgio.Pad)
}

// FixedNoise is the x_T of the preview and of the gallery's grids: the same noise
// every time, so that one sees the model change, not the noise.
func FixedNoise(shape diffusion.Shape) []float32 {
	x, _ := SeedNoise(0, shape.Size())
	return x
}

// SeedNoise draws the x_T of n values from seed, and returns the stream, which the
// sampler continues for its own noise: a seed gives the same images in the window and
// on the command line.
func SeedNoise(seed uint64, n int) ([]float32, *rand.Rand) {
	rng := rand.New(rand.NewPCG(seed, 3))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x, rng
}

// Samplers.
const (
	SamplerDDPM = "ddpm"
	SamplerDDIM = "ddim"
)

// SampleOptions say how to sample.
type SampleOptions struct {
	Sampler  string  // SamplerDDPM (all T steps) or SamplerDDIM
	Steps    int     // DDIM steps
	Eta      float64 // DDIM η
	Variance string  // DDPM σ²: "fixedlarge" or "fixedsmall" ("": the run's)
	Seed     uint64  // of x_T and of the sampler's noise
	N        int     // images
	Init     []float32
	// Init, if not nil, is x_T (N images) instead of noise drawn from Seed.
}

// check validates o for the model, naming the command line's flags.
func (m *Model) check(o *SampleOptions) error {
	switch {
	case o.N < 1:
		return fmt.Errorf("--n %d: must be at least 1", o.N)
	case o.Sampler != SamplerDDPM && o.Sampler != SamplerDDIM:
		return fmt.Errorf("--sampler %q: must be ddpm or ddim", o.Sampler)
	case o.Sampler == SamplerDDIM && (o.Steps < 1 || o.Steps > m.Sched.T):
		return fmt.Errorf("--steps %d: DDIM needs between 1 and T = %d steps", o.Steps, m.Sched.T)
	case o.Sampler == SamplerDDIM && !(o.Eta >= 0 && o.Eta <= 1):
		return fmt.Errorf("--eta %v: must be in [0, 1]", o.Eta)
	case o.Variance != "" && o.Variance != diffusion.VarianceFixedLarge && o.Variance != diffusion.VarianceFixedSmall:
		return fmt.Errorf("--variance %q: must be fixedlarge or fixedsmall", o.Variance)
	case o.Init != nil && len(o.Init) != m.Shape(o.N).Size():
		return fmt.Errorf("the initial noise has %d values, %d images of the model need %d", len(o.Init), o.N, m.Shape(o.N).Size())
	}
	if o.Init != nil {
		for _, v := range o.Init {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("the initial noise holds %v", v)
			}
		}
	}
	if o.Variance == "" {
		o.Variance = m.Meta.Variance
	}
	return checkSampleMemory(m.Net, o.N)
}

// Steps is the number of network evaluations a sampling takes.
func (m *Model) Steps(o SampleOptions) int {
	if o.Sampler == SamplerDDIM {
		return o.Steps
	}
	return m.Sched.T
}

// Sample generates o.N images, reporting every step to onFrame (may be nil).
func (m *Model) Sample(ctx context.Context, o SampleOptions, onFrame func(Frame)) (Images, error) {
	if err := m.check(&o); err != nil {
		return Images{}, err
	}
	shape := m.Shape(o.N)
	xT, rng := SeedNoise(o.Seed, shape.Size())
	if o.Init != nil {
		xT = o.Init
	}
	progress := progressOf(shape, onFrame)
	var x []float32
	var err error
	if o.Sampler == SamplerDDIM {
		x, err = m.Sched.SampleDDIM(ctx, m.Net, xT, shape, o.Steps, o.Eta, rng, progress)
	} else {
		x, err = m.Sched.SampleDDPM(ctx, m.Net, xT, shape, o.Variance, rng, progress)
	}
	if err != nil {
		return Images{}, err
	}
	return Images{Data: x, N: shape.N, C: shape.C, H: shape.H, W: shape.W}, nil
}

// Interpolate decodes, with deterministic DDIM of steps steps, n initial noises on the
// great circle from seed a's x_T to seed b's (slerp keeps their norm, so every point
// looks like noise the model was trained on), both ends included.
func (m *Model) Interpolate(ctx context.Context, a, b uint64, n, steps int, onFrame func(Frame)) (Images, error) {
	if n < 2 {
		return Images{}, fmt.Errorf("interpolation needs at least 2 images, got %d", n)
	}
	o := SampleOptions{Sampler: SamplerDDIM, Steps: steps, N: n}
	if err := m.check(&o); err != nil {
		return Images{}, err
	}
	shape := m.Shape(n)
	per := shape.C * shape.H * shape.W
	xa, _ := SeedNoise(a, per)
	xb, _ := SeedNoise(b, per)
	xT := make([]float32, 0, shape.Size())
	for i := range n {
		xT = append(xT, slerp(xa, xb, float64(i)/float64(n-1))...)
	}
	x, err := m.Sched.SampleDDIM(ctx, m.Net, xT, shape, steps, 0, nil, progressOf(shape, onFrame))
	if err != nil {
		return Images{}, err
	}
	return Images{Data: x, N: shape.N, C: shape.C, H: shape.H, W: shape.W}, nil
}

func progressOf(shape diffusion.Shape, onFrame func(Frame)) diffusion.ProgressFunc {
	if onFrame == nil {
		return nil
	}
	return func(p diffusion.Progress) { onFrame(frameOf(p, shape)) }
}

// slerp is the spherical interpolation between a (λ = 0) and b (λ = 1).
func slerp(a, b []float32, lambda float64) []float32 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	theta := math.Acos(max(-1, min(1, dot/math.Sqrt(na*nb))))
	wa, wb := 1-lambda, lambda
	if s := math.Sin(theta); s > 1e-6 {
		wa, wb = math.Sin((1-lambda)*theta)/s, math.Sin(lambda*theta)/s
	}
	out := make([]float32, len(a))
	for i := range a {
		out[i] = float32(wa*float64(a[i]) + wb*float64(b[i]))
	}
	return out
}
