package diffusion

// TestSamplersMatchReference compares SampleDDPM and SampleDDIM step by step with
// bench/torchref/ref_sample.py, a NumPy float64 implementation of the official
// p_sample_loop (hojonathanho/diffusion, diffusion_tf/diffusion_utils_2.py) and of the
// DDIM update (Song et al. 2020, eq. 12), written from those sources and not from this
// package. Both sides use the same fake network and the same noise. It needs python3
// with NumPy (the first of $DDPM_TORCHREF_PYTHON, python3, /usr/bin/python3 that can
// import it); without one the test is skipped, and under CI=true it fails.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ddpm-studio/ddpm-studio/internal/pyref"
)

// fakeNet is the network of the reference script: ε̂ = tanh(a x + b t/T + c((j mod 5) − 2)),
// j the index of the value within its image. It depends on x, t and the position, and
// puts x̂0 outside [−1, 1] at large t (so clipping happens) and inside at small t.
type fakeNet struct {
	a, b, c float64
	T       int
}

func (f fakeNet) PredictEps(_ context.Context, xt []float32, t []int, shape Shape) ([]float32, error) {
	per := len(xt) / shape.N
	out := make([]float32, len(xt))
	for i, v := range xt {
		n, j := i/per, i%per
		out[i] = float32(math.Tanh(f.a*float64(v) + f.b*float64(t[n])/float64(f.T) + f.c*float64(j%5-2)))
	}
	return out, nil
}

// samplerRefTol bounds |ours − reference| / ((1 + |reference|) √(1/ᾱ_t)) for every value of
// every x_t and x̂0 (t the step's timestep; 1 for the output). Ours gets ε̂ in float32
// and keeps x_t in float32 between steps (relative round-off 2^−24 ≈ 6e-8), and x̂0 =
// √(1/ᾱ_t) x_t − √(1/ᾱ_t − 1) ε̂ multiplies that round-off by up to √(1/ᾱ_t) (≈ 160 at
// t = 49 here). Measured: at most 3e-7 over these five runs. The bugs the test is
// meant to catch move values by 1e-3 or more.
const samplerRefTol = 2e-6

