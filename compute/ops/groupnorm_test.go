package ops

import (
	"math"
	"math/rand/v2"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// naiveGroupNorm is a direct float64 implementation of GroupNorm (and of
// swish after it when act is set).
func naiveGroupNorm(x, gamma, beta *tensor.Dense, groups int, eps float64, act bool) []float64 {
	s := x.Shape()
	n, c, hw := s[0], s[1], s[2]*s[3]
	xs, gs, bs := x.Float64s(), gamma.Float64s(), beta.Float64s()
	y := make([]float64, len(xs))
	cg := c / groups
	for b := 0; b < n; b++ {
		for g := 0; g < groups; g++ {
			var vals []float64
			for ch := g * cg; ch < (g+1)*cg; ch++ {
				vals = append(vals, xs[(b*c+ch)*hw:(b*c+ch+1)*hw]...)
			}
			var mean, v float64
			for _, a := range vals {
				mean += a
			}
			mean /= float64(len(vals))
			for _, a := range vals {
				v += (a - mean) * (a - mean)
			}
			v /= float64(len(vals))
			for ch := g * cg; ch < (g+1)*cg; ch++ {
				for i := (b*c + ch) * hw; i < (b*c+ch+1)*hw; i++ {
					z := (xs[i]-mean)/math.Sqrt(v+eps)*gs[ch] + bs[ch]
					if act {
						z = z / (1 + math.Exp(-z))
					}
					y[i] = z
				}
			}
		}
	}
	return y
}

var gnCases = []struct {
	name          string
	n, c, h, w, g int
}{
	{"C64G32_8x8", 2, 64, 8, 8, 32},
	{"C64G32_16x16", 2, 64, 16, 16, 32},
	{"C64G8_8x8", 2, 64, 8, 8, 8},
	{"C4G4_5x3", 3, 4, 5, 3, 4},
	{"C6G2_1x1", 2, 6, 1, 1, 2},
}

func gnInputs(n, c, h, w int) (x, gamma, beta *tensor.Dense) {
	rng := rand.New(rand.NewPCG(uint64(n*1000+c), uint64(h*100+w)))
	return randTensor(rng, 0.5, 2, n, c, h, w), randTensor(rng, 1, 0.5, c), randTensor(rng, 0, 1, c)
}

func TestGroupNormForward(t *testing.T) {
	const eps = 1e-6
	for _, act := range []bool{false, true} {
		for _, tc := range gnCases {
			name := tc.name
			if act {
				name += "_swish"
			}
			t.Run(name, func(t *testing.T) {
				x, gamma, beta := gnInputs(tc.n, tc.c, tc.h, tc.w)
				f := func(in []*gorgonia.Node) (*gorgonia.Node, error) {
					if act {
						return GroupNormSwish(in[0], in[1], in[2], tc.g, eps)
					}
					return GroupNorm(in[0], in[1], in[2], tc.g, eps)
				}
				want := naiveGroupNorm(x, gamma, beta, tc.g, eps, act)
				checkForward(t, f, x.Shape(), want, x, gamma, beta)
			})
		}
	}
}

// TestGroupNormLargeMean checks the float32 forward pass on inputs whose
// mean is large compared with their spread.
func TestGroupNormLargeMean(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	x := randTensor(rng, 1000, 1, 2, 8, 6, 6)
	gamma, beta := randTensor(rng, 1, 0.5, 8), randTensor(rng, 0, 1, 8)
	f := func(in []*gorgonia.Node) (*gorgonia.Node, error) { return GroupNorm(in[0], in[1], in[2], 4, 1e-6) }
	want := naiveGroupNorm(x, gamma, beta, 4, 1e-6, false)
	_, got := forward(t, f, tensor.Float32, x, gamma, beta)
	// float32 holds 1000±3 to about 6e-5, i.e. 6e-5 standard deviations.
	if d := maxRelDiff(got, want); d > 1e-4 {
		t.Errorf("max relative difference %.3g", d)
	}
}

func TestGroupNormGrad(t *testing.T) {
	for _, act := range []bool{false, true} {
		for _, tc := range gnCases {
			name := tc.name
			if act {
				name += "_swish"
			}
			t.Run(name, func(t *testing.T) {
				x, gamma, beta := gnInputs(tc.n, tc.c, tc.h, tc.w)
				f := func(in []*gorgonia.Node) (*gorgonia.Node, error) {
					if act {
						return GroupNormSwish(in[0], in[1], in[2], tc.g, 1e-5)
					}
					return GroupNorm(in[0], in[1], in[2], tc.g, 1e-5)
				}
				requireGrad(t, f, 150, 1e-6, x, gamma, beta)
			})
		}
	}
}

// TestGroupNormFloat32Grad compares Float32 gradients with Float64 ones.
func TestGroupNormFloat32Grad(t *testing.T) {
	x, gamma, beta := gnInputs(2, 64, 8, 8)
	for _, act := range []bool{false, true} {
		f := func(in []*gorgonia.Node) (*gorgonia.Node, error) {
			if act {
				return GroupNormSwish(in[0], in[1], in[2], 8, 1e-6)
			}
			return GroupNorm(in[0], in[1], in[2], 8, 1e-6)
		}
		want := symGrads(t, f, tensor.Float64, x, gamma, beta)
		got := symGrads(t, f, tensor.Float32, x, gamma, beta)
		for i := range want {
			if d := maxRelDiff(got[i], want[i]); d > 1e-5 {
				t.Errorf("swish %v: input %d: float32 gradient max relative difference %.3g", act, i, d)
			}
		}
	}
}

func TestGroupNormErrors(t *testing.T) {
	g := gorgonia.NewGraph()
	x := gorgonia.NewTensor(g, tensor.Float64, 4, gorgonia.WithShape(2, 6, 3, 3), gorgonia.WithName("x"))
	v6 := gorgonia.NewVector(g, tensor.Float64, gorgonia.WithShape(6), gorgonia.WithName("v6"))
	v5 := gorgonia.NewVector(g, tensor.Float64, gorgonia.WithShape(5), gorgonia.WithName("v5"))
	for _, tc := range []struct {
		name        string
		gamma, beta *gorgonia.Node
		groups      int
		eps         float64
		wantErr     bool
	}{
		{"ok", v6, v6, 3, 1e-6, false},
		{"groups", v6, v6, 4, 1e-6, true},
		{"zero groups", v6, v6, 0, 1e-6, true},
		{"eps", v6, v6, 3, 0, true},
		{"gamma", v5, v6, 3, 1e-6, true},
		{"beta", v6, v5, 3, 1e-6, true},
	} {
		_, err := GroupNorm(x, tc.gamma, tc.beta, tc.groups, tc.eps)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: error %v, want error %v", tc.name, err, tc.wantErr)
		}
	}
}

// BenchmarkGroupNormSwish times the forward and backward kernels of the
// fused op at a CIFAR-10 U-Net size (batch 8, 128 channels, 32×32, float32).
func BenchmarkGroupNormSwish(b *testing.B) {
	x, gamma, beta := gnInputs(8, 128, 32, 32)
	x, gamma, beta = toDtype(x, tensor.Float32), toDtype(gamma, tensor.Float32), toDtype(beta, tensor.Float32)
	dy := x.Clone().(*tensor.Dense)
	p := gnParams{groups: 32, eps: 1e-6, swish: true}
	b.SetBytes(int64(4 * x.Size()))
	for b.Loop() {
		if _, err := (groupNormOp{p: p}).Do(x, gamma, beta); err != nil {
			b.Fatal(err)
		}
		st, err := gnStatsOp{p: p}.Do(x, gamma, beta, dy)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := (gnDxOp{p: p}).Do(x, gamma, beta, dy, st); err != nil {
			b.Fatal(err)
		}
	}
}