// TestSamplersMatchReference checks every x_t the samplers visit, every x̂0 they
// report and the timesteps, against the reference fed the same ε̂ and the same noise.
// The noise is drawn by a twin of the sampler's rng in the order SampleDDPM and
// SampleDDIM document (element by element, at every step that adds noise); afterwards
// both generators must be at the same point, so a sampler that draws more or less
// noise fails too. Bugs it catches (each planted once; bench/torchref/README.md):
// a wrong σ_t for either variance (e.g. β̃_t for fixedlarge, β_t for fixedsmall, or the
// fixedlarge log-variance using β̃_1 at every t), a wrong posterior coefficient, noise
// added at t = 0, an unclipped x̂0, and DDIM's σ computed from α_t instead of ᾱ_t.
func TestSamplersMatchReference(t *testing.T) {
	py := pyref.Python(t, "numpy")
	script, err := filepath.Abs(filepath.Join("..", "bench", "torchref", "ref_sample.py"))
	if err != nil {
		t.Fatal(err)
	}
	const T = 50
	s := mustSchedule(t, "linear", T)
	shape := Shape{N: 2, C: 2, H: 3, W: 4}
	net := fakeNet{a: 0.9, b: 1.5, c: 0.3, T: T}
	cases := []struct {
		sampler  string
		variance string
		steps    int
		eta      float64
	}{
		{"ddpm", VarianceFixedLarge, T, 0},
		{"ddpm", VarianceFixedSmall, T, 0},
		{"ddim", "", 10, 0},
		{"ddim", "", 10, 0.5},
		{"ddim", "", T, 1},
	}
	for ci, c := range cases {
		name := fmt.Sprintf("%s-%s-steps%d-eta%g", c.sampler, c.variance, c.steps, c.eta)
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			xT := randn(rand.New(rand.NewPCG(90, uint64(ci))), shape.Size(), 1)
			seed1, seed2 := uint64(91), uint64(ci)
			// The noise the sampler will draw, from a twin of its generator.
			twin := rand.New(rand.NewPCG(seed1, seed2))
			noisy := 0
			switch {
			case c.sampler == "ddpm":
				noisy = T - 1 // every step but t = 0
			case c.eta > 0:
				noisy = c.steps - 1 // every step but the last, where σ = 0
			}
			noise := make([]float64, noisy*shape.Size())
			for i := range noise {
				noise[i] = twin.NormFloat64()
			}
			spec, err := json.Marshal(map[string]any{
				"sampler": c.sampler, "variance": c.variance, "steps": c.steps, "eta": c.eta,
				"shape": []int{shape.N, shape.C, shape.H, shape.W},
				"net":   map[string]float64{"a": net.a, "b": net.b, "c": net.c},
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "spec.json"), spec, 0o644); err != nil {
				t.Fatal(err)
			}
			pyref.WriteNPY(t, filepath.Join(dir, "betas.npy"), s.Betas)
			pyref.WriteNPY(t, filepath.Join(dir, "xT.npy"), xT)
			args := []string{script, "--spec", filepath.Join(dir, "spec.json"), "--betas", filepath.Join(dir, "betas.npy"),
				"--xT", filepath.Join(dir, "xT.npy"), "--out", dir}
			if noisy > 0 {
				pyref.WriteNPY(t, filepath.Join(dir, "noise.npy"), noise)
				args = append(args, "--noise", filepath.Join(dir, "noise.npy"))
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, py, args...)
			cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("ref_sample.py: %v\n%s", err, out)
			}
			refT := pyref.ReadNPY[int64](t, filepath.Join(dir, "t.npy"))
			refXt := pyref.ReadNPY[float64](t, filepath.Join(dir, "xt.npy"))
			refX0 := pyref.ReadNPY[float64](t, filepath.Join(dir, "x0.npy"))
			refOut := pyref.ReadNPY[float64](t, filepath.Join(dir, "out.npy"))
			size := shape.Size()
			if len(refT) != c.steps || len(refXt) != c.steps*size || len(refX0) != c.steps*size || len(refOut) != size {
				t.Fatalf("reference returned %d steps, %d x_t, %d x̂0, %d output values", len(refT), len(refXt), len(refX0), len(refOut))
			}

			clipped, inside := 0, 0 // the reference's x̂0 values that clipping moved to ±1, and the others
			for _, v := range refX0 {
				if v == 1 || v == -1 {
					clipped++
				} else {
					inside++
				}
			}
			if clipped == 0 || inside == 0 {
				t.Fatalf("test setup: the reference clipped %d x̂0 values and left %d; the fake network should give both", clipped, inside)
			}

			var worst float64
			worstAt, firstOff := "", ""
			compare := func(what string, k int, got []float32, want []float64) {
				amp := 1.0 // the output: x̂0 of t = 0
				if k < c.steps {
					amp = s.SqrtRecipAlphasCumprod[refT[k]]
				}
				for j, g := range got {
					d := math.Abs(float64(g)-want[j]) / (1 + math.Abs(want[j])) / amp
					at := func() string {
						return fmt.Sprintf("%s of step %d (t=%d) [%d]: ours %v, reference %v", what, k+1, refT[min(k, len(refT)-1)], j, g, want[j])
					}
					if !(d <= worst) {
						worst, worstAt = d, at()
					}
					if !(d <= samplerRefTol) && firstOff == "" {
						firstOff = at()
					}
				}
			}
			calls := 0
			progress := func(p Progress) {
				k := p.Step - 1
				if calls != k || p.Steps != c.steps || k >= c.steps {
					t.Fatalf("progress call %d reports step %d of %d", calls+1, p.Step, p.Steps)
				}
				calls++
				if int64(p.T) != refT[k] {
					t.Fatalf("step %d evaluates the network at t=%d, reference t=%d", p.Step, p.T, refT[k])
				}
				compare("x_t", k, p.Xt, refXt[k*size:(k+1)*size])
				compare("x̂0", k, p.X0, refX0[k*size:(k+1)*size])
			}
			rng := rand.New(rand.NewPCG(seed1, seed2))
			var out []float32
			if c.sampler == "ddpm" {
				out, err = s.SampleDDPM(t.Context(), net, xT, shape, c.variance, rng, progress)
			} else {
				out, err = s.SampleDDIM(t.Context(), net, xT, shape, c.steps, c.eta, rng, progress)
			}
			if err != nil {
				t.Fatal(err)
			}
			if calls != c.steps {
				t.Fatalf("%d progress calls, want %d", calls, c.steps)
			}
			compare("output", c.steps, out, refOut)
			if rng.Uint64() != twin.Uint64() {
				t.Errorf("the sampler drew a different amount of noise than the %d steps × %d values the reference used", noisy, size)
			}
			t.Logf("%d steps, %d x̂0 values clipped, %d not; worst |ours − ref|/((1+|ref|)√(1/ᾱ_t)) = %.2g at %s", c.steps, clipped, inside, worst, worstAt)
			if !(worst <= samplerRefTol) {
				t.Errorf("ours and the reference differ by up to %.3g > %g; first at %s; most at %s", worst, samplerRefTol, firstOff, worstAt)
			}
		})
	}
}
